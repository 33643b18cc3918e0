"""Receiving a purchase order's goods, the part of ``procure`` that waits on ``"goods"``.

Ship notices and receipts arrive on the workflow's ``"goods"`` topic. A ship notice is
recorded (and received as announced when ``auto_receive``: the dock trusts the ASN), unless
it announces substitutes: those wait for the dock, with a pharmacy task saying so. A receipt
(receiving API, GS1 scans) records the goods receipt in the ERP (through the ERP outbox,
``flows.erp_calls``: queued for the destinations of domain ``receipts`` and the order's
facility, awaited until the system of record posted it), appends the receipt movements
to the bus (the ledger posts stock and GRNI, the ERP posting worker takes the journal entry to
the ERP) and updates what is still expected. A rejected shipment records nothing in the ERP
and expects nothing more of those lines (their replenishment lines are released). No goods
for ``shipment_timeout``: a procurement task (approve: wait on; close: close short).

Every step's side effect is keyed (the goods receipt by (reference, destination) in the
outbox and by reference in the ERP, movements by idempotency
key, the receipt row by primary key): a step run again after a crash finds what it did.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from dbos import DBOS

from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.procurement import GoodsReceipt, ReceiptLine
from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.canonical.trade import PartnerItem, ShipNoticeDocument
from medbridge.domain.erp_routing import ErpDomain
from medbridge.flows.escalation import approved
from medbridge.flows.intake import Submission
from medbridge.flows.procurement_runtime import (
    SOURCE,
    dec,
    failpoint,
    now,
    order_correlation,
    order_line_for,
    runtime,
    steady,
)
from medbridge.observability.logging import get_logger
from medbridge.store import procurement as store
from medbridge.store.erp_postings import DocumentKind

log = get_logger(__name__)


def receive_goods(reference: str) -> str:
    rt = runtime()
    overdue, received, rejected = 0, False, False
    while _still_expected(reference):
        message = DBOS.recv("goods", timeout_seconds=rt.policy.shipment_timeout)
        if message is None:
            overdue += 1
            reason = "goods still expected and nothing shipped in time"
            if not approved(reference, f"shipment_overdue:{overdue}", "shipment_overdue", reason):
                return "closed_short"
        elif message["kind"] == "ship_notice":
            shipment = _notice(reference, message["document"])
            if shipment is None or not rt.policy.auto_receive:
                continue
            swapped = [ln["substitute"] for ln in shipment["lines"] if "substitute" in ln]
            if swapped:  # the dock cannot receive another item as the one ordered
                _substitution(reference, shipment["shipment_id"], swapped)
                continue
            _receive(reference, shipment)
            received = True
        elif message.get("rejected"):
            _reject_shipment(reference, message)
            rejected = True
        else:
            _receive(reference, message)
            received = True
    return "shipment_rejected" if rejected and not received else "received"


@DBOS.step()
@steady
def _still_expected(reference: str) -> bool:
    with runtime().engine.connect() as conn:
        return bool(outstanding(conn, reference))


def outstanding(conn: Any, reference: str) -> dict[int, Decimal]:
    """Contract units still expected per order line."""
    po = store.order(conn, reference)
    assert po is not None
    got: dict[int, Decimal] = {}
    for r in store.receipts(conn, reference):
        if r["status"] == "received":
            for ln in r["lines"]:
                got[ln["line"]] = got.get(ln["line"], Decimal(0)) + dec(ln["quantity"])
        elif r["status"] == "rejected":
            for ln in r["lines"]:  # a refused shipment is not expected again
                got[ln["line"]] = got.get(ln["line"], Decimal(0)) + dec(ln["quantity"])
    left = {}
    for ln in po["lines"]:
        rest = dec(ln.get("expected", ln["quantity"])) - got.get(ln["line"], Decimal(0))
        if rest > 0:
            left[ln["line"]] = rest
    return left


def _substitute(item: PartnerItem, line: dict[str, Any]) -> bool:
    """The supplier names another item than the order line's (its part or ours)."""
    named = [p for p in (item.supplier_part, item.buyer_part) if p]
    return bool(named) and line["contract"] not in named and line["item"] not in named


