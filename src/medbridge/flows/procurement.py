"""Durable procure-to-pay on DBOS: one workflow per purchase order, one per supplier invoice.

``procure(reference)`` (workflow id = the order's reference, e.g. ``PO00000007``):

1. the purchase order is created in the ERP (idempotent by reference) and quoted;
2. it is sent to the supplier over its channel (``TradeOutbox``: X12 850, cXML OrderRequest);
3. the acknowledgement is awaited (``DBOS.recv("ack")``) for ``ack_timeout``; past it, a
   procurement task ``ack_overdue``: approve (go on as ordered) or close (cancel). A rejected
   order is cancelled: the ERP order cancelled, its replenishment lines released so the
   planner orders again elsewhere (compensation, visible in the trace);
4. the order is confirmed in the ERP; the quantities the supplier acknowledged are expected;
5. ship notices and receipts arrive on ``"goods"``: a ship notice is recorded (and received
   as announced when ``auto_receive``: the dock trusts the ASN); a receipt (receiving API, GS1
   scans) records the goods receipt in the ERP, appends the receipt movements to the bus (the
   ledger posts stock and GRNI, the ERP posting worker takes the journal entry to the ERP) and
   updates what is still expected. A rejected shipment records nothing in the ERP, expects
   nothing more of those lines and, once nothing is expected, cancels what is open in the ERP.
   No goods for ``shipment_timeout``: a procurement task (approve: wait on; close: close short).

``settle_invoice(invoice)`` (workflow id ``invoice:<the document's wire identity>``, started
per invoice received): waits up to ``receipt_grace`` for the goods it bills (an invoice often
overtakes the truck), then three-way matches it (``domain.matching``, tolerances from the
policy; serialised per supplier so that two copies of one invoice cannot both match). Matched:
posted (the supplier invoice in the ERP, posted; GRNI / PPV / AP journal entry through the
ERP posting outbox). An exception opens an AP task with its reasons and waits for the
decision: approve (post as billed), adjust price / quantity (post as corrected), request credit
(post as billed, the variance expected back as a credit memo), reject / close (nothing
posted). A credit memo is never matched automatically; approved, it posts its reversal (debit
AP, credit PPV). An invoice for no order of ours: an AP task (reject or close).

Exactly once: every step's side effect is keyed (ERP documents by reference, bus appends by
idempotency key, rows by primary key, journal entries by entry id), so a step that DBOS runs
again after a crash finds its effect and does not repeat it; the workflow id makes a second
start of the same process a no-op. Decisions reach a waiting workflow by ``DBOS.send``; it also
re-reads its task every ``poll`` seconds, so a decision recorded just before a crash (and never
sent) is not lost.

``FAILPOINT`` (environment ``MEDBRIDGE_FAILPOINT``): a step name; the process SIGKILLs itself
right after that step's side effect, before DBOS records the step, once per marker file
``MEDBRIDGE_FAILPOINT_MARKER``. Used by the crash tests; unset in production.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from dbos import DBOS, SetWorkflowID
from sqlalchemy import Engine

from medbridge.canonical.base import Money
from medbridge.canonical.erp import ErpPort, ErpRejected, ErpUnavailable
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import AccountRole
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.partners import TradingPartner
from medbridge.canonical.procurement import (
    GoodsReceipt,
    InvoiceLine,
    OrderLine,
    PurchaseOrder,
    ReceiptLine,
    SupplierInvoice,
)
from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.canonical.trade import (
    AcknowledgementDocument,
    AckStatus,
    InvoiceDocument,
    InvoicePurpose,
    LineStatus,
    OrderDocument,
    PartnerItem,
    Party,
    PartyRole,
    ShipNoticeDocument,
)
from medbridge.canonical.trade import OrderLine as TradeOrderLine
from medbridge.domain.ledger import money
from medbridge.domain.matching import (
    InvoiceLineIn,
    MatchBook,
    MatchInvoice,
    MatchResult,
    PoLine,
    Posting,
    PostingAccounts,
    ReceivedLine,
    Tolerances,
    journal_lines,
    match_invoice,
)
from medbridge.flows.intake import MovementIntake, Submission
from medbridge.flows.replenishment import ReplenishmentPlanner
from medbridge.flows.trade import ChannelError, TradeOutbox
from medbridge.flows.work_queue import WorkQueues
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as store
from medbridge.store import work_items
from medbridge.store.trade import find_by_key, next_control_number
from medbridge.store.work_items import WorkItem

log = get_logger(__name__)
T = TypeVar("T")

SOURCE = "procurement"
"""The source of the receipt movements the workflows append."""


@dataclass(frozen=True)
class ProcurementPolicy:
    ack_timeout: float = 4 * 3600.0
    shipment_timeout: float = 14 * 86400.0
    receipt_grace: float = 2 * 86400.0
    """How long an invoice waits for the goods it bills before it is matched anyway."""
    poll: float = 30.0
    """How often a waiting workflow re-reads its task and an invoice its receipts."""
    auto_receive: bool = False
    tolerances: Tolerances = field(default_factory=Tolerances)
    erp_retry_max: float = 60.0


class ProcessClosed(Exception):
    """A person closed the process (or the supplier refused it): the workflow ends there."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


