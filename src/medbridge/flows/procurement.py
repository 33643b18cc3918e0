"""Durable procure-to-pay on DBOS: one workflow per purchase order (``flows.invoice_settlement``
has the one per supplier invoice), and the runtime both run on.

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
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.partners import TradingPartner
from medbridge.canonical.procurement import (
    GoodsReceipt,
    OrderLine,
    PurchaseOrder,
    ReceiptLine,
)
from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.canonical.trade import (
    AcknowledgementDocument,
    AckStatus,
    LineStatus,
    OrderDocument,
    PartnerItem,
    Party,
    PartyRole,
    ShipNoticeDocument,
)
from medbridge.canonical.trade import OrderLine as TradeOrderLine
from medbridge.domain.matching import (
    Tolerances,
)
from medbridge.flows.intake import MovementIntake, Submission
from medbridge.flows.replenishment import ReplenishmentPlanner
from medbridge.flows.trade import ChannelError, TradeOutbox
from medbridge.flows.work_queue import WorkQueues
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.store import procurement as store
from medbridge.store import work_items

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

    def retrying(
        self, what: str, call: Callable[[], T], transient: Callable[[Exception], bool]
    ) -> T:
        """``call()``, repeated while it fails with a ``transient`` error, with backoff up to
        ``erp_retry_max`` s (until the process stops); any other error goes to the workflow."""
        delay = 0.5
        while True:
            try:
                return call()
            except Exception as error:
                if not transient(error) or self.stopping.is_set():
                    raise
                log.warning("procurement.retry", what=what, error=str(error))
                self.stopping.wait(delay)
                delay = min(delay * 2, self.policy.erp_retry_max)

    def call_erp(self, what: str, call: Callable[[ErpPort], T]) -> T:
        """One ERP call, retried while the ERP is unreachable (or not attached yet);
        ``ErpRejected`` goes to the workflow."""

        def attempt() -> T:
            erp = self.erp()
            if erp is None:
                raise ErpUnavailable("no ERP attached")
            with self._erp_lock:
                return call(erp)

        return self.retrying(what, attempt, lambda e: isinstance(e, ErpUnavailable))

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


_runtime: Procurement | None = None


def install(runtime: Procurement | None) -> None:
    global _runtime
    _runtime = runtime


def runtime() -> Procurement:
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


def now() -> datetime:
    return datetime.now(UTC)


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


# --- the purchase order workflow ---------------------------------------------------------


@DBOS.workflow()
def procure(reference: str) -> str:
    try:
        _refusable(reference, "erp_order", _erp_order)
        _refusable(reference, "send_order", _send_order)
        _await_ack(reference)
        _refusable(reference, "erp_confirm", _erp_confirm)
        outcome = _receive_goods(reference)
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
        if not _approved(reference, f"{name}:{attempt}", kind, reason):
            raise ProcessClosed("closed")


@DBOS.step()
def _erp_order(reference: str) -> str:
    rt = runtime()
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
                quantity=dec(ln["quantity"]),
                unit=ln["unit"],
                unit_price=Money(amount=dec(ln["unit_price"]), currency=ln["currency"]),
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
                quantity=dec(ln["quantity"]),
                unit=ln["wire_unit"],
                unit_price=dec(ln["unit_price"]),
            )
            for ln in po["lines"]
        ),
    )


@DBOS.step()
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
        if not _approved(reference, "ack_overdue", "ack_overdue", reason):
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
def _erp_confirm(reference: str) -> None:
    rt = runtime()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    assert po["erp_id"]
    rt.call_erp("confirm_purchase_order", lambda erp: erp.confirm_purchase_order(po["erp_id"]))
    failpoint("erp_confirm")
    with rt.engine.begin() as conn:
        store.set_order(conn, reference, status="confirmed")


def _receive_goods(reference: str) -> str:
    rt = runtime()
    overdue, received, rejected = 0, False, False
    while _still_expected(reference):
        message = DBOS.recv("goods", timeout_seconds=rt.policy.shipment_timeout)
        if message is None:
            overdue += 1
            reason = "goods still expected and nothing shipped in time"
            if not _approved(reference, f"shipment_overdue:{overdue}", "shipment_overdue", reason):
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
def _still_expected(reference: str) -> bool:
    with runtime().engine.connect() as conn:
        return bool(_outstanding(conn, reference))


def _outstanding(conn: Any, reference: str) -> dict[int, Decimal]:
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


def order_line_for(po: dict[str, Any], item: PartnerItem, number: int) -> dict[str, Any] | None:
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


def _substitute(item: PartnerItem, line: dict[str, Any]) -> bool:
    """The supplier names another item than the order line's (its part or ours)."""
    named = [p for p in (item.supplier_part, item.buyer_part) if p]
    return bool(named) and line["contract"] not in named and line["item"] not in named