def _part(item: PartnerItem) -> str:
    return item.supplier_part or item.buyer_part or item.gtin or item.description or "?"


@DBOS.step()
@steady
def _notice(reference: str, document: dict[str, Any]) -> dict[str, Any] | None:
    """Record a ship notice's lines for this order; the receipt it announces (None if it
    ships nothing of ours)."""
    rt = runtime()
    notice = ShipNoticeDocument.model_validate(document)
    with rt.engine.begin() as conn:
        po = store.order(conn, reference)
        assert po is not None
        lines = []
        for shipped in notice.orders:
            if shipped.order_number != reference:
                continue
            for pack in shipped.packs:
                for sl in pack.lines:
                    ln = order_line_for(po, sl.item, sl.line_number)
                    if ln is None:
                        continue
                    lines.append(
                        {
                            "line": ln["line"],
                            "quantity": str(sl.quantity),
                            "lot": sl.lot,
                            "expiry": sl.expiry.isoformat() if sl.expiry else None,
                        }
                        | ({"substitute": _part(sl.item)} if _substitute(sl.item, ln) else {})
                    )
        if not lines:
            return None
        store.notice(
            conn,
            reference=f"{reference}:{notice.shipment_id}",
            order_reference=reference,
            shipment_id=notice.shipment_id,
            lines=lines,
            correlation_id=po["correlation_id"],
        )
        store.set_order(conn, reference, status="shipped")
    return {"kind": "receipt", "shipment_id": notice.shipment_id, "lines": lines, "by": "asn"}


@DBOS.step()
@steady
def _receive(reference: str, receipt: dict[str, Any]) -> None:
    """Record a receipt: the ERP's goods receipt (through the outbox), the stock movements,
    the row. Each part is keyed: a repeat after a crash finds what it did."""
    rt = runtime()
    gr_reference = f"{reference}:{receipt['shipment_id']}"
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
        done = store.receipt(conn, gr_reference)
    assert po is not None
    if done is not None and done["status"] != "noticed":
        return
    by_line = {ln["line"]: ln for ln in po["lines"]}
    lines = [(by_line[r["line"]], r) for r in receipt["lines"]]
    today = now().date()
    goods = GoodsReceipt(
        reference=gr_reference,
        supplier=po["supplier"],
        purchase_order=reference,
        received_on=today,
        lines=_erp_lines(lines),
    )
    posted = rt.erp_document(
        DocumentKind.GOODS_RECEIPT,
        gr_reference,
        ErpDomain.RECEIPTS,
        po["facility"],
        payload=goods.model_dump_json(),
    )
    erp_id = None if posted is None else posted.erp_id
    failpoint("erp_receipt")
    at = now()
    rt.intake.submit(
        [
            Submission(
                StockMovement(
                    kind=MovementKind.RECEIPT,
                    item=ln["item"],
                    location=ln["location"],
                    quantity=dec(r["quantity"]),
                    unit=ln["unit"],
                    lot=r.get("lot"),
                    expiry=date.fromisoformat(r["expiry"]) if r.get("expiry") else None,
                    unit_cost=Money(amount=dec(ln["unit_price"]), currency=ln["currency"]),
                    occurred_at=at,
                    reason=f"goods receipt {gr_reference}",
                ),
                idempotency_key=f"{gr_reference}:{n}",
                correlation_id=uuid.UUID(po["correlation_id"]),
            )
            for n, (ln, r) in enumerate(lines, start=1)
        ],
        source=SOURCE,
    )
    failpoint("receipt_movements")
    with rt.engine.begin() as conn:
        _settle(conn, po, receipt, "received", erp_id)
        if receipt.get("counts"):  # scans counted against a ship notice: it is not awaited
            store.count_notice(conn, f"{reference}:{receipt['counts']}")
        store.set_order(conn, reference, status="receiving")
    log.info("procurement.received", order=reference, receipt=gr_reference, erp_id=erp_id)


