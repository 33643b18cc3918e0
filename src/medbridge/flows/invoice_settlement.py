"""Receipt-to-invoice three-way match on DBOS: one workflow per supplier invoice received.

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

Exactly once: see ``flows.procurement`` (keyed side effects, the workflow id).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dbos import DBOS, SetWorkflowID

from medbridge.canonical.erp import ErpPort
from medbridge.canonical.finance import BookedBy, JournalEntry
from medbridge.canonical.masterdata import AccountRole
from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.canonical.trade import (
    InvoiceDocument,
    InvoicePurpose,
)
from medbridge.domain import ap_posting
from medbridge.domain.errors import MissingAccount
from medbridge.domain.ledger import money
from medbridge.domain.matching import (
    InvoiceLineIn,
    MatchBook,
    MatchInvoice,
    MatchResult,
    PoLine,
    ReceivedLine,
    Tolerances,
    match_invoice,
)
from medbridge.flows.procurement import (
    TERMINAL,
    dec,
    escalate,
    failpoint,
    order_line_for,
    runtime,
)
from medbridge.observability.logging import get_logger
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as store
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
        return _post(invoice, None)
    decision = escalate(f"invoice:{key}", _invoice_task(invoice, facts, result))
    action = Action(decision["action"])
    if action in (Action.REJECT, Action.CLOSE):
        return _close_invoice(key, ENDS[action], decision)
    return _post(invoice, decision)


@DBOS.step()
def _clock() -> float:
    return time.time()


@DBOS.step()
def _invoice_facts(invoice: dict[str, Any]) -> dict[str, Any]:
    document = InvoiceDocument.model_validate(invoice["document"])
    with runtime().engine.connect() as conn:
        orders = [n for n in document.order_numbers if store.order(conn, n) is not None]
    return {"orders": orders, "credit": document.purpose is InvoicePurpose.CREDIT_MEMO}


@DBOS.step()
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
                    dec(ln["quantity"]),
                    dec(ln["unit_price"]),
                    dec(ln["pack_factor"]),
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
                        dec(rl["quantity"]),
                        dec(ln["pack_factor"]),
                    )
                )
    invoiced: dict[tuple[str, int], Decimal] = {}
    history = []
    for prior in store.billed(conn, supplier):
        history.append((prior["supplier"], prior["number"], dec(prior["total"])))
        for m in prior["result"].get("lines", []):
            po_key = (m["order"], int(m["order_line"]))
            invoiced[po_key] = invoiced.get(po_key, Decimal(0)) + dec(m["base_quantity"])
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
        ln = order_line_for(po, il.item, il.order_line or 0) if po else None
        item = ln["item"] if ln else (il.item.buyer_part or il.item.supplier_part or "?")
        unit = ln["unit"] if ln and il.unit == ln["wire_unit"] else il.unit
        quantity, price = il.quantity, il.unit_price
        if decision and il.line_number in flagged:
            if decision.get("quantity") is not None:
                quantity = dec(decision["quantity"])
            if decision.get("unit_price") is not None:
                price = dec(decision["unit_price"])
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
    rt = runtime()
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
    with runtime().engine.begin() as conn:
        store.set_invoice(conn, key, status=outcome)
    log.info(
        "procurement.invoice_closed", invoice=key, outcome=outcome, by=decision.get("decided_by")
    )
    return outcome


@DBOS.step()
def _post(invoice: dict[str, Any], decision: dict[str, Any] | None) -> str:
    """Post an invoice as decided (``domain.ap_posting``): the ERP's own invoice (or credit
    note) document books it, created and posted in the ERP; MedBridge mirrors that entry in
    its journal without sending it, and books the price variance itself (sent through the
    ERP posting outbox). An invoice of no order of ours posts nothing."""
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
        book_, by_order = _book(conn, supplier, orders)
        accounts_map = rt.masterdata.account_map(conn)
    if not by_order:
        with rt.engine.begin() as conn:
            store.set_invoice(conn, key, status=outcome)
        return outcome
    settlement = _settlement(invoice, document, row, by_order, book_, decision, action)
    booking = ap_posting.book(settlement, _ap_accounts(accounts_map, settlement.facility))

    def create_and_post(erp: ErpPort) -> str:
        ref = erp.create_supplier_invoice(booking.document)
        erp.post_supplier_invoice(ref.erp_id)
        return ref.erp_id

    erp_id = rt.call_erp("supplier_invoice", create_and_post)
    failpoint("erp_invoice")
    entries = _entries(key, settlement, booking, row["correlation_id"])
    with rt.engine.begin() as conn:
        known = {
            e.entry_id
            for e in ledger_store.journal(
                conn, entry_ids=[e.entry_id for e in entries], limit=len(entries) or 1
            )
        }
        ledger_store.record(conn, [], [e for e in entries if e.entry_id not in known])
        store.set_invoice(conn, key, status=outcome, erp_id=erp_id)
    failpoint("post")
    log.info("procurement.invoice_posted", invoice=key, outcome=outcome, erp_id=erp_id)
    return outcome


def _settlement(
    invoice: dict[str, Any],
    document: InvoiceDocument,
    row: dict[str, Any],
    by_order: dict[str, Any],
    book_: MatchBook,
    decision: dict[str, Any] | None,
    action: Action,
) -> ap_posting.Settlement:
    """The invoice as decided, with the GRNI its lines clear (the match's, tolerances off)."""
    supplier = invoice["supplier"]
    flagged = {e["line"] for e in row["result"]["exceptions"] if e.get("line") is not None}
    lines = _match_lines(document, by_order, decision, flagged)
    billed = tuple(
        ap_posting.BilledLine(
            item=ln.item,
            quantity=ln.quantity,
            unit=by_order[ln.order]["lines"][ln.order_line - 1]["unit"]
            if ln.order_line
            else ln.unit,
            unit_price=ln.unit_price,
        )
        for ln in lines
        if ln.order in by_order
    )
    stated = ap_posting.stated_total(
        None if decision is None else action, billed, document.tax, document.total
    )
    relaxed = Tolerances(Decimal(10**6), Decimal(10**6), Decimal(10**6), Decimal(10**6))
    matched = match_invoice(
        _match_invoice(document, supplier, lines, stated), _fresh(book_), relaxed
    )
    po = next(iter(by_order.values()))
    return ap_posting.Settlement(
        reference=invoice["key"],
        supplier=supplier,
        facility=po["facility"],
        number=document.invoice_number,
        invoice_date=document.invoice_date,
        purchase_order=po["reference"],
        lines=billed,
        tax=document.tax,
        stated=stated,
        grni=sum((m.grni for m in matched.lines), Decimal(0)),
        currency=document.currency,
        credit_memo=document.purpose is InvoicePurpose.CREDIT_MEMO,
    )


def _ap_accounts(
    accounts: Mapping[tuple[str, AccountRole], str], facility: str
) -> ap_posting.ApAccounts:
    try:
        return ap_posting.ApAccounts(
            grni=accounts[(facility, AccountRole.GRNI)],
            ppv=accounts[(facility, AccountRole.PURCHASE_PRICE_VARIANCE)],
            ap=accounts[(facility, AccountRole.ACCOUNTS_PAYABLE)],
        )
    except KeyError as missing:
        raise MissingAccount(facility, str(missing.args[0][1])) from None


def _entries(
    key: str, s: ap_posting.Settlement, booking: ap_posting.ApBooking, correlation: str
) -> list[JournalEntry]:
    """The mirror of the ERP document (booked by it, never sent) and the variance entry."""
    what = f"{'credit memo' if s.credit_memo else 'invoice'} {s.number} of {s.supplier}"
    entries = []
    if len(booking.mirror) >= 2:
        entries.append(
            JournalEntry(
                entry_id=f"ap:{uuid.uuid5(uuid.NAMESPACE_URL, key)}",
                posting_date=s.invoice_date,
                currency=s.currency,
                description=what[:200],
                source_event_id=row_event(key),
                correlation_id=correlation,
                lines=booking.mirror,
                booked_by=BookedBy.ERP_DOCUMENT,
                erp_document=booking.document.reference,
            )
        )
    if booking.variance:
        entries.append(
            JournalEntry(
                entry_id=f"ppv:{uuid.uuid5(uuid.NAMESPACE_URL, key)}",
                posting_date=s.invoice_date,
                currency=s.currency,
                description=f"price variance, {what}"[:200],
                source_event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ppv:{key}")),
                correlation_id=correlation,
                lines=booking.variance,
            )
        )
    return entries


def _fresh(book: MatchBook) -> MatchBook:
    """The book without history: the invoice being posted is itself in it."""
    return MatchBook(
        orders=book.orders, received=book.received, factors=book.factors, by_item=book.by_item
    )


def row_event(key: str) -> str:
    """The source event id of an invoice's journal entry: derived from its wire identity."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"invoice:{key}"))