def _part(item: PartnerItem) -> str:
    return item.supplier_part or item.buyer_part or item.gtin or item.description or "?"


@DBOS.step()
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
def _receive(reference: str, receipt: dict[str, Any]) -> None:
    """Record a receipt: the ERP's goods receipt, the stock movements, the row. Each part is
    keyed: a repeat after a crash finds what it did."""
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
        lines=tuple(
            ReceiptLine(
                item=ln["item"],
                quantity=dec(r["quantity"]),
                unit=ln["unit"],
                lot=r.get("lot"),
                expiry=date.fromisoformat(r["expiry"]) if r.get("expiry") else None,
                unit_price=Money(amount=dec(ln["unit_price"]), currency=ln["currency"]),
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
        _settle(conn, po, receipt, "received", ref.erp_id)
        store.set_order(conn, reference, status="receiving")
    log.info("procurement.received", order=reference, receipt=gr_reference, erp_id=ref.erp_id)


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
            correlation_id=_correlation(reference),
        )
    )


def _correlation(reference: str) -> str | None:
    """The correlation id of an order (None if ``reference`` is no order: an invoice's
    workflow id)."""
    with runtime().engine.connect() as conn:
        po = store.order(conn, reference)
    return None if po is None else str(po["correlation_id"])


@DBOS.step()
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


@DBOS.step()
def _finish(reference: str, outcome: str) -> None:
    """The goods are in (or the order closed short): anything still open in the ERP is
    cancelled; the replenishment lines are received."""
    rt = runtime()
    with rt.engine.connect() as conn:
        po = store.order(conn, reference)
        left = _outstanding(conn, reference)
        refused = any(r["status"] == "rejected" for r in store.receipts(conn, reference))
        short = refused or (
            any(dec(ln.get("expected", ln["quantity"])) < dec(ln["quantity"]) for ln in po["lines"])
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
    rt = runtime()
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


def _approved(reference: str, key: str, kind: str, reason: str) -> bool:
    """Ask procurement about the order: approve (go on) or close (stop)."""
    decision = escalate(
        reference,
        NewTask(
            key=f"{reference}:{key}",
            queue=WorkQueue.PROCUREMENT,
            kind=kind,
            subject=f"purchase order {reference}",
            reason=reason,
            actions=(Action.APPROVE, Action.CLOSE),
        ),
    )
    return bool(decision["action"] == Action.APPROVE)


def escalate(workflow_id: str, task: NewTask) -> dict[str, Any]:
    """Open ``task`` for this workflow and wait for its decision (sent, or re-read)."""
    item_id = _open_task(
        task.model_copy(update={"workflow_id": workflow_id}).model_dump(mode="json")
    )
    while True:
        message = DBOS.recv("decision", timeout_seconds=runtime().policy.poll)
        if message is not None and message.get("item_id") == item_id:
            return dict(message)
        decided = _decided(item_id)
        if decided is not None:
            return decided


@DBOS.step()
def _open_task(task: dict[str, Any]) -> int:
    new = NewTask.model_validate(task)
    if new.correlation_id is None and new.workflow_id:
        new = new.model_copy(update={"correlation_id": _correlation(new.workflow_id)})
    return runtime().work_queues.open(new).id


@DBOS.step()
def _decided(item_id: int) -> dict[str, Any] | None:
    with runtime().engine.connect() as conn:
        item = work_items.get(conn, item_id)
    if item is None or item.decision is None:
        return None
    return decision_message(item.id, item.decision.model_dump(mode="json"), item.decided_by)


def decision_message(
    item_id: int, decision: dict[str, Any], decided_by: str | None
) -> dict[str, Any]:
    return {"item_id": item_id, **decision, "decided_by": decided_by}


TERMINAL = (  # where a purchase order's workflow ends
    "received",
    "closed_short",
    "shipment_rejected",
    "cancelled",
    "rejected_by_supplier",
    "closed",
)
