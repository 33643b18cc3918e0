"""Accounts payable posting rules: who books a settled supplier invoice, and with which lines.

One booking per business event in the ERP's ledger (the README's finance table):

- **supplier invoice**: the ERP's own invoice document books it. Each billed line is a line of
  the ERP invoice on the facility's GRNI account at the price and quantity as decided; tax is
  a charge on the tax account; a stated total that differs from lines + tax (an approved
  total mismatch) is a charge on the purchase price variance account; the payable is the
  facility's AP account with the supplier as party, dated on the invoice date. MedBridge keeps
  the same entry in its own journal (``BookedBy.ERP_DOCUMENT``) and never sends it.
- **price variance**: MedBridge's journal entry (sent to the ERP): the billed amount of the
  lines less the GRNI they clear (base quantity x PO price), debit PPV / credit GRNI (or the
  other way round for an invoice under the PO price).
- **credit memo** (approved): the ERP's credit note document books it: debit AP (party),
  credit PPV; MedBridge mirrors it like an invoice.

"Post as decided": approve or request credit post the invoice as billed (its stated total);
adjust price or quantity post the corrected lines (stated = their amounts + tax).

Amounts: every line amount is rounded to the cent on its own (ROUND_HALF_EVEN, as the ERP
rounds each invoice line), so the ERP document's total and MedBridge's mirror agree to the
cent. The mirror and the variance entry together post exactly what the three-way match's
``Posting`` says (debit GRNI, tax, PPV; credit AP): the property tests hold it so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from medbridge.canonical.base import Money
from medbridge.canonical.finance import JournalLine
from medbridge.canonical.procurement import InvoiceCharge, InvoiceLine, SupplierInvoice
from medbridge.canonical.tasks import Action
from medbridge.domain.errors import MissingAccount
from medbridge.domain.ledger import ZERO, money


@dataclass(frozen=True)
class ApAccounts:
    """A facility's GL account codes for payables; ``tax`` is needed only when tax is billed."""

    grni: str
    ppv: str
    ap: str
    tax: str | None = None


@dataclass(frozen=True)
class BilledLine:
    """An invoice line as it is posted (quantity and price as decided), in the PO's unit."""

    item: str
    quantity: Decimal
    unit: str
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return money(self.quantity * self.unit_price)


@dataclass(frozen=True)
class Settlement:
    """What is settled: one supplier invoice (or credit memo) of one facility."""

    reference: str
    """The invoice's wire identity (MedBridge's key): the ERP document's reference."""
    supplier: str
    facility: str
    number: str
    invoice_date: date
    purchase_order: str | None
    lines: tuple[BilledLine, ...]
    tax: Decimal
    stated: Decimal
    """The total posted to AP (see ``stated_total``)."""
    grni: Decimal
    """The GRNI the lines clear: base quantity x PO price per base unit (the match's)."""
    currency: str = "USD"
    credit_memo: bool = False


@dataclass(frozen=True)
class ApBooking:
    """The one booking of a settled invoice.

    ``document``: what the ERP books (its own document accounting). ``mirror``: the same lines
    in MedBridge's journal (booked by that document, never sent). ``variance``: the PPV entry
    MedBridge books and sends (empty when there is no variance).
    """

    document: SupplierInvoice
    mirror: tuple[JournalLine, ...]
    variance: tuple[JournalLine, ...]


def stated_total(
    action: Action | None, lines: Sequence[BilledLine], tax: Decimal, billed_total: Decimal
) -> Decimal:
    """What AP is credited with, as decided: the invoice as billed (no decision, approve,
    request credit), or the corrected lines plus tax (adjust price or quantity)."""
    if action in (None, Action.APPROVE, Action.REQUEST_CREDIT):
        return money(billed_total)
    return sum((ln.amount for ln in lines), ZERO) + money(tax)


def _line(
    account: str, net: Decimal, facility: str, party: str | None = None
) -> tuple[JournalLine, ...]:
    if not net:
        return ()
    return (
        JournalLine(
            account=account,
            debit=net if net > 0 else ZERO,
            credit=-net if net < 0 else ZERO,
            facility=facility,
            party=party,
        ),
    )


def book(settlement: Settlement, accounts: ApAccounts) -> ApBooking:
    """The booking of a settled invoice or credit memo (see the module's rules)."""
    if settlement.credit_memo:
        return _book_credit_memo(settlement, accounts)
    s = settlement
    tax = money(s.tax)
    if tax and accounts.tax is None:
        raise MissingAccount(s.facility, "tax")
    billed = sum((ln.amount for ln in s.lines), ZERO)
    difference = money(s.stated) - billed - tax
    charges: list[InvoiceCharge] = []
    if tax:
        charges.append(_charge(f"tax on {s.number}", accounts.tax or "", tax, s.currency))
    if difference:
        charges.append(
            _charge(f"total difference on {s.number}", accounts.ppv, difference, s.currency)
        )
    document = _document(
        s,
        accounts,
        lines=tuple(
            InvoiceLine(
                item=ln.item,
                quantity=ln.quantity,
                unit=ln.unit,
                unit_price=Money(amount=ln.unit_price, currency=s.currency),
                account=accounts.grni,
            )
            for ln in s.lines
        ),
        charges=tuple(charges),
    )
    mirror = (
        _line(accounts.grni, billed, s.facility)
        + _line(accounts.tax or "", tax, s.facility)
        + _line(accounts.ppv, difference, s.facility)
        + _line(accounts.ap, -money(s.stated), s.facility, party=s.supplier)
    )
    ppv = billed - money(s.grni)
    variance = _line(accounts.ppv, ppv, s.facility) + _line(accounts.grni, -ppv, s.facility)
    return ApBooking(document, mirror, variance)


def _book_credit_memo(s: Settlement, accounts: ApAccounts) -> ApBooking:
    """A credit memo reverses a price variance: debit AP (party), credit PPV."""
    amount = money(s.stated)
    document = _document(
        s,
        accounts,
        lines=(),
        charges=(_charge(f"credit memo {s.number}", accounts.ppv, amount, s.currency),),
    )
    mirror = _line(accounts.ap, amount, s.facility, party=s.supplier) + _line(
        accounts.ppv, -amount, s.facility
    )
    return ApBooking(document, mirror, ())


def _charge(description: str, account: str, amount: Decimal, currency: str) -> InvoiceCharge:
    return InvoiceCharge(
        description=description[:200],
        account=account,
        amount=Money(amount=amount, currency=currency),
    )


def _document(
    s: Settlement,
    accounts: ApAccounts,
    *,
    lines: tuple[InvoiceLine, ...],
    charges: tuple[InvoiceCharge, ...],
) -> SupplierInvoice:
    return SupplierInvoice(
        reference=s.reference[:120],
        supplier=s.supplier,
        invoice_number=s.number[:64],
        invoice_date=s.invoice_date,
        purchase_order=s.purchase_order,
        lines=lines,
        charges=charges,
        credit_memo=s.credit_memo,
        facility=s.facility,
        payable_account=accounts.ap,
        accounting_date=s.invoice_date,
    )
