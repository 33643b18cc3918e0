"""Receiving by scan: a dock session's GS1 scans against a ship notice or a purchase order.

``receive_scans`` decodes each scan (``connectors.gs1``: a scan that must be refused is
reported with its index, code and reason, the others go on), maps its GTIN to an item and a
unit (the item's own GTIN: ``item_codes``; a pack's: ``item_packs.gtin``, whose factor gives
base units), places it against what the ship notice (or the order) still expects
(``domain.scan_matching``: matched, substituted, over, unknown) and records every placed scan
in ``receiving_scans``, in one transaction holding the order's row.

Scans are counted as they come (a session may post several times); the goods receipt is
taken when a request says ``complete``: in the same transaction, every scan received against
the notice (or the order) and in no receipt yet is assigned to one goods receipt,
``<order>:<shipment, or SCAN against an order>~<sha256 of the scans' keys, 12 hex>`` (the
notice's own row keeps what it announced, and becomes ``counted`` once the workflow has
received the scans: no longer awaited, so an invoice does not wait for it). After the commit
the receipt is handed to the order's workflow through the existing receiving path
(``flows.workflows.submit_receipt`` -> ``flows.receiving``: the ERP goods receipt through
the outbox, the stock movements with lot and expiry, GRNI). Should the hand-over fail after
the commit (a crash), the next request for the order hands over every scan receipt the
workflow has not recorded yet. A notice received (by its scans, as announced, or refused)
takes no new scans: each is reported ``receiving.closed``.

Idempotency key of a scan (FROZEN: resends and the table's primary key depend on it; never
change it):

* a serialised scan (AI 21): ``serial:<GTIN-14>:<serial>``: a serialised pack is received
  once, whatever the session; the same serial on another order or shipment is refused
  (``receiving.duplicate_serial``);
* otherwise ``scan:<session>:<scan id>`` when the client names the scan, else
  ``scan:<session>#<index>``, the scan's index in the request's list: a terminal that does not
  name its scans sends the whole session each time, in the same order, new scans appended.
  A key recorded with another scan string is refused (``receiving.key_reused``).

A scan already recorded is answered from its row: a resend changes nothing and answers the
same report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from medbridge.canonical.codes import CodeError, normalize_gtin
from medbridge.canonical.masterdata import CodeSystem
from medbridge.connectors import gs1
from medbridge.connectors.gs1.mapping import to_receipt_line
from medbridge.domain.scan_matching import ExpectedLine, Identified, Placement, Tally
from medbridge.flows.procurement_runtime import TERMINAL, dec
from medbridge.flows.scan_report import park_held, scan_report, session_report
from medbridge.flows.workflows import ReceiptRefused, submit_receipt
from medbridge.governance.permissions import Principal
from medbridge.masterdata.cache import MasterDataSnapshot
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.store import procurement as store
from medbridge.store.tables import goods_receipts, purchase_orders, receiving_scans

log = get_logger(__name__)

BY_SCAN = "SCAN"
"""The shipment part of a receipt taken against an order without a ship notice."""


class ScanRefused(Exception):
    """The request as a whole cannot be taken: ``status`` (404, 409, 422, 403) and the
    request ``field`` at fault."""

    def __init__(self, message: str, field: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


@dataclass(frozen=True)
class Scan:
    data: str
    scan_id: str | None = None


@dataclass(frozen=True)
class ScanSession:
    session: str
    scans: Sequence[Scan]
    order: str | None = None
    shipment_id: str | None = None
    dock: str | None = None
    complete: bool = False
    """The session has scanned everything it will: lines still expected are reported short."""


@dataclass(frozen=True)
class _Decoded:
    index: int
    scan: Scan
    key: str
    decoded: gs1.Gs1Scan
    count: Decimal
    expiry: date | None


def receive_scans(
    engine: Any,
    masterdata: MasterDataRepository,
    request: ScanSession,
    principal: Principal,
    *,
    config: gs1.Gs1Config | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record a session's scans once and hand what they receive to the order's workflow;
    the report (``scans`` in request order, ``lines``, ``receipts``). ``ScanRefused`` when
    the request cannot be taken at all (no such order or notice, not ours, not receivable)."""
    at = now or datetime.now(UTC)
    with engine.connect() as conn:
        po, notice, closed = _target(conn, request)
    outside = principal.outside([po["facility"]])
    if outside:
        raise ScanRefused(
            f"client {principal.name} may not receive for {', '.join(outside)}",
            "order",
            status=403,
        )
    decoded, errors = _decode(request, config, at)
    snapshot = masterdata.snapshot()
    if any(_identify(snapshot, d.decoded.gtin) is None for d in decoded):
        snapshot = masterdata.snapshot(fresh=True)
    for attempt in (1, 2):
        try:
            with engine.begin() as conn:
                target = (po, notice, closed)
                report = _record(
                    conn, snapshot, request, target, decoded, dict(errors), principal, at
                )
            break
        except IntegrityError:  # the same scans recorded at the same moment by another request
            if attempt == 2:
                raise
            log.info("receiving.scans_raced", order=po["reference"], session=request.session)
    refused = _hand_over(engine, snapshot, po["reference"], principal.name)
    if refused:
        report["refused_receipts"] = refused
    log.info(
        "receiving.scans",
        order=po["reference"],
        shipment=request.shipment_id,
        session=request.session,
        scans=len(request.scans),
        errors=len(errors),
    )
    return report


