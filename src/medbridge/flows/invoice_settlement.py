"""Receipt-to-invoice three-way match on DBOS: one workflow per supplier invoice received.

``settle_invoice(invoice)`` (workflow id ``invoice:<the document's wire identity>``, started
per invoice received): waits up to ``receipt_grace`` for the goods it bills (an invoice often
overtakes the truck), then three-way matches it (``domain.matching``, tolerances from the
policy; serialised per supplier so that two copies of one invoice cannot both match). Matched:
posted (the supplier invoice created and posted in the ERP; the price variance journal entry).
Both go through the ERP outbox: the invoice queued for the destinations of domain
``invoices`` and the order's facility and awaited until the system of record posted it
(``flows.erp_calls``; a refusal opens an AP ``erp_rejected`` task: approve tries again, close
posts nothing), the entry routed as every journal entry.
An exception opens an AP task with its reasons and waits for the decision: approve (post as
billed), adjust price / quantity (post as corrected), request credit (post as billed, the
variance expected back as a credit memo), reject / close (nothing posted). A credit memo is
never matched automatically; approved, it posts its reversal (debit AP, credit PPV). An
invoice for no order of ours: an AP task (reject or close).

Exactly once: see ``flows.procurement`` (keyed side effects, the workflow id). What the
match is handed: ``flows.invoice_matching``; how a decided invoice is booked:
``flows.invoice_booking``.
"""

from __future__ import annotations

import time
from typing import Any

from dbos import DBOS, SetWorkflowID

from medbridge.canonical.erp import ErpRejected
from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.canonical.trade import (
    InvoiceDocument,
    InvoicePurpose,
)
from medbridge.domain import ap_posting
from medbridge.domain.erp_routing import ErpDomain
from medbridge.domain.ledger import money
from medbridge.domain.matching import (
    match_invoice,
)
from medbridge.domain.period_close import dating
from medbridge.flows.escalation import escalate
from medbridge.flows.invoice_booking import (
    ap_accounts,
    dated_booking,
    dated_entries,
    journal_entries,
    settlement,
)
from medbridge.flows.invoice_matching import match_book, match_input, match_lines, result_json
from medbridge.flows.procurement_runtime import TERMINAL, failpoint, now, runtime, steady
from medbridge.observability import tracing
from medbridge.observability.logging import get_logger
from medbridge.store import ledger as ledger_store
from medbridge.store import periods
from medbridge.store import procurement as store
from medbridge.store.erp_postings import DocumentKind
from medbridge.store.trade import next_control_number

log = get_logger(__name__)


def start_invoice(invoice: dict[str, Any]) -> str:
    workflow_id = f"invoice:{invoice['key']}"
    with SetWorkflowID(workflow_id):
        DBOS.start_workflow(settle_invoice, invoice)
    return workflow_id


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
    "erp_rejected": (Action.APPROVE, Action.CLOSE),
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
    policy = runtime().policy
    deadline = _clock() + policy.receipt_grace
    while _goods_outstanding(facts["orders"]) and _clock() < deadline:
        DBOS.sleep(policy.poll)
    result = _match(invoice, facts)
    if result["status"] == "matched":
        return _posted(invoice, None)
    decision = escalate(f"invoice:{key}", _invoice_task(invoice, facts, result))
    action = Action(decision["action"])
    if action in (Action.REJECT, Action.CLOSE):
        return _close_invoice(key, ENDS[action], decision)
    return _posted(invoice, decision)


def _posted(invoice: dict[str, Any], decision: dict[str, Any] | None) -> str:
    """Post the invoice as decided. The ERP refusing it (an account not open, a supplier it
    does not know) goes to AP as an ``erp_rejected`` task: approve, once fixed there, tries
    again (the step requeues the document); close posts nothing. It used to end the
    workflow in error, the invoice left matched and never posted."""
    key = invoice["key"]
    attempt = 0
    while True:
        try:
            return _post(invoice, decision)
        except ErpRejected as error:
            attempt += 1
            refusal = escalate(f"invoice:{key}", _refused_task(invoice, error, attempt))
            if Action(refusal["action"]) is not Action.APPROVE:
                return _close_invoice(key, ENDS[Action.CLOSE], refusal)


def _refused_task(invoice: dict[str, Any], error: ErpRejected, attempt: int) -> NewTask:
    document = InvoiceDocument.model_validate(invoice["document"])
    field = f" (field {error.field})" if error.field else ""
    return NewTask(
        key=f"invoice:{invoice['key']}:erp_rejected:{attempt}"[:200],
        queue=WorkQueue.AP,
        kind="erp_rejected",
        subject=f"invoice {document.invoice_number} of {invoice['supplier']}",
        reason=f"the ERP refused the invoice: {error}{field}"[:1000],
        context={
            "supplier": invoice["supplier"],
            "invoice_number": document.invoice_number,
            "total": str(document.total),
            "attempt": attempt,
        },
        actions=ACTIONS["erp_rejected"],
        correlation_id=str(invoice.get("correlation_id") or "")[:36] or None,
    )


