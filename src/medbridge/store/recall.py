"""Persistence of lot recall: quarantines, the movements they hold, and the read side of a
lot's trace (``flows.recall``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, select, update

from medbridge.canonical.movements import StockMovement
from medbridge.store.sql import chunks
from medbridge.store.tables import (
    goods_receipts,
    ledger_movement_lots,
    ledger_movements,
    lot_held_movements,
    lot_quarantines,
    purchase_orders,
    stock_lots,
    trade_documents,
)

QUARANTINED = "quarantined"
RELEASED = "released"
HELD, APPLIED, REFUSED = "held", "applied", "refused"


# --- quarantines ---------------------------------------------------------------------------


def quarantined(conn: Connection, items: Iterable[str]) -> frozenset[tuple[str, str]]:
    """The (item, lot) pairs of ``items`` in quarantine. Every quarantine row of these items
    is locked (``FOR UPDATE`` on PostgreSQL) until the caller's transaction ends, so that a
    release and the ledger consumer never work on the same item at once."""
    t, found = lot_quarantines, set()
    for chunk in chunks(sorted(set(items)), 500):
        rows = conn.execute(
            select(t.c.item, t.c.lot, t.c.status)
            .where(t.c.item.in_(chunk))
            .order_by(t.c.item, t.c.lot)
            .with_for_update()
        )
        found |= {(r.item, r.lot) for r in rows if r.status == QUARANTINED}
    return frozenset(found)


def quarantine(conn: Connection, item: str, lot: str) -> dict[str, Any] | None:
    t = lot_quarantines
    row = conn.execute(select(t).where(t.c.item == item, t.c.lot == lot)).first()
    return dict(row._mapping) if row else None


def quarantines(conn: Connection, *, active_only: bool = True) -> list[dict[str, Any]]:
    t = lot_quarantines
    stmt = select(t).order_by(t.c.quarantined_at, t.c.item, t.c.lot)
    if active_only:
        stmt = stmt.where(t.c.status == QUARANTINED)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def put_in_quarantine(
    conn: Connection, item: str, lot: str, reason: str, actor: str, at: datetime
) -> bool:
    """Quarantine the lot; False if it already is (nothing changes then)."""
    t = lot_quarantines
    current = conn.execute(
        select(t.c.status).where(t.c.item == item, t.c.lot == lot).with_for_update()
    ).scalar()
    values = {
        "status": QUARANTINED,
        "reason": reason,
        "quarantined_by": actor,
        "quarantined_at": at,
        "released_by": None,
        "released_at": None,
        "release_note": None,
    }
    if current is None:
        conn.execute(insert(t).values(item=item, lot=lot, **values))
        return True
    if current == QUARANTINED:
        return False
    conn.execute(update(t).where(t.c.item == item, t.c.lot == lot).values(**values))
    return True


def release(conn: Connection, item: str, lot: str, actor: str, note: str, at: datetime) -> bool:
    """Release the lot (the row is locked until the transaction ends); False if it is not in
    quarantine."""
    t = lot_quarantines
    done = conn.execute(
        update(t)
        .where(t.c.item == item, t.c.lot == lot, t.c.status == QUARANTINED)
        .values(status=RELEASED, released_by=actor, released_at=at, release_note=note)
    )
    return bool(done.rowcount)


# --- held movements ------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldMovement:
    event_id: str
    correlation_id: str
    movement: StockMovement
    status: str
    held_at: datetime
    settled_at: datetime | None
    settled_by: str | None
    error: str | None


def hold(conn: Connection, held: Sequence[tuple[str, str, StockMovement]], at: datetime) -> None:
    """Park (event id, correlation id, movement) triples until their lot is released."""
    if not held:
        return
    conn.execute(
        insert(lot_held_movements),
        [
            {
                "event_id": event_id,
                "item": m.item,
                "lot": m.lot,
                "kind": m.kind.value,
                "location": m.location,
                "to_location": m.to_location,
                "correlation_id": correlation_id,
                "occurred_at": m.occurred_at,
                "movement": m.model_dump(mode="json"),
                "status": HELD,
                "held_at": at,
            }
            for event_id, correlation_id, m in held
        ],
    )


def held_movements(
    conn: Connection, item: str, lot: str, *, status: str | None = HELD
) -> list[HeldMovement]:
    """The movements held for the lot, in the order they happened (``status`` None: all)."""
    t = lot_held_movements
    stmt = (
        select(t)
        .where(t.c.item == item, t.c.lot == lot)
        .order_by(t.c.occurred_at, t.c.held_at, t.c.event_id)
    )
    if status is not None:
        stmt = stmt.where(t.c.status == status)
    return [
        HeldMovement(
            r.event_id,
            r.correlation_id,
            StockMovement.model_validate(r.movement),
            r.status,
            r.held_at,
            r.settled_at,
            r.settled_by,
            r.error,
        )
        for r in conn.execute(stmt)
    ]


def settle_held(
    conn: Connection, event_id: str, status: str, actor: str, at: datetime, error: str | None
) -> bool:
    """Mark a held movement applied or refused, once (False: it was no longer held)."""
    t = lot_held_movements
    done = conn.execute(
        update(t)
        .where(t.c.event_id == event_id, t.c.status == HELD)
        .values(status=status, settled_by=actor, settled_at=at, error=error)
    )
    return bool(done.rowcount)


# --- the read side of a trace --------------------------------------------------------------


@dataclass(frozen=True)
class LotMovement:
    """One row of ``ledger_movement_lots`` with its movement."""

    event_id: str
    kind: str
    location: str  # where this lot changed
    from_location: str  # the movement's location
    to_location: str | None
    quantity: Decimal  # signed, base unit
    expiry: date | None
    cost_center: str | None
    encounter_ref: str | None
    correlation_id: str
    occurred_at: datetime


def lot_movements(conn: Connection, item: str, lot: str) -> list[LotMovement]:
    """Every applied movement's change of the lot, in the order they happened."""
    lots, m = ledger_movement_lots, ledger_movements
    rows = conn.execute(
        select(
            lots.c.event_id,
            m.c.kind,
            lots.c.location,
            m.c.location.label("from_location"),
            m.c.to_location,
            lots.c.quantity,
            lots.c.expiry,
            lots.c.cost_center,
            lots.c.encounter_ref,
            m.c.correlation_id,
            m.c.occurred_at,
        )
        .join(m, m.c.event_id == lots.c.event_id)
        .where(lots.c.item == item, lots.c.lot == lot)
        .order_by(m.c.occurred_at, lots.c.event_id, lots.c.seq)
    )
    return [LotMovement(**r._mapping) for r in rows]


