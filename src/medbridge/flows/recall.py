"""Lot recall: a lot's trace (where it came from, where it is, where it went) and its
quarantine.

The trace is read from the ledger's lot history (``ledger_movement_lots``: every lot each
applied movement took or brought, FEFO allocations included), joined to the procurement
records by correlation id (a receipt's movements share their purchase order's id, as do its
ship notices and goods receipts). Movements applied before lot history was recorded do not
appear. Encounter pseudonyms are given only when asked for (``with_encounters``: the caller
may see them); patient identity is never here.

A quarantine is network-wide (an item's lot, wherever it is) and audited; while it lasts the
ledger consumer holds the lot's transfers and receipts and opens an URGENT pharmacy task for
each dispense of it (``flows.ledger_posting``). Its release applies what was held, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from medbridge.canonical.codes import CodeError, normalize_gtin
from medbridge.canonical.masterdata import CodeSystem
from medbridge.canonical.movements import MovementKind
from medbridge.flows.ledger_posting import (
    LedgerPosting,
    NotQuarantined,
    Release,
    UnresolvableMovement,
)
from medbridge.masterdata.cache import MasterDataSnapshot
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.store import audit
from medbridge.store import ledger as ledger_store
from medbridge.store import recall as store

__all__ = [
    "NotQuarantined",
    "Release",
    "UnknownItem",
    "UnresolvableMovement",
    "quarantine",
    "release",
    "trace",
]

log = get_logger(__name__)

CONSUMED = frozenset({MovementKind.DISPENSE.value, MovementKind.CLINICAL_CONSUMPTION.value})


class UnknownItem(Exception):
    """Neither an item code nor a GTIN of an item or of one of its packs."""

    def __init__(self, code: str, why: str = "no item or GTIN") -> None:
        super().__init__(f"{code}: {why}")
        self.code = code


def resolve_item(masterdata: MasterDataRepository, code: str) -> str:
    """The item of an item code or a GTIN (the item's own, or a pack's)."""
    for fresh in (False, True):
        found = _item_of(masterdata.snapshot(fresh=fresh), code)
        if found is not None:
            return found
    raise UnknownItem(code)


def _item_of(snapshot: MasterDataSnapshot, code: str) -> str | None:
    if code in snapshot.item_by_code:
        return code
    try:
        gtin = normalize_gtin(code)
    except CodeError:
        return None
    item = snapshot.item_for(CodeSystem.GTIN, gtin)
    if item is not None:
        return item
    pack = snapshot.pack_gtins.get(gtin)
    return pack[0] if pack else None


def _n(number: Decimal) -> str:
    return f"{number.normalize():f}"


def _mentions(document: Any, lot: str) -> bool:
    """Whether a (JSON) document names ``lot`` as a lot anywhere."""
    if isinstance(document, dict):
        return document.get("lot") == lot or any(_mentions(v, lot) for v in document.values())
    if isinstance(document, list):
        return any(_mentions(v, lot) for v in document)
    return False


@dataclass(frozen=True)
class _Scope:
    """What a facility-bound reader may see: locations of its facilities."""

    facilities: frozenset[str] | None
    facility_of: dict[str, str | None]

    def sees(self, *locations: str | None) -> bool:
        if self.facilities is None:
            return True
        return any(
            loc is not None and self.facility_of.get(loc) in self.facilities for loc in locations
        )


def trace(
    engine: Engine,
    masterdata: MasterDataRepository,
    item: str,
    lot: str,
    *,
    with_encounters: bool = False,
    facilities: frozenset[str] | None = None,
) -> dict[str, Any]:
    """A lot's trace (JSON-ready): its quarantine, where it came from, where it is on hand,
    where it went (transfers; dispenses per location, cost center and day; other issues),
    and the movements its quarantine holds. ``facilities``: only what happened at their
    locations."""
    snapshot = masterdata.snapshot()
    scope = _Scope(facilities, {c: info.facility for c, info in snapshot.location_by_code.items()})
    with engine.connect() as conn:
        rows = [r for r in store.lot_movements(conn, item, lot) if scope.sees(r.location)]
        on_hand = [
            r
            for r in ledger_store.stock(conn, item=item, lot=lot, facilities=facilities)
            if r.lot == lot
        ]
        held = [
            h
            for h in store.held_movements(conn, item, lot, status=None)
            if scope.sees(h.movement.location, h.movement.to_location)
        ]
        state = store.quarantine(conn, item, lot)
        receipts = [r for r in rows if r.kind == MovementKind.RECEIPT.value]
        correlations = {r.correlation_id for r in receipts}
        orders = store.orders_of(conn, correlations)
        goods = store.receipts_of(conn, [o["reference"] for o in orders])
        notices = store.ship_notices_of(conn, correlations)
    return {
        "item": item,
        "lot": lot,
        "quarantine": _quarantine(state),
        "came_from": [_origin(r, lot, orders, goods, notices) for r in receipts],
        "on_hand": [
            {
                "location": r.location,
                "quantity": _n(r.quantity),
                "expiry": r.expiry.isoformat() if r.expiry else None,
            }
            for r in on_hand
        ],
        "transfers": _transfers(rows),
        "dispensed": _dispensed(rows, with_encounters),
        "other_movements": [
            {
                "event_id": r.event_id,
                "kind": r.kind,
                "location": r.location,
                "quantity": _n(r.quantity),
                "occurred_at": r.occurred_at.isoformat(),
            }
            for r in rows
            if r.kind not in CONSUMED
            and r.kind not in (MovementKind.RECEIPT.value, MovementKind.TRANSFER.value)
        ],
        "held_movements": [
            {
                "event_id": h.event_id,
                "kind": h.movement.kind.value,
                "location": h.movement.location,
                "to_location": h.movement.to_location,
                "quantity": _n(h.movement.quantity),
                "unit": h.movement.unit,
                "occurred_at": h.movement.occurred_at.isoformat(),
                "status": h.status,
                "settled_at": h.settled_at.isoformat() if h.settled_at else None,
                "error": h.error,
            }
            for h in held
        ],
    }


def _quarantine(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "status": state["status"],
        "reason": state["reason"],
        "quarantined_by": state["quarantined_by"],
        "quarantined_at": state["quarantined_at"].isoformat(),
        "released_by": state["released_by"],
        "released_at": state["released_at"].isoformat() if state["released_at"] else None,
        "release_note": state["release_note"],
    }


def _origin(
    row: store.LotMovement,
    lot: str,
    orders: list[dict[str, Any]],
    goods: list[dict[str, Any]],
    notices: list[dict[str, Any]],
) -> dict[str, Any]:
    """A receipt of the lot and where it came from: the supplier, the purchase order, its
    ship notices and goods receipts naming the lot (none: a receipt outside procurement)."""
    order = next((o for o in orders if o["correlation_id"] == row.correlation_id), None)
    found: dict[str, Any] = {
        "event_id": row.event_id,
        "location": row.location,
        "quantity": _n(row.quantity),
        "expiry": row.expiry.isoformat() if row.expiry else None,
        "occurred_at": row.occurred_at.isoformat(),
        "correlation_id": row.correlation_id,
        "supplier": None,
        "purchase_order": None,
        "ship_notices": [],
        "goods_receipts": [],
    }
    if order is None:
        return found
    return found | {
        "supplier": order["supplier"],
        "purchase_order": {
            "reference": order["reference"],
            "facility": order["facility"],
            "status": order["status"],
            "erp_id": order["erp_id"],
            "created_at": order["created_at"].isoformat(),
        },
        "ship_notices": [
            {
                "partner": n["partner"],
                "number": n["number"],
                "wire_format": n["wire_format"],
                "recorded_at": n["recorded_at"].isoformat(),
            }
            for n in notices
            if n["correlation_id"] == row.correlation_id and _mentions(n["document"], lot)
        ],
        "goods_receipts": [
            {
                "reference": g["reference"],
                "shipment_id": g["shipment_id"],
                "status": g["status"],
                "received_by": g["received_by"],
                "received_at": g["received_at"].isoformat(),
                "erp_id": g["erp_id"],
            }
            for g in goods
            if g["order_reference"] == order["reference"] and _mentions(g["lines"], lot)
        ],
    }


def _transfers(rows: Iterable[store.LotMovement]) -> list[dict[str, Any]]:
    """One entry per transfer event (its two rows: out of one location, into the other)."""
    by_event: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.kind != MovementKind.TRANSFER.value:
            continue
        entry = by_event.setdefault(
            r.event_id,
            {
                "event_id": r.event_id,
                "from_location": r.from_location,
                "to_location": r.to_location,
                "quantity": Decimal(0),
                "occurred_at": r.occurred_at.isoformat(),
                "correlation_id": r.correlation_id,
            },
        )
        entry["quantity"] = max(entry["quantity"], abs(r.quantity))
    return [e | {"quantity": _n(e["quantity"])} for e in by_event.values()]


def _dispensed(rows: Iterable[store.LotMovement], with_encounters: bool) -> list[dict[str, Any]]:
    """Dispenses and clinical consumptions per location, cost center and day."""
    groups: dict[tuple[str, str, str | None, str], dict[str, Any]] = {}
    for r in rows:
        if r.kind not in CONSUMED:
            continue
        day = r.occurred_at.astimezone(UTC).date().isoformat()
        key = (r.kind, r.location, r.cost_center, day)
        group = groups.setdefault(
            key,
            {
                "kind": r.kind,
                "location": r.location,
                "cost_center": r.cost_center,
                "day": day,
                "quantity": Decimal(0),
                "events": 0,
                "encounter_ref": [],
            },
        )
        group["quantity"] -= r.quantity
        group["events"] += 1
        if r.encounter_ref and r.encounter_ref not in group["encounter_ref"]:
            group["encounter_ref"].append(r.encounter_ref)
    shown = []
    for group in sorted(groups.values(), key=lambda g: (g["day"], g["location"], g["kind"])):
        group["quantity"] = _n(group["quantity"])
        if not with_encounters:  # the minimisation middleware would remove it as well
            del group["encounter_ref"]
        shown.append(group)
    return shown


def quarantine(engine: Engine, item: str, lot: str, reason: str, actor: str) -> bool:
    """Put the lot in quarantine (audited); False if it already was (nothing changes). A lot
    not yet received can be quarantined: its receipts are held when they come."""
    try:
        with engine.begin() as conn:
            before = store.quarantine(conn, item, lot)
            changed = store.put_in_quarantine(conn, item, lot, reason, actor, datetime.now(UTC))
            if changed:
                audit.append(
                    conn,
                    actor=actor,
                    action="lot.quarantine",
                    target_type="lot",
                    target_id=f"{item}/{lot}",
                    before={"status": before["status"]} if before else None,
                    after={"status": store.QUARANTINED},
                    detail={"reason": reason},
                )
    except IntegrityError:  # another caller quarantined the same new lot just now
        return False
    if changed:
        log.warning("lot.quarantined", item=item, lot=lot, actor=actor)
    return changed


def release(posting: LedgerPosting, item: str, lot: str, actor: str, note: str) -> Release:
    """Release the lot and apply what it held (``LedgerPosting.release``)."""
    released = posting.release(item, lot, actor, note)
    log.warning(
        "lot.released",
        item=item,
        lot=lot,
        actor=actor,
        applied=len(released.applied),
        refused=len(released.refused),
    )
    return released