@DBOS.step()
@steady
def _clock() -> float:
    return time.time()


@DBOS.step()
@steady
def _invoice_facts(invoice: dict[str, Any]) -> dict[str, Any]:
    document = InvoiceDocument.model_validate(invoice["document"])
    with runtime().engine.connect() as conn:
        orders = [n for n in document.order_numbers if store.order(conn, n) is not None]
    return {"orders": orders, "credit": document.purpose is InvoicePurpose.CREDIT_MEMO}


@DBOS.step()
@steady
def _goods_outstanding(orders: list[str]) -> bool:
    """Goods this invoice may bill are not in yet: a shipment noticed and not received, or
    nothing received at all on an order still expecting goods."""
    if not orders:
        return False
    with runtime().engine.connect() as conn:
        for reference in orders:
            receipts = store.receipts(conn, reference)
            if any(r["status"] == "noticed" for r in receipts):
                return True
            po = store.order(conn, reference)
            got = any(r["status"] == "received" for r in receipts)
            if po is not None and not got and po["status"] not in TERMINAL:
                return True
    return False


@DBOS.step()
@steady
def _match(invoice: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Match once (a repeat returns the recorded result), serialised per supplier."""
    rt = runtime()
    key, supplier = invoice["key"], invoice["supplier"]
    document = InvoiceDocument.model_validate(invoice["document"])
    with rt.engine.begin() as conn:
        next_control_number(conn, supplier, "match")  # a row lock: one match per supplier
        done = store.invoice(conn, key)
        if done is not None:
            return {"status": done["status"], **done["result"]}
        book, by_order = match_book(conn, supplier, facts["orders"])
        lines = match_lines(document, by_order, None, set())
        result = match_invoice(
            match_input(document, supplier, lines, document.total), book, rt.policy.tolerances
        )
        payload = result_json(result)
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
@steady
def _close_invoice(key: str, outcome: str, decision: dict[str, Any]) -> str:
    with runtime().engine.begin() as conn:
        store.set_invoice(conn, key, status=outcome)
    log.info(
        "procurement.invoice_closed", invoice=key, outcome=outcome, by=decision.get("decided_by")
    )
    return outcome


@DBOS.step()
@steady
def _post(invoice: dict[str, Any], decision: dict[str, Any] | None) -> str:
    """Post an invoice as decided (``domain.ap_posting``): the ERP's own invoice (or credit
    note) document books it, created and posted in the ERP through the outbox; MedBridge
    mirrors that entry in its journal without sending it, and books the price variance itself
    (sent through the outbox too). An invoice of no order of ours posts nothing."""
    rt = runtime()
    key, supplier = invoice["key"], invoice["supplier"]
    document = InvoiceDocument.model_validate(invoice["document"])
    with rt.engine.connect() as conn:
        row = store.invoice(conn, key)
    assert row is not None
    if row["status"] in ("posted", "credit_requested"):
        return str(row["status"])
    action = Action(decision["action"]) if decision else Action.APPROVE
    outcome = ENDS[action]
    orders = [row["order_reference"]] if row["order_reference"] else []
    with rt.engine.connect() as conn:
        book_, by_order = match_book(conn, supplier, orders)
        accounts_map = rt.masterdata.account_map(conn)
        closed = periods.closed(conn)
    if not by_order:
        with rt.engine.begin() as conn:
            store.set_invoice(conn, key, status=outcome)
        return outcome
    settled = settlement(invoice, document, row, by_order, book_, decision, action)
    booking = ap_posting.book(settled, ap_accounts(accounts_map, settled.facility))
    dated = dating(settled.invoice_date, closed)  # the period lock: a closed month moves on
    booking = dated_booking(booking, dated)
    posted = rt.erp_document(
        DocumentKind.SUPPLIER_INVOICE,
        booking.document.reference,
        ErpDomain.INVOICES,
        settled.facility,
        payload=booking.document.model_dump_json(),
    )
    erp_id = None if posted is None else posted.erp_id
    failpoint("erp_invoice")
    entries = dated_entries(
        journal_entries(key, settled, booking, row["correlation_id"]), settled.invoice_date, dated
    )
    with rt.engine.begin() as conn:
        known = {
            e.entry_id
            for e in ledger_store.journal(
                conn, entry_ids=[e.entry_id for e in entries], limit=len(entries) or 1
            )
        }
        fresh = [e for e in entries if e.entry_id not in known]
        here = tracing.headers_of()  # the workflow's span, when tracing is on
        deliveries = rt.router.journal(conn, fresh, now())
        ledger_store.record(
            conn, [], fresh, {e.entry_id: here for e in fresh}, deliveries=deliveries
        )
        store.set_invoice(conn, key, status=outcome, erp_id=erp_id)
    failpoint("post")
    log.info("procurement.invoice_posted", invoice=key, outcome=outcome, erp_id=erp_id)
    return outcome