def orders_of(conn: Connection, correlation_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The purchase orders of these correlation ids (a receipt shares its order's)."""
    t, ids = purchase_orders, sorted(set(correlation_ids))
    if not ids:
        return []
    return [
        dict(r._mapping)
        for r in conn.execute(select(t).where(t.c.correlation_id.in_(ids)).order_by(t.c.reference))
    ]


def receipts_of(conn: Connection, order_references: Iterable[str]) -> list[dict[str, Any]]:
    t, refs = goods_receipts, sorted(set(order_references))
    if not refs:
        return []
    return [
        dict(r._mapping)
        for r in conn.execute(
            select(t).where(t.c.order_reference.in_(refs)).order_by(t.c.received_at, t.c.reference)
        )
    ]


def ship_notices_of(conn: Connection, correlation_ids: Iterable[str]) -> list[dict[str, Any]]:
    t, ids = trade_documents, sorted(set(correlation_ids))
    if not ids:
        return []
    return [
        dict(r._mapping)
        for r in conn.execute(
            select(
                t.c.partner,
                t.c.wire_format,
                t.c.number,
                t.c.document,
                t.c.correlation_id,
                t.c.recorded_at,
            )
            .where(t.c.correlation_id.in_(ids), t.c.kind == "ship_notice", t.c.direction == "in")
            .order_by(t.c.id)
        )
    ]


def items_with_lot(conn: Connection, lot: str) -> list[str]:
    """The items a lot number is known for: in stock, in the lot history, or quarantined."""
    found: set[str] = set()
    for table in (stock_lots, ledger_movement_lots, lot_quarantines):
        found |= set(conn.execute(select(table.c.item).where(table.c.lot == lot)).scalars())
    return sorted(found)