@dataclass
class Procurement:
    """What the workflow steps work with (installed once per process: DBOS is global)."""

    engine: Engine
    masterdata: MasterDataRepository
    intake: MovementIntake
    outbox: TradeOutbox
    partners: Mapping[str, TradingPartner]
    work_queues: WorkQueues
    planner: ReplenishmentPlanner
    erp: Callable[[], ErpPort | None]
    policy: ProcurementPolicy = field(default_factory=ProcurementPolicy)
    buyer: str = "NET"
    _erp_lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def call_erp(self, what: str, call: Callable[[ErpPort], T]) -> T:
        """One ERP call, retried while the ERP is unreachable (or not attached yet) with
        backoff up to ``erp_retry_max`` s; ``ErpRejected`` goes to the workflow."""
        delay = 0.5
        while True:
            erp = self.erp()
            try:
                if erp is None:
                    raise ErpUnavailable("no ERP attached")
                with self._erp_lock:
                    return call(erp)
            except ErpUnavailable as error:
                if self.stopping.is_set():
                    raise
                log.warning("procurement.erp_unavailable", what=what, error=str(error))
                self.stopping.wait(delay)
                delay = min(delay * 2, self.policy.erp_retry_max)

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

    def transfer(self, item: WorkItem) -> None:
        """An approved transfer proposal: the stock moves (keyed by the task: once)."""
        at = now()
        self.intake.submit(
            [
                Submission(
                    StockMovement(
                        kind=MovementKind.TRANSFER,
                        item=t["item"],
                        location=t["from"],
                        to_location=t["to"],
                        quantity=_d(t["quantity"]),
                        unit=self._base_unit(t["item"]),
                        occurred_at=at,
                        reason=f"transfer approved by {item.decided_by} (task {item.id})",
                    ),
                    idempotency_key=f"task:{item.id}:{n}",
                    correlation_id=uuid.UUID(item.correlation_id) if item.correlation_id else None,
                )
                for n, t in enumerate(item.context.get("transfers", []), start=1)
            ],
            source=SOURCE,
        )

    def _base_unit(self, code: str) -> str:
        with self.engine.connect() as conn:
            return self.masterdata.items(conn, [code])[code].base_unit

    def run_planner(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                self.plan_and_start()
            except Exception:  # the database busy, DBOS not ready: the next round tries again
                log.exception("replenishment.round_failed")
            stop.wait(interval)


_runtime: Procurement | None = None


def install(runtime: Procurement | None) -> None:
    global _runtime
    _runtime = runtime


def _rt() -> Procurement:
    if _runtime is None:
        raise RuntimeError("procurement workflows are not installed in this process")
    return _runtime


def failpoint(name: str) -> None:
    """Kill this process (SIGKILL) right here if the crash test asked for ``name``, once."""
    if os.environ.get("MEDBRIDGE_FAILPOINT") != name:
        return
    marker = Path(os.environ.get("MEDBRIDGE_FAILPOINT_MARKER", ".failpoint"))
    if marker.exists():
        return
    marker.write_text(name)
    log.warning("failpoint.kill", name=name)
    os.kill(os.getpid(), signal.SIGKILL)


def start_order(reference: str) -> None:
    with SetWorkflowID(reference):
        DBOS.start_workflow(procure, reference)


def start_invoice(invoice: dict[str, Any]) -> str:
    workflow_id = f"invoice:{invoice['key']}"
    with SetWorkflowID(workflow_id):
        DBOS.start_workflow(settle_invoice, invoice)
    return workflow_id


def now() -> datetime:
    return datetime.now(UTC)


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


# --- the purchase order workflow ---------------------------------------------------------


@DBOS.workflow()
def procure(reference: str) -> str:
    try:
        _erp_step(reference, "erp_order", _erp_order)
        _send_order(reference)
        _await_ack(reference)
        _erp_step(reference, "erp_confirm", _erp_confirm)
        outcome = _receive_goods(reference)
    except ProcessClosed as closed:
        _cancel(reference, closed.outcome)
        return closed.outcome
    _finish(reference, outcome)
    return outcome


def _erp_step(reference: str, name: str, step: Callable[[str], Any]) -> Any:
    """Run an ERP step; a refusal goes to procurement (approve: try again, close: cancel)."""
    attempt = 0
    while True:
        try:
            return step(reference)
        except ErpRejected as error:
            attempt += 1
            decision = _escalate(
                reference,
                NewTask(
                    key=f"{reference}:{name}:{attempt}",
                    queue=WorkQueue.PROCUREMENT,
                    kind="erp_rejected",
                    subject=f"purchase order {reference}",
                    reason=f"the ERP refused {name}: {error}"
                    + (f" (field {error.field})" if error.field else ""),
                    context={"step": name, "field": error.field},
                    actions=(Action.APPROVE, Action.CLOSE),
                ),
            )
            if decision["action"] != Action.APPROVE:
                raise ProcessClosed("closed") from None


@DBOS.step()
def _erp_order(reference: str) -> str:
    rt = _rt()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    if po["erp_id"]:
        return str(po["erp_id"])
    order = PurchaseOrder(
        reference=reference,
        supplier=po["supplier"],
        order_date=po["created_at"].date(),
        lines=tuple(
            OrderLine(
                item=ln["item"],
                quantity=_d(ln["quantity"]),
                unit=ln["unit"],
                unit_price=Money(amount=_d(ln["unit_price"]), currency=ln["currency"]),
            )
            for ln in po["lines"]
        ),
        delivery_location=po["lines"][0]["location"],
    )
    ref = rt.call_erp("create_purchase_order", lambda erp: erp.create_purchase_order(order))
    failpoint("erp_order")
    with rt.engine.begin() as conn:
        store.set_order(conn, reference, erp_id=ref.erp_id, status="in_erp")
    return ref.erp_id


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
                quantity=_d(ln["quantity"]),
                unit=ln["wire_unit"],
                unit_price=_d(ln["unit_price"]),
            )
            for ln in po["lines"]
        ),
    )