def scan_key(session: str, index: int, scan: Scan, decoded: gs1.Gs1Scan) -> str:
    """The frozen idempotency key of a scan (see the module docstring)."""
    if decoded.serial is not None and decoded.gtin is not None:
        return f"serial:{decoded.gtin}:{decoded.serial}"
    if scan.scan_id is not None:
        return f"scan:{session}:{scan.scan_id}"
    return f"scan:{session}#{index}"


def _target(
    conn: Any, request: ScanSession
) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """The order and the ship notice the scans are taken against, and why they take no new
    scans (None: they do)."""
    order = request.order
    notice = None
    if request.shipment_id is not None:
        t = goods_receipts
        query = select(t).where(t.c.shipment_id == request.shipment_id)
        if order is not None:
            query = query.where(t.c.order_reference == order)
        found = [dict(r._mapping) for r in conn.execute(query)]
        if not found:
            raise ScanRefused(
                f"no ship notice {request.shipment_id}"
                + (f" for purchase order {order}" if order else ""),
                "shipment_id",
                status=404,
            )
        if len(found) > 1:
            orders = ", ".join(sorted(r["order_reference"] for r in found))
            raise ScanRefused(
                f"ship notice {request.shipment_id} ships orders {orders}: name the order",
                "order",
            )
        notice = found[0]
        order = str(notice["order_reference"])
    assert order is not None  # the API asks for an order or a shipment
    po = store.order(conn, order)
    if po is None:
        raise ScanRefused(f"no purchase order {order}", "order", status=404)
    if not po["workflow_started"]:
        raise ScanRefused(f"purchase order {order} is not under way yet", "order", status=409)
    closed = None
    if notice is not None:
        t = receiving_scans
        taken = conn.execute(
            select(t.c.key)
            .where(t.c.order_reference == order, t.c.shipment_id == notice["shipment_id"])
            .where(t.c.receipt.is_not(None))
            .limit(1)
        ).first()
        if notice["status"] != "noticed":
            closed = f"shipment {notice['shipment_id']} of {order} was {notice['status']} already"
        elif taken is not None:
            closed = f"shipment {notice['shipment_id']} of {order} is being received from its scans"
    elif po["status"] in TERMINAL:
        closed = f"purchase order {order} is {po['status']}: it expects no more goods"
    return po, notice, closed