def _erp_lines(lines: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[ReceiptLine, ...]:
    """One ERP receipt line per order line (the ERP receives each purchase line once), its
    quantities summed: several lots of a line (a dock's scans) keep their lot only when they
    share it; the stock movements keep every lot."""
    grouped: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for ln, r in lines:
        grouped.setdefault(ln["line"], []).append((ln, r))
    out = []
    for group in grouped.values():
        ln = group[0][0]
        lots = {r.get("lot") for _, r in group}
        expiries = {r.get("expiry") for _, r in group}
        expiry = expiries.pop() if len(expiries) == 1 else None
        out.append(
            ReceiptLine(
                item=ln["item"],
                quantity=sum((dec(r["quantity"]) for _, r in group), Decimal(0)),
                unit=ln["unit"],
                lot=lots.pop() if len(lots) == 1 else None,
                expiry=date.fromisoformat(expiry) if expiry else None,
                unit_price=Money(amount=dec(ln["unit_price"]), currency=ln["currency"]),
            )
        )
    return tuple(out)


def _settle(
    conn: Any, po: dict[str, Any], receipt: dict[str, Any], status: str, erp_id: str | None
) -> None:
    """The shipment's row (noticed first if no ship notice came) as received or refused."""
    gr_reference = f"{po['reference']}:{receipt['shipment_id']}"
    if store.receipt(conn, gr_reference) is None:
        store.notice(
            conn,
            reference=gr_reference,
            order_reference=po["reference"],
            shipment_id=receipt["shipment_id"],
            lines=receipt["lines"],
            correlation_id=po["correlation_id"],
        )
    store.settle_receipt(
        conn,
        gr_reference,
        lines=receipt["lines"],
        status=status,
        received_by=str(receipt.get("by") or "receiving"),
        erp_id=erp_id,
    )


@DBOS.step()
@steady
def _substitution(reference: str, shipment_id: str, parts: list[str]) -> None:
    """A shipment announcing substitutes waits for the dock: a pharmacy task says so."""
    runtime().work_queues.open(
        NewTask(
            key=f"{reference}:{shipment_id}:substitution",
            queue=WorkQueue.PHARMACY,
            kind="substitution",
            subject=f"purchase order {reference}, shipment {shipment_id}",
            reason=(
                f"the supplier ships {', '.join(parts)} in place of what was ordered: "
                "receive it at the dock (POST /v1/purchase-orders/.../receipts) or refuse it"
            ),
            context={"order": reference, "shipment_id": shipment_id, "substitutes": parts},
            actions=(Action.CLOSE,),
            correlation_id=order_correlation(reference),
        )
    )


@DBOS.step()
@steady
def _reject_shipment(reference: str, receipt: dict[str, Any]) -> None:
    """Refuse a delivery: nothing enters stock or the ERP; its lines are expected no more and
    their replenishment lines are released (the planner orders again)."""
    rt = runtime()
    gr_reference = f"{reference}:{receipt['shipment_id']}"
    with rt.engine.begin() as conn:
        po = store.order(conn, reference)
        assert po is not None
        _settle(conn, po, receipt, "rejected", None)
        by_line = {ln["line"]: ln for ln in po["lines"]}
        items = [by_line[r["line"]]["item"] for r in receipt["lines"] if r["line"] in by_line]
        store.set_lines(conn, reference, "cancelled", items)
        store.set_order(
            conn,
            reference,
            note=f"shipment {receipt['shipment_id']} rejected: "
            f"{receipt.get('reason') or 'no reason given'}",
        )
    log.warning("procurement.shipment_rejected", order=reference, receipt=gr_reference)