@DBOS.step()
def _send_order(reference: str) -> str:
    rt = _rt()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    partner = rt.partners.get(po["supplier"])
    if partner is None:
        raise ErpRejected(f"supplier {po['supplier']} is not a trading partner", "supplier")
    delay = 1.0
    while True:
        try:
            receipt = rt.outbox.send(
                order_document(po, rt.buyer),
                partner=partner,
                correlation_id=uuid.UUID(po["correlation_id"]),
            )
            break
        except ChannelError as error:
            if error.permanent:
                raise ErpRejected(f"the supplier refused the order: {error.reason}") from error
            log.warning("procurement.send_retry", order=reference, reason=error.reason)
            rt.stopping.wait(delay)
            delay = min(delay * 2, rt.policy.erp_retry_max)
    failpoint("send_order")
    with rt.engine.begin() as conn:
        store.set_order(conn, reference, status="sent")
    return receipt.control


def _await_ack(reference: str) -> None:
    message = DBOS.recv("ack", timeout_seconds=_rt().policy.ack_timeout)
    if message is None:
        decision = _escalate(
            reference,
            NewTask(
                key=f"{reference}:ack_overdue",
                queue=WorkQueue.PROCUREMENT,
                kind="ack_overdue",
                subject=f"purchase order {reference}",
                reason="the supplier has not acknowledged the order in time",
                context={},
                actions=(Action.APPROVE, Action.CLOSE),
            ),
        )
        if decision["action"] != Action.APPROVE:
            raise ProcessClosed("cancelled")
        _expect(reference, None)
        return
    ack = AcknowledgementDocument.model_validate(message["document"])
    if ack.status is AckStatus.REJECTED:
        raise ProcessClosed("rejected_by_supplier")
    _expect(reference, message["document"])


@DBOS.step()
def _expect(reference: str, ack: dict[str, Any] | None) -> None:
    """Record what the supplier will ship per line: the acknowledged quantities (0 for a
    rejected line), or the order's when it was approved without an acknowledgement."""
    rt = _rt()
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
            ln | {"expected": str(answered.get(ln["line"], _d(ln["quantity"])))}
            for ln in po["lines"]
        ]
        store.set_order(conn, reference, lines=lines, status="acknowledged")


@DBOS.step()
def _erp_confirm(reference: str) -> None:
    rt = _rt()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    assert po["erp_id"]
    rt.call_erp("confirm_purchase_order", lambda erp: erp.confirm_purchase_order(po["erp_id"]))
    failpoint("erp_confirm")
    with rt.engine.begin() as conn:
        store.set_order(conn, reference, status="confirmed")