def _decode(
    request: ScanSession, config: gs1.Gs1Config | None, at: datetime
) -> tuple[list[_Decoded], dict[int, dict[str, str]]]:
    decoded: list[_Decoded] = []
    errors: dict[int, dict[str, str]] = {}
    first: dict[str, int] = {}
    for index, scan in enumerate(request.scans):
        try:
            parsed = gs1.parse(scan.data, config)
            line = to_receipt_line(
                parsed, location="dock", source_system=gs1.NAME, received_at=at, config=config
            )
        except gs1.Gs1Error as error:
            errors[index] = {"code": error.code, "reason": error.reason}
            continue
        key = scan_key(request.session, index, scan, parsed)
        if key in first:
            errors[index] = {
                "code": "receiving.scanned_twice",
                "reason": f"the same scan as index {first[key]} ({key}): counted once",
            }
            continue
        first[key] = index
        decoded.append(_Decoded(index, scan, key, parsed, line.quantity, line.expiry))
    return decoded, errors


def _identify(snap: MasterDataSnapshot, gtin: str | None) -> Identified | None:
    if gtin is None:
        return None
    try:
        code = normalize_gtin(gtin)
    except CodeError:
        return None
    item_code = snap.item_for(CodeSystem.GTIN, code)
    if item_code is not None and item_code in snap.item_by_code:
        item = snap.item_by_code[item_code]
        return Identified(item.code, item.base_unit, Decimal(1))
    pack = snap.pack_gtins.get(code)
    if pack is None or pack[0] not in snap.item_by_code:
        return None
    item = snap.item_by_code[pack[0]]
    factor = next(p.factor for p in item.packs if p.unit == pack[1])
    return Identified(item.code, pack[1], factor)


def _factor(snap: MasterDataSnapshot, item_code: str, unit: str) -> Decimal:
    item = snap.item_by_code.get(item_code)
    if item is None:
        raise ScanRefused(f"order line item {item_code} is in no item master", "order", status=409)
    if unit == item.base_unit:
        return Decimal(1)
    for pack in item.packs:
        if pack.unit == unit:
            return pack.factor
    raise ScanRefused(
        f"item {item_code} has no pack factor for the order line's unit {unit}",
        "order",
        status=409,
    )


def _expected(
    conn: Any,
    snap: MasterDataSnapshot,
    po: dict[str, Any],
    notice: dict[str, Any] | None,
    rows: list[dict[str, Any]],
) -> list[ExpectedLine]:
    """What each line expects (the notice's quantity, else what the order still expects of
    receipts not taken by scan) and what scans received of it, in base units."""
    by_line = {ln["line"]: ln for ln in po["lines"]}
    target: dict[int, Decimal] = {}
    if notice is not None:
        for ln in notice["lines"]:
            if ln["line"] in by_line:
                target[ln["line"]] = target.get(ln["line"], Decimal(0)) + dec(ln["quantity"])
    else:
        by_scan = {r["receipt"] for r in _order_rows(conn, po["reference"]) if r["receipt"]}
        got: dict[int, Decimal] = {}
        for r in store.receipts(conn, po["reference"]):
            if r["status"] in ("received", "rejected") and r["reference"] not in by_scan:
                for ln in r["lines"]:
                    got[ln["line"]] = got.get(ln["line"], Decimal(0)) + dec(ln["quantity"])
        for n, ln in by_line.items():
            target[n] = dec(ln.get("expected", ln["quantity"])) - got.get(n, Decimal(0))
    counted: dict[int, Decimal] = {}
    for r in rows:
        if r["received"] and r["line"] is not None:
            counted[r["line"]] = counted.get(r["line"], Decimal(0)) + dec(r["base_quantity"])
    lines = []
    for n, quantity in sorted(target.items()):
        ln = by_line[n]
        factor = _factor(snap, ln["item"], ln["unit"])
        item = snap.item_by_code[ln["item"]]
        lines.append(
            ExpectedLine(
                line=n,
                item=ln["item"],
                unit=ln["unit"],
                base_unit=item.base_unit,
                factor=factor,
                expected=quantity * factor,
                counted=counted.get(n, Decimal(0)),
            )
        )
    return lines


