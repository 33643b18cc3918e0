"""How a decided invoice is booked (``domain.ap_posting``): the settlement as decided, with
the GRNI its lines clear; the facility's AP accounts; and the journal entries MedBridge keeps
of it: the mirror of the ERP's own invoice document (booked by it, never sent) and the price
variance entry (sent through the ERP posting outbox). Entry ids and source event ids derive
from the invoice's wire identity: never change how."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from medbridge.canonical.finance import BookedBy, JournalEntry
from medbridge.canonical.masterdata import AccountRole
from medbridge.canonical.tasks import Action
from medbridge.canonical.trade import InvoiceDocument, InvoicePurpose
from medbridge.domain import ap_posting
from medbridge.domain.errors import MissingAccount
from medbridge.domain.matching import MatchBook, Tolerances, match_invoice
from medbridge.domain.period_close import Dating, late_note
from medbridge.flows.invoice_matching import match_input, match_lines


def settlement(
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
    lines = match_lines(document, by_order, decision, flagged)
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
    matched = match_invoice(match_input(document, supplier, lines, stated), _fresh(book_), relaxed)
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


def ap_accounts(
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


def journal_entries(
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


def dated_booking(booking: ap_posting.ApBooking, dated: Dating) -> ap_posting.ApBooking:
    """The ERP document accounted on the day the period lock dates it (``domain.period_close``:
    an invoice dated in a closed period is booked in the next open one)."""
    if dated.late_for is None:
        return booking
    document = booking.document.model_copy(update={"accounting_date": dated.posting_date})
    return dataclasses.replace(booking, document=document)


def dated_entries(entries: list[JournalEntry], day: date, dated: Dating) -> list[JournalEntry]:
    """The entries dated as the period lock says, with its note when it moved them."""
    if dated.late_for is None:
        return entries
    return [
        e.model_copy(
            update={
                "posting_date": dated.posting_date,
                "description": late_note(e.description, day, dated.late_for),
            }
        )
        for e in entries
    ]


def _fresh(book: MatchBook) -> MatchBook:
    """The book without history: the invoice being posted is itself in it."""
    return MatchBook(
        orders=book.orders, received=book.received, factors=book.factors, by_item=book.by_item
    )


def row_event(key: str) -> str:
    """The source event id of an invoice's journal entry: derived from its wire identity."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"invoice:{key}"))