def _receive_goods(reference: str) -> str:
    rt = _rt()
    overdue, received, rejected = 0, False, False
    while _still_expected(reference):
        message = DBOS.recv("goods", timeout_seconds=rt.policy.shipment_timeout)
        if message is None:
            overdue += 1
            decision = _escalate(
                reference,
                NewTask(
                    key=f"{reference}:shipment_overdue:{overdue}",
                    queue=WorkQueue.PROCUREMENT,
                    kind="shipment_overdue",
                    subject=f"purchase order {reference}",
                    reason="goods still expected and nothing shipped in time",
                    context={},
                    actions=(Action.APPROVE, Action.CLOSE),
                ),
            )
            if decision["action"] != Action.APPROVE:
                return "closed_short"
        elif message["kind"] == "ship_notice":
            shipment = _notice(reference, message["document"])
            if rt.policy.auto_receive and shipment is not None:
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
def _still_expected(reference: str) -> bool:
    with _rt().engine.connect() as conn:
        return bool(_outstanding(conn, reference))


def _outstanding(conn: Any, reference: str) -> dict[int, Decimal]:
    """Contract units still expected per order line."""
    po = store.order(conn, reference)
    assert po is not None
    got: dict[int, Decimal] = {}
    for r in store.receipts(conn, reference):
        if r["status"] == "received":
            for ln in r["lines"]:
                got[ln["line"]] = got.get(ln["line"], Decimal(0)) + _d(ln["quantity"])
        elif r["status"] == "rejected":
            for ln in r["lines"]:  # a refused shipment is not expected again
                got[ln["line"]] = got.get(ln["line"], Decimal(0)) + _d(ln["quantity"])
    left = {}
    for ln in po["lines"]:
        rest = _d(ln.get("expected", ln["quantity"])) - got.get(ln["line"], Decimal(0))
        if rest > 0:
            left[ln["line"]] = rest
    return left


def _po_line(po: dict[str, Any], item: PartnerItem, number: int) -> dict[str, Any] | None:
    """The order line a supplier's line is about: by line number, else by part number."""
    lines: list[dict[str, Any]] = po["lines"]
    by_number = {ln["line"]: ln for ln in lines}
    if number in by_number:
        return by_number[number]
    return next(
        (
            ln
            for ln in lines
            if item.buyer_part == ln["item"] or item.supplier_part == ln["contract"]
        ),
        None,
    )