def _order_rows(conn: Any, order: str) -> list[dict[str, Any]]:
    t = receiving_scans
    query = select(t).where(t.c.order_reference == order).order_by(t.c.scanned_at, t.c.key)
    return [dict(r._mapping) for r in conn.execute(query)]


def _record(
    conn: Any,
    snap: MasterDataSnapshot,
    request: ScanSession,
    target: tuple[dict[str, Any], dict[str, Any] | None, str | None],
    decoded: list[_Decoded],
    errors: dict[int, dict[str, str]],
    principal: Principal,
    at: datetime,
) -> dict[str, Any]:
    po, notice, closed = target
    reference = po["reference"]
    # the order's row, held: two sessions on one order place their scans one after the other
    conn.execute(
        select(purchase_orders.c.reference)
        .where(purchase_orders.c.reference == reference)
        .with_for_update()
    )
    shipment = notice["shipment_id"] if notice is not None else None
    t = receiving_scans
    keys = [d.key for d in decoded]
    known = {r.key: dict(r._mapping) for r in conn.execute(select(t).where(t.c.key.in_(keys)))}
    # what scans took against this notice (against the order: by any scan of it) before
    everything = _order_rows(conn, reference)
    mine = [r for r in everything if r["shipment_id"] == shipment]
    counted = mine if notice is not None else everything
    tally = Tally(_expected(conn, snap, po, notice, counted))
    rows: list[dict[str, Any]] = []
    for d in decoded:
        row = known.get(d.key)
        if row is not None:
            problem = _conflict(row, d, reference, shipment)
            if problem is not None:
                errors[d.index] = problem
            continue
        if closed is not None:
            errors[d.index] = {"code": "receiving.closed", "reason": f"{closed}: not counted"}
            continue
        what = _identify(snap, d.decoded.gtin)
        placement = tally.place(what, d.count)
        rows.append(_row(request, reference, shipment, d, placement, what, principal, at))
    if rows:
        conn.execute(t.insert(), rows)
        park_held(conn, po, shipment, rows)
    mine += rows
    if notice is None:
        everything += rows
    if request.complete and closed is None:
        _take(conn, reference, shipment, mine)  # the rows are shared with ``counted``
    by_key = known | {r["key"]: r for r in counted}
    answered = {d.index: scan_report(by_key[d.key]) for d in decoded if d.index not in errors}
    about = (request.session, len(request.scans), request.complete)
    return session_report(about, po, shipment, tally, counted, answered, errors)


def _row(
    request: ScanSession,
    reference: str,
    shipment: str | None,
    d: _Decoded,
    placement: Placement,
    what: Identified | None,
    principal: Principal,
    at: datetime,
) -> dict[str, Any]:
    return {
        "key": d.key,
        "order_reference": reference,
        "shipment_id": shipment,
        "session": request.session,
        "dock": request.dock,
        "position": d.index,
        "raw": d.scan.data,
        "outcome": placement.outcome.value,
        "received": int(placement.received),
        "gtin": d.decoded.gtin,
        "item": what.item if what else None,
        "unit": what.unit if what else None,
        "line": placement.line,
        "quantity": d.count,
        "base_quantity": placement.base_quantity,
        "lot": d.decoded.lot,
        "expiry": d.expiry,
        "serial": d.decoded.serial,
        "receipt": None,
        "note": placement.note,
        "scanned_by": principal.name,
        "scanned_at": at,
    }


