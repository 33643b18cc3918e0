"""Durable procure-to-pay on DBOS: one workflow per purchase order (``flows.invoice_settlement``
has the one per supplier invoice), and the planning that starts them.

``procure(reference)`` (workflow id = the order's reference, e.g. ``PO00000007``):

1. the purchase order is created in the ERP (idempotent by reference) and quoted;
2. it is sent to the supplier over its channel (``TradeOutbox``: X12 850, cXML OrderRequest);
3. the acknowledgement is awaited (``DBOS.recv("ack")``) for ``ack_timeout``; past it, a
   procurement task ``ack_overdue``: approve (go on as ordered) or close (cancel). A rejected
   order is cancelled: the ERP order cancelled, its replenishment lines released so the
   planner orders again elsewhere (compensation, visible in the trace);
4. the order is confirmed in the ERP; the quantities the supplier acknowledged are expected;
5. the goods are received (``flows.receiving``); what is still open in the ERP once nothing
   more is expected (closed short, a refused shipment) is cancelled there.

Every ERP call goes through the ERP outbox (``flows.erp_calls``): the step queues its document
(the order, ``<reference>:confirm``, ``<reference>:cancel``) for the destinations its route
names (domain ``purchase_orders``, the order's facility) and waits until the system of
record's ``ErpPosting`` worker posted it, under that ERP's rate limit; a refusal opens the
step's task (approve: the document is requeued and tried again, close: cancel).

Exactly once: every step's side effect is keyed (ERP documents by (document, destination) in
the outbox and by reference in the ERP, bus appends by idempotency key, rows by primary key,
journal entries by entry id), so a step that DBOS runs again after a crash finds its effect
and does not repeat it; the workflow id makes a second
start of the same process a no-op. A person's decisions reach a waiting workflow as
``flows.escalation`` describes. The runtime the steps use, the policy and the crash tests'
failpoints are ``flows.procurement_runtime``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from dbos import DBOS, SetWorkflowID

from medbridge.canonical.base import Money
from medbridge.canonical.erp import ErpRejected
from medbridge.canonical.procurement import OrderLine, PurchaseOrder
from medbridge.canonical.trade import (
    AcknowledgementDocument,
    AckStatus,
    LineStatus,
    OrderDocument,
    PartnerItem,
    Party,
    PartyRole,
)
from medbridge.canonical.trade import OrderLine as TradeOrderLine
from medbridge.domain.erp_routing import ErpDomain
from medbridge.flows import erp_calls
from medbridge.flows.erp_calls import ErpDocument
from medbridge.flows.escalation import approved
from medbridge.flows.procurement_runtime import (
    ProcurementPolicy,
    ProcurementRuntime,
    dec,
    failpoint,
    now,
    runtime,
    steady,
)
from medbridge.flows.receiving import outstanding, receive_goods
from medbridge.flows.trade import ChannelError
from medbridge.observability.logging import get_logger
from medbridge.store import procurement as store
from medbridge.store.erp_postings import DocumentKind

log = get_logger(__name__)

__all__ = ["Procurement", "ProcurementPolicy", "procure", "start_order"]


class ProcessClosed(Exception):
    """A person closed the process (or the supplier refused it): the workflow ends there."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class Procurement(ProcurementRuntime):
    """The runtime, and the planning rounds that start a workflow per new order."""

    # --- planning and starting ---------------------------------------------------------

    def plan_and_start(self) -> list[str]:
        """A planner round, then start the workflow of every order that has none yet."""
        self.planner.plan()
        return self.start_pending()

    def start_pending(self) -> list[str]:
        with self.engine.connect() as conn:
            pending = [o["reference"] for o in store.orders(conn, not_started=True)]
        for reference in pending:
            start_order(reference)
            with self.engine.begin() as conn:
                store.set_order(conn, reference, workflow_started=1)
        return pending

    def run_planner(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                self.plan_and_start()
            except Exception:  # the database busy, DBOS not ready: the next round tries again
                log.exception("replenishment.round_failed")
            stop.wait(interval)


def start_order(reference: str) -> None:
    with SetWorkflowID(reference):
        DBOS.start_workflow(procure, reference)


# --- the purchase order workflow ---------------------------------------------------------


@DBOS.workflow()
def procure(reference: str) -> str:
    try:
        _refusable(reference, "erp_order", _erp_order)
        _refusable(reference, "send_order", _send_order)
        _await_ack(reference)
        _refusable(reference, "erp_confirm", _erp_confirm)
        outcome = receive_goods(reference)
    except ProcessClosed as closed:
        _cancel(reference, closed.outcome)
        return closed.outcome
    _finish(reference, outcome)
    return outcome


def _refusable(reference: str, name: str, step: Callable[[str], Any]) -> Any:
    """Run a step the ERP or the supplier's channel may refuse for good; a refusal goes to
    procurement (approve: try again, close: cancel the order)."""
    attempt = 0
    while True:
        try:
            return step(reference)
        except ErpRejected as error:
            kind = "erp_rejected"
            reason = f"the ERP refused {name}: {error}" + (
                f" (field {error.field})" if error.field else ""
            )
        except ChannelError as error:  # transient ones were retried in the step
            kind, reason = "send_refused", f"the order could not be sent: {error.reason}"
        attempt += 1
        if not approved(reference, f"{name}:{attempt}", kind, reason):
            raise ProcessClosed("closed")


@DBOS.step()
@steady
def _erp_order(reference: str) -> str | None:
    rt = runtime()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    if po["erp_id"]:
        return str(po["erp_id"])
    erp_id = _order_in_erp(rt, po)
    failpoint("erp_order")
    if erp_id is not None:  # else no ERP receives purchase orders: the order stays released
        with rt.engine.begin() as conn:
            store.set_order(conn, reference, erp_id=erp_id, status="in_erp")
    return erp_id


def _order_in_erp(rt: ProcurementRuntime, po: dict[str, Any]) -> str | None:
    """The order created in the ERP through the outbox (at once if it is there already): its
    id in the system of record, None when no ERP receives purchase orders."""
    order = PurchaseOrder(
        reference=po["reference"],
        supplier=po["supplier"],
        order_date=po["created_at"].date(),
        lines=tuple(
            OrderLine(
                item=ln["item"],
                quantity=dec(ln["quantity"]),
                unit=ln["unit"],
                unit_price=Money(amount=dec(ln["unit_price"]), currency=ln["currency"]),
            )
            for ln in po["lines"]
        ),
        delivery_location=po["lines"][0]["location"],
    )
    posted = rt.erp_document(
        DocumentKind.PURCHASE_ORDER,
        po["reference"],
        ErpDomain.PURCHASE_ORDERS,
        po["facility"],
        payload=order.model_dump_json(),
    )
    return None if posted is None else posted.erp_id


def _order_follow_up(rt: ProcurementRuntime, po: dict[str, Any], kind: DocumentKind) -> None:
    """An order's confirmation or cancellation through the outbox, after the order (queued
    again where it has no row: an order sent before the outbox knew workflow documents)."""
    _order_in_erp(rt, po)
    doc = _follow_up_document(po, kind)
    rt.erp_document(
        doc.kind, doc.document, doc.domain, doc.facility, payload=doc.payload, after=doc.after
    )


def _follow_up_document(po: dict[str, Any], kind: DocumentKind) -> ErpDocument:
    """An order's confirmation (``<reference>:confirm``) or cancellation (``:cancel``, with
    the reason: the order's status), after the order."""
    reference = po["reference"]
    suffix = "confirm" if kind is DocumentKind.ORDER_CONFIRMATION else "cancel"
    reason = f"order {reference}: {po['status']}"
    return ErpDocument(
        f"{reference}:{suffix}",
        kind,
        ErpDomain.PURCHASE_ORDERS,
        po["facility"],
        payload=json.dumps({"reason": reason}) if suffix == "cancel" else None,
        after=reference,
    )


def order_document(po: dict[str, Any], buyer: str) -> OrderDocument:
    """The order as the supplier gets it: lines in the wire unit, the contract as their part
    number and our item code as ours."""
    return OrderDocument(
        order_number=po["reference"],
        order_date=po["created_at"].date(),
        parties=(
            Party(role=PartyRole.BUYER, id=buyer),
            Party(role=PartyRole.SHIP_TO, id=po["lines"][0]["location"]),
        ),
        lines=tuple(
            TradeOrderLine(
                line_number=ln["line"],
                item=PartnerItem(supplier_part=ln["contract"], buyer_part=ln["item"]),
                quantity=dec(ln["quantity"]),
                unit=ln["wire_unit"],
                unit_price=dec(ln["unit_price"]),
            )
            for ln in po["lines"]
        ),
    )


@DBOS.step()
@steady
def _send_order(reference: str) -> str:
    rt = runtime()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    partner = rt.partners.get(po["supplier"])
    if partner is None:
        raise ChannelError(f"{po['supplier']} is not a trading partner", permanent=True)
    receipt = rt.retrying(
        f"send {reference}",
        lambda: rt.outbox.send(
            order_document(po, rt.buyer),
            partner=partner,
            correlation_id=uuid.UUID(po["correlation_id"]),
        ),
        lambda e: isinstance(e, ChannelError) and not e.permanent,
    )
    failpoint("send_order")
    with rt.engine.begin() as conn:
        store.set_order(conn, reference, status="sent")
    return receipt.control


def _await_ack(reference: str) -> None:
    message = DBOS.recv("ack", timeout_seconds=runtime().policy.ack_timeout)
    if message is None:
        reason = "the supplier has not acknowledged the order in time"
        if not approved(reference, "ack_overdue", "ack_overdue", reason):
            raise ProcessClosed("cancelled")
        _expect(reference, None)
        return
    ack = AcknowledgementDocument.model_validate(message["document"])
    if ack.status is AckStatus.REJECTED:
        raise ProcessClosed("rejected_by_supplier")
    _expect(reference, message["document"])


@DBOS.step()
@steady
def _expect(reference: str, ack: dict[str, Any] | None) -> None:
    """Record what the supplier will ship per line: the acknowledged quantities (0 for a
    rejected line), or the order's when it was approved without an acknowledgement."""
    rt = runtime()
    with rt.engine.begin() as conn:
        po = store.order(conn, reference)
        assert po is not None
        answered = {}
        if ack is not None:
            document = AcknowledgementDocument.model_validate(ack)
            for line in document.lines:
                if line.status is LineStatus.REJECTED:
                    answered[line.line_number] = Decimal(0)
                elif line.status is LineStatus.QUANTITY_CHANGED:
                    answered[line.line_number] = line.quantity
        lines = [
            ln | {"expected": str(answered.get(ln["line"], dec(ln["quantity"])))}
            for ln in po["lines"]
        ]
        store.set_order(conn, reference, lines=lines, status="acknowledged")


@DBOS.step()
@steady
def _erp_confirm(reference: str) -> None:
    rt = runtime()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    if po["erp_id"]:
        _order_follow_up(rt, po, DocumentKind.ORDER_CONFIRMATION)
    failpoint("erp_confirm")
    with rt.engine.begin() as conn:
        store.set_order(conn, reference, status="confirmed")


@DBOS.step()
@steady
def _finish(reference: str, outcome: str) -> None:
    """The goods are in (or the order closed short): anything still open in the ERP is
    cancelled; the replenishment lines are received."""
    rt = runtime()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
        left = outstanding(conn, reference)
        refused = any(r["status"] == "rejected" for r in store.receipts(conn, reference))
        short = refused or (
            any(dec(ln.get("expected", ln["quantity"])) < dec(ln["quantity"]) for ln in po["lines"])
            if po
            else False
        )
    assert po is not None
    if (left or short) and po["erp_id"]:
        _order_follow_up(rt, po | {"status": outcome}, DocumentKind.ORDER_CANCELLATION)
    with rt.engine.begin() as conn:
        store.set_lines(conn, reference, "received")  # lines of a refused shipment: cancelled
        store.set_order(conn, reference, status=outcome)


@DBOS.step()
@steady
def _cancel(reference: str, outcome: str) -> None:
    """Compensation: the order cancelled in the ERP (if it got there), its replenishment lines
    released so the position is planned again."""
    rt = runtime()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    if po["erp_id"]:
        _order_follow_up(rt, po | {"status": outcome}, DocumentKind.ORDER_CANCELLATION)
    else:  # never in its system of record (refused there): its shadows' copies are undone
        cancel = _follow_up_document(po | {"status": outcome}, DocumentKind.ORDER_CANCELLATION)
        erp_calls.to_shadows(rt.engine, cancel, now())
    with rt.engine.begin() as conn:
        store.set_lines(conn, reference, "cancelled")
        store.set_order(conn, reference, status=outcome)
    log.warning("procurement.cancelled", order=reference, outcome=outcome)