@DBOS.step()
def _notice(reference: str, document: dict[str, Any]) -> dict[str, Any] | None:
    """Record a ship notice's lines for this order; the receipt it announces (None if it
    ships nothing of ours)."""
    rt = _rt()
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
                    ln = _po_line(po, sl.item, sl.line_number)
                    if ln is None:
                        continue
                    lines.append(
                        {
                            "line": ln["line"],
                            "quantity": str(sl.quantity),
                            "lot": sl.lot,
                            "expiry": sl.expiry.isoformat() if sl.expiry else None,
                        }
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
def _receive(reference: str, receipt: dict[str, Any]) -> None:
    """Record a receipt: the ERP's goods receipt, the stock movements, the row. Each part is
    keyed: a repeat after a crash finds what it did."""
    rt = _rt()
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
        lines=tuple(
            ReceiptLine(
                item=ln["item"],
                quantity=_d(r["quantity"]),
                unit=ln["unit"],
                lot=r.get("lot"),
                expiry=date.fromisoformat(r["expiry"]) if r.get("expiry") else None,
                unit_price=Money(amount=_d(ln["unit_price"]), currency=ln["currency"]),
            )
            for ln, r in lines
        ),
    )
    ref = rt.call_erp("record_goods_receipt", lambda erp: erp.record_goods_receipt(goods))
    failpoint("erp_receipt")
    at = now()
    rt.intake.submit(
        [
            Submission(
                StockMovement(
                    kind=MovementKind.RECEIPT,
                    item=ln["item"],
                    location=ln["location"],
                    quantity=_d(r["quantity"]),
                    unit=ln["unit"],
                    lot=r.get("lot"),
                    expiry=date.fromisoformat(r["expiry"]) if r.get("expiry") else None,
                    unit_cost=Money(amount=_d(ln["unit_price"]), currency=ln["currency"]),
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
        if store.receipt(conn, gr_reference) is None:
            store.notice(
                conn,
                reference=gr_reference,
                order_reference=reference,
                shipment_id=receipt["shipment_id"],
                lines=receipt["lines"],
                correlation_id=po["correlation_id"],
            )
        store.settle_receipt(
            conn,
            gr_reference,
            lines=receipt["lines"],
            status="received",
            received_by=str(receipt.get("by") or "receiving"),
            erp_id=ref.erp_id,
        )
        store.set_order(conn, reference, status="receiving")
    log.info("procurement.received", order=reference, receipt=gr_reference, erp_id=ref.erp_id)


@DBOS.step()
def _reject_shipment(reference: str, receipt: dict[str, Any]) -> None:
    """Refuse a delivery: nothing enters stock or the ERP; its lines are expected no more and
    their replenishment lines are released (the planner orders again)."""
    rt = _rt()
    gr_reference = f"{reference}:{receipt['shipment_id']}"
    with rt.engine.begin() as conn:
        po = store.order(conn, reference)
        assert po is not None
        if store.receipt(conn, gr_reference) is None:
            store.notice(
                conn,
                reference=gr_reference,
                order_reference=reference,
                shipment_id=receipt["shipment_id"],
                lines=receipt["lines"],
                correlation_id=po["correlation_id"],
            )
        store.settle_receipt(
            conn,
            gr_reference,
            status="rejected",
            received_by=str(receipt.get("by") or "receiving"),
        )
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


@DBOS.step()
def _finish(reference: str, outcome: str) -> None:
    """The goods are in (or the order closed short): anything still open in the ERP is
    cancelled; the replenishment lines are received."""
    rt = _rt()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
        left = _outstanding(conn, reference)
        refused = any(r["status"] == "rejected" for r in store.receipts(conn, reference))
        short = refused or (
            any(_d(ln.get("expected", ln["quantity"])) < _d(ln["quantity"]) for ln in po["lines"])
            if po
            else False
        )
    assert po is not None
    if (left or short) and po["erp_id"]:
        reason = f"order {reference} {outcome}"
        rt.call_erp(
            "cancel_purchase_order", lambda erp: erp.cancel_purchase_order(po["erp_id"], reason)
        )
    with rt.engine.begin() as conn:
        store.set_lines(conn, reference, "received")  # lines of a refused shipment: cancelled
        store.set_order(conn, reference, status=outcome)


@DBOS.step()
def _cancel(reference: str, outcome: str) -> None:
    """Compensation: the order cancelled in the ERP (if it got there), its replenishment lines
    released so the position is planned again."""
    rt = _rt()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    if po["erp_id"]:
        reason = f"order {reference}: {outcome}"
        rt.call_erp(
            "cancel_purchase_order", lambda erp: erp.cancel_purchase_order(po["erp_id"], reason)
        )
    with rt.engine.begin() as conn:
        store.set_lines(conn, reference, "cancelled")
        store.set_order(conn, reference, status=outcome)
    log.warning("procurement.cancelled", order=reference, outcome=outcome)


# --- human decisions ---------------------------------------------------------------------


def _escalate(workflow_id: str, task: NewTask) -> dict[str, Any]:
    """Open ``task`` for this workflow and wait for its decision (sent, or re-read)."""
    item_id = _open_task(
        task.model_copy(update={"workflow_id": workflow_id}).model_dump(mode="json")
    )
    while True:
        message = DBOS.recv("decision", timeout_seconds=_rt().policy.poll)
        if message is not None and message.get("item_id") == item_id:
            return dict(message)
        decided = _decided(item_id)
        if decided is not None:
            return decided


@DBOS.step()
def _open_task(task: dict[str, Any]) -> int:
    rt = _rt()
    new = NewTask.model_validate(task)
    if new.correlation_id is None and new.workflow_id:
        with rt.engine.connect() as conn:
            po = store.order(conn, new.workflow_id)
        if po is not None:
            new = new.model_copy(update={"correlation_id": po["correlation_id"]})
    return rt.work_queues.open(new).id


@DBOS.step()
def _decided(item_id: int) -> dict[str, Any] | None:
    with _rt().engine.connect() as conn:
        item = work_items.get(conn, item_id)
    if item is None or item.decision is None:
        return None
    return decision_message(item.id, item.decision.model_dump(mode="json"), item.decided_by)


def decision_message(
    item_id: int, decision: dict[str, Any], decided_by: str | None
) -> dict[str, Any]:
    return {"item_id": item_id, **decision, "decided_by": decided_by}


# --- the invoice workflow ----------------------------------------------------------------


ACTIONS: dict[str, tuple[Action, ...]] = {
    "price_variance": (Action.APPROVE, Action.ADJUST_PRICE, Action.REQUEST_CREDIT, Action.REJECT),
    "quantity_over_received": (
        Action.APPROVE,
        Action.ADJUST_QUANTITY,
        Action.REQUEST_CREDIT,
        Action.REJECT,
    ),
    "unit_mismatch": (Action.APPROVE, Action.ADJUST_QUANTITY, Action.REJECT),
    "invoice_without_receipt": (Action.APPROVE, Action.REJECT, Action.CLOSE),
    "duplicate_invoice": (Action.REJECT, Action.CLOSE),
    "duplicate_number": (Action.APPROVE, Action.REJECT, Action.CLOSE),
    "total_mismatch": (Action.APPROVE, Action.REJECT),
    "credit_memo": (Action.APPROVE, Action.REJECT, Action.CLOSE),
    "unknown_po": (Action.REJECT, Action.CLOSE),
}
"""What a person may do about each exception (the first exception of an invoice decides)."""

ENDS = {
    Action.APPROVE: "posted",
    Action.ADJUST_PRICE: "posted",
    Action.ADJUST_QUANTITY: "posted",
    Action.REQUEST_CREDIT: "credit_requested",
    Action.REJECT: "rejected",
    Action.CLOSE: "closed",
}


@DBOS.workflow()
def settle_invoice(invoice: dict[str, Any]) -> str:
    key = invoice["key"]
    facts = _invoice_facts(invoice)
    arrived = _clock()
    while _goods_outstanding(facts["orders"]) and _clock() < arrived + _rt().policy.receipt_grace:
        DBOS.sleep(_rt().policy.poll)
    result = _match(invoice, facts)
    if result["status"] == "matched":
        return _post(key, None)
    decision = _escalate(f"invoice:{key}", _invoice_task(invoice, facts, result))
    action = Action(decision["action"])
    if action in (Action.REJECT, Action.CLOSE):
        return _close_invoice(key, ENDS[action], decision)
    return _post(key, decision)


@DBOS.step()
def _clock() -> float:
    return time.time()


@DBOS.step()
def _invoice_facts(invoice: dict[str, Any]) -> dict[str, Any]:
    document = InvoiceDocument.model_validate(invoice["document"])
    with _rt().engine.connect() as conn:
        orders = [n for n in document.order_numbers if store.order(conn, n) is not None]
    return {"orders": orders, "credit": document.purpose is InvoicePurpose.CREDIT_MEMO}


@DBOS.step()
def _goods_outstanding(orders: list[str]) -> bool:
    """Goods this invoice may bill are not in yet: a shipment noticed and not received, or
    nothing received at all on an order still expecting goods."""
    if not orders:
        return False
    with _rt().engine.connect() as conn:
        for reference in orders:
            receipts = store.receipts(conn, reference)
            if any(r["status"] == "noticed" for r in receipts):
                return True
            po = store.order(conn, reference)
            got = any(r["status"] == "received" for r in receipts)
            if po is not None and not got and po["status"] not in TERMINAL:
                return True
    return False


TERMINAL = (
    "received",
    "closed_short",
    "shipment_rejected",
    "cancelled",
    "rejected_by_supplier",
    "closed",
)


def _book(conn: Any, supplier: str, orders: list[str]) -> tuple[MatchBook, dict[str, Any]]:
    po_lines, received = [], []
    by_order = {}
    for reference in orders:
        po = store.order(conn, reference)
        assert po is not None
        by_order[reference] = po
        for ln in po["lines"]:
            po_lines.append(
                PoLine(
                    reference,
                    ln["line"],
                    ln["item"],
                    ln["unit"],
                    _d(ln["quantity"]),
                    _d(ln["unit_price"]),
                    _d(ln["pack_factor"]),
                )
            )
        lines = {ln["line"]: ln for ln in po["lines"]}
        for r in store.receipts(conn, reference):
            if r["status"] != "received":
                continue
            for rl in r["lines"]:
                ln = lines[rl["line"]]
                received.append(
                    ReceivedLine(
                        reference,
                        rl["line"],
                        ln["item"],
                        ln["unit"],
                        _d(rl["quantity"]),
                        _d(ln["pack_factor"]),
                    )
                )
    invoiced: dict[tuple[str, int], Decimal] = {}
    history = []
    for prior in store.billed(conn, supplier):
        history.append((prior["supplier"], prior["number"], _d(prior["total"])))
        for m in prior["result"].get("lines", []):
            po_key = (m["order"], int(m["order_line"]))
            invoiced[po_key] = invoiced.get(po_key, Decimal(0)) + _d(m["base_quantity"])
    return MatchBook.build(po_lines, received, invoiced, history), by_order


def _match_lines(
    document: InvoiceDocument,
    by_order: dict[str, Any],
    decision: dict[str, Any] | None,
    flagged: set[int],
) -> tuple[InvoiceLineIn, ...]:
    single = next(iter(by_order)) if len(by_order) == 1 else None
    lines = []
    for il in document.lines:
        order = il.order_number if il.order_number in by_order else single
        po = by_order.get(order) if order else None
        ln = _po_line(po, il.item, il.order_line or 0) if po else None
        item = ln["item"] if ln else (il.item.buyer_part or il.item.supplier_part or "?")
        unit = ln["unit"] if ln and il.unit == ln["wire_unit"] else il.unit
        quantity, price = il.quantity, il.unit_price
        if decision and il.line_number in flagged:
            if decision.get("quantity") is not None:
                quantity = _d(decision["quantity"])
            if decision.get("unit_price") is not None:
                price = _d(decision["unit_price"])
        lines.append(
            InvoiceLineIn(
                il.line_number,
                order,
                ln["line"] if ln else il.order_line,
                item,
                unit,
                quantity,
                price,
            )
        )
    return tuple(lines)


def _match_invoice(
    document: InvoiceDocument, supplier: str, lines: tuple[InvoiceLineIn, ...], total: Decimal
) -> MatchInvoice:
    return MatchInvoice(
        supplier=supplier,
        number=document.invoice_number,
        invoice_date=document.invoice_date,
        total=total,
        lines=lines,
        tax=document.tax,
        credit_memo=document.purpose is InvoicePurpose.CREDIT_MEMO,
    )


def _result_json(result: MatchResult) -> dict[str, Any]:
    return {
        "exceptions": [
            {
                "kind": e.kind.value,
                "reason": e.reason,
                "line": e.line,
                "expected": None if e.expected is None else str(e.expected),
                "actual": None if e.actual is None else str(e.actual),
            }
            for e in result.exceptions
        ],
        "lines": [
            {
                "line": m.line,
                "order": m.po[0],
                "order_line": m.po[1],
                "base_quantity": str(m.base_quantity),
                "amount": str(m.amount),
                "grni": str(m.grni),
            }
            for m in result.lines
        ],
        "posting": None
        if result.posting is None
        else {k: str(getattr(result.posting, k)) for k in ("grni", "ppv", "tax", "ap")},
    }


@DBOS.step()
def _match(invoice: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Match once (a repeat returns the recorded result), serialised per supplier."""
    rt = _rt()
    key, supplier = invoice["key"], invoice["supplier"]
    document = InvoiceDocument.model_validate(invoice["document"])
    with rt.engine.begin() as conn:
        next_control_number(conn, supplier, "match")  # a row lock: one match per supplier
        done = store.invoice(conn, key)
        if done is not None:
            return {"status": done["status"], **done["result"]}
        book, by_order = _book(conn, supplier, facts["orders"])
        lines = _match_lines(document, by_order, None, set())
        result = match_invoice(
            _match_invoice(document, supplier, lines, document.total), book, rt.policy.tolerances
        )
        payload = _result_json(result)
        status = "matched" if result.matched else "exception"
        correlation = invoice.get("correlation_id") or (
            by_order[facts["orders"][0]]["correlation_id"] if facts["orders"] else key
        )
        store.record_invoice(
            conn,
            reference=key,
            supplier=supplier,
            number=document.invoice_number.strip().upper(),
            total=money(document.total),
            order_reference=facts["orders"][0] if facts["orders"] else None,
            status=status,
            result=payload,
            erp_id=None,
            correlation_id=str(correlation)[:36],
        )
    failpoint("match")
    log.info("procurement.matched", invoice=key, status=status, exceptions=len(result.exceptions))
    return {"status": status, **payload}


def _invoice_task(
    invoice: dict[str, Any], facts: dict[str, Any], result: dict[str, Any]
) -> NewTask:
    document = InvoiceDocument.model_validate(invoice["document"])
    exceptions = result["exceptions"] or [
        {"kind": "unknown_po", "reason": "the invoice names no order of ours", "line": None}
    ]
    if not facts["orders"] and not facts["credit"]:
        exceptions = [
            {
                "kind": "unknown_po",
                "reason": "the invoice names no order of ours: "
                + (", ".join(document.order_numbers) or "none"),
                "line": None,
            }
        ]
    kind = exceptions[0]["kind"]
    return NewTask(
        key=f"invoice:{invoice['key']}"[:200],
        queue=WorkQueue.AP,
        kind=kind,
        subject=f"invoice {document.invoice_number} of {invoice['supplier']}",
        reason="; ".join(e["reason"] for e in exceptions)[:1000],
        context={
            "supplier": invoice["supplier"],
            "invoice_number": document.invoice_number,
            "total": str(document.total),
            "orders": facts["orders"],
            "exceptions": exceptions,
            "lines": result.get("lines", []),
        },
        actions=ACTIONS[kind],
        correlation_id=str(invoice.get("correlation_id") or "")[:36] or None,
    )


@DBOS.step()
def _close_invoice(key: str, outcome: str, decision: dict[str, Any]) -> str:
    with _rt().engine.begin() as conn:
        store.set_invoice(conn, key, status=outcome)
    log.info(
        "procurement.invoice_closed", invoice=key, outcome=outcome, by=decision.get("decided_by")
    )
    return outcome


@DBOS.step()
def _post(key: str, decision: dict[str, Any] | None) -> str:
    """Post an invoice: the supplier invoice in the ERP (posted), and the GRNI / PPV / AP
    journal entry (the ERP posting outbox takes it to the ERP). A credit memo posts its
    reversal only: debit AP, credit PPV."""
    rt = _rt()
    with rt.engine.connect() as conn:
        row = store.invoice(conn, key)
    assert row is not None
    if row["status"] in ("posted", "credit_requested"):
        return str(row["status"])
    action = Action(decision["action"]) if decision else Action.APPROVE
    outcome = ENDS[action]
    document, supplier = _document_of(key)
    credit = document.purpose is InvoicePurpose.CREDIT_MEMO
    orders = [row["order_reference"]] if row["order_reference"] else []
    with rt.engine.connect() as conn:
        book, by_order = _book(conn, supplier, orders)
        accounts_map = rt.masterdata.account_map(conn)
    flagged = {e["line"] for e in row["result"]["exceptions"] if e.get("line") is not None}
    lines = _match_lines(document, by_order, decision, flagged)
    stated = sum((money(ln.quantity * ln.unit_price) for ln in lines), Decimal(0)) + document.tax
    if action is Action.APPROVE or action is Action.REQUEST_CREDIT:
        stated = money(document.total)
    relaxed = Tolerances(Decimal(10**6), Decimal(10**6), Decimal(10**6), Decimal(10**6))
    matched = match_invoice(
        _match_invoice(document, supplier, lines, stated), _fresh(book), relaxed
    )
    grni = sum((m.grni for m in matched.lines), Decimal(0))
    tax = money(document.tax)
    posting = Posting(grni=grni, ppv=stated - grni - tax, tax=tax, ap=stated)
    facility = next(iter(by_order.values()))["facility"] if by_order else None
    erp_id = None
    if not credit and by_order:
        po = next(iter(by_order.values()))
        supplier_invoice = SupplierInvoice(
            reference=key[:120],
            supplier=supplier,
            invoice_number=document.invoice_number[:64],
            invoice_date=document.invoice_date,
            purchase_order=po["reference"],
            lines=tuple(
                InvoiceLine(
                    item=ln.item,
                    quantity=ln.quantity,
                    unit=by_order[ln.order]["lines"][ln.order_line - 1]["unit"]
                    if ln.order and ln.order_line
                    else ln.unit,
                    unit_price=Money(amount=ln.unit_price),
                )
                for ln in lines
                if ln.order in by_order
            ),
        )

        def create_and_post(erp: ErpPort) -> str:
            ref = erp.create_supplier_invoice(supplier_invoice)
            erp.post_supplier_invoice(ref.erp_id)
            return ref.erp_id

        erp_id = rt.call_erp("supplier_invoice", create_and_post)
        failpoint("erp_invoice")
    if facility is None:
        with rt.engine.begin() as conn:
            store.set_invoice(conn, key, status=outcome)
        return outcome
    if credit:
        ap, ppv = (
            accounts_map[(facility, AccountRole.ACCOUNTS_PAYABLE)],
            accounts_map[(facility, AccountRole.PURCHASE_PRICE_VARIANCE)],
        )
        amount = money(document.total)
        entry_lines: tuple[JournalLine, ...] = (
            JournalLine(account=ap, debit=amount, facility=facility),
            JournalLine(account=ppv, credit=amount, facility=facility),
        )
    else:
        entry_lines = journal_lines(
            posting,
            PostingAccounts(
                grni=accounts_map[(facility, AccountRole.GRNI)],
                ppv=accounts_map[(facility, AccountRole.PURCHASE_PRICE_VARIANCE)],
                ap=accounts_map[(facility, AccountRole.ACCOUNTS_PAYABLE)],
            ),
            facility,
        )
    entry_id = f"ap:{uuid.uuid5(uuid.NAMESPACE_URL, key)}"
    with rt.engine.begin() as conn:
        if not ledger_store.journal(conn, entry_ids=[entry_id], limit=1) and entry_lines:
            posting_day = now().date()
            ledger_store.record(
                conn,
                [],
                [
                    JournalEntry(
                        entry_id=entry_id,
                        posting_date=posting_day,
                        currency=document.currency,
                        description=(
                            f"{'credit memo' if credit else 'invoice'} {document.invoice_number}"
                            f" of {supplier}"
                        )[:200],
                        source_event_id=row_event(key),
                        correlation_id=row["correlation_id"],
                        lines=entry_lines,
                    )
                ],
            )
        store.set_invoice(conn, key, status=outcome, erp_id=erp_id)
    failpoint("post")
    log.info("procurement.invoice_posted", invoice=key, outcome=outcome, erp_id=erp_id)
    return outcome


def _fresh(book: MatchBook) -> MatchBook:
    """The book without history: the invoice being posted is itself in it."""
    return MatchBook(
        orders=book.orders, received=book.received, factors=book.factors, by_item=book.by_item
    )


def _document_of(key: str) -> tuple[InvoiceDocument, str]:
    with _rt().engine.connect() as conn:
        row = find_by_key(conn, key)
    assert row is not None
    return InvoiceDocument.model_validate(row.document), row.partner


def row_event(key: str) -> str:
    """The source event id of an invoice's journal entry: derived from its wire identity."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"invoice:{key}"))