def _take(conn: Any, reference: str, notice_id: str | None, rows: list[dict[str, Any]]) -> None:
    """The session is complete: what its scans received and no receipt took yet becomes one
    goods receipt, ``<order>:<shipment, or SCAN>~<sha256 of the scans' keys, 12 hex>`` (the
    notice's own row keeps what it announced)."""
    taken = [r for r in rows if r["received"] and r["receipt"] is None]
    if not taken:
        return
    digest = hashlib.sha256("\n".join(sorted(r["key"] for r in taken)).encode())
    shipment = "".join("-" if c.isspace() or c == ":" else c for c in notice_id or BY_SCAN)
    receipt = f"{reference}:{shipment[:48]}~{digest.hexdigest()[:12]}"
    t = receiving_scans
    conn.execute(update(t).where(t.c.key.in_([r["key"] for r in taken])).values(receipt=receipt))
    for r in taken:
        r["receipt"] = receipt


def _conflict(
    row: dict[str, Any], d: _Decoded, reference: str, shipment: str | None
) -> dict[str, str] | None:
    if row["raw"] != d.scan.data and d.decoded.serial is None:
        return {
            "code": "receiving.key_reused",
            "reason": f"{d.key} was recorded for another scan ({row['raw']!r}): "
            "name each scan (scan id) or resend the session in the same order",
        }
    if row["order_reference"] != reference or row["shipment_id"] != shipment:
        where = row["order_reference"] + (
            f" shipment {row['shipment_id']}" if row["shipment_id"] else ""
        )
        return {
            "code": "receiving.duplicate_serial",
            "reason": f"serial {d.decoded.serial} of GTIN {d.decoded.gtin} was scanned on "
            f"purchase order {where} already",
        }
    return None


def _receipt_lines(
    snap: MasterDataSnapshot, rows: list[dict[str, Any]], po: dict[str, Any]
) -> list[dict[str, Any]]:
    """A scan receipt's lines in the order lines' units, one per (line, lot, expiry)."""
    sums: dict[tuple[int, str, str], Decimal] = {}
    for r in rows:
        expiry = r["expiry"].isoformat() if r["expiry"] else ""
        k = (r["line"], r["lot"] or "", expiry)
        sums[k] = sums.get(k, Decimal(0)) + dec(r["base_quantity"])
    by_line = {ln["line"]: ln for ln in po["lines"]}
    out = []
    for (line, lot, expiry), base in sorted(sums.items()):
        factor = _factor(snap, by_line[line]["item"], by_line[line]["unit"])
        out.append(
            {
                "line": line,
                "quantity": f"{(base / factor).normalize():f}",
                "lot": lot or None,
                "expiry": expiry or None,
            }
        )
    return out


def _pending(conn: Any, receipt: str) -> bool:
    """Not recorded by the workflow yet (no row, or the ship notice's row still noticed)."""
    row = store.receipt(conn, receipt)
    return row is None or row["status"] == "noticed"


def _hand_over(engine: Any, snap: MasterDataSnapshot, reference: str, actor: str) -> dict[str, str]:
    """Hand every scan receipt of the order the workflow has not recorded to it (DBOS keys
    the message by receipt: a second hand-over of one receipt is a no-op); the receipts the
    workflow refused, with the reason (the scans stay recorded: a buyer decides)."""
    with engine.connect() as conn:
        rows = [r for r in _order_rows(conn, reference) if r["receipt"]]
        po = store.order(conn, reference)
        pending = sorted({r["receipt"] for r in rows if _pending(conn, r["receipt"])})
    assert po is not None
    refused: dict[str, str] = {}
    for receipt in pending:
        mine = [r for r in rows if r["receipt"] == receipt]
        try:
            submit_receipt(
                engine,
                reference,
                shipment_id=receipt.split(":", 1)[1],
                lines=_receipt_lines(snap, mine, po),
                received_by=actor,
                counts=mine[0]["shipment_id"],
            )
        except ReceiptRefused as error:
            log.warning("receiving.scan_receipt_refused", receipt=receipt, reason=str(error))
            refused[receipt] = str(error)
    return refused
