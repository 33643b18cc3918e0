"""Three-way match: a supplier invoice against its purchase order lines and what was received.

Items are MedBridge item codes already (master data resolved them); each line says how many
base units one of its ``unit`` holds (``pack_factor``). Every comparison is made in BASE units
(quantity * pack_factor, price / pack_factor), so an invoice in BX of 10 matches a PO in EA.
The history (PO lines, receipts, what was invoiced, which invoices were seen) is a
``MatchBook``: dicts built once, so matching an invoice is linear in its lines.

Rules, per invoice line (a line with an exception is not checked further than said):
- UNKNOWN_PO: the line names no order, or an order line that does not exist. A line naming an
  order but no line is matched to the order's only line for its item, if there is exactly one;
- UNIT_MISMATCH: another item than the PO line's; a unit whose pack factor is unknown (not
  stated, not the PO line's unit, never seen on a PO line or receipt of the item); the PO's
  unit with another pack factor than the PO's. Quantity and price are not checked;
- INVOICE_WITHOUT_RECEIPT: nothing received on the PO line (quantity not checked);
- QUANTITY_OVER_RECEIVED: previously invoiced + invoiced on this invoice (every line billing
  the PO line) > received * (1 + quantity_percent / 100);
- PRICE_VARIANCE: |invoice price - PO price| per base unit over BOTH tolerances (within
  price_percent of the PO price, or within price_absolute per base unit, is accepted). Both
  directions: an underpriced line is flagged too. At the tolerance exactly is accepted.
  Compared cross-multiplied, without division, so re-packing never changes the outcome.
Per invoice:
- DUPLICATE_INVOICE: the same supplier, number and amount (total to the cent) was seen;
- DUPLICATE_NUMBER: the same supplier and number with another amount (a corrected invoice or a
  keying error: a person decides). Numbers compare stripped and upper-cased. A duplicate of
  either kind is reported ALONE: its lines were billed already, re-checking them would only add
  QUANTITY_OVER_RECEIVED noise;
- TOTAL_MISMATCH: |sum of line amounts + tax - total| > total_absolute;
- CREDIT_MEMO: credit memos are not matched automatically (reported alone; to review), nor is
  an invoice stating a negative total (a credit not flagged as one).

Amounts (ROUND_HALF_EVEN to the cent, per line): the invoice line amount quantity * price; the
GRNI cleared = base quantity invoiced * PO price per base unit. A matched invoice posts:
debit GRNI (sum of lines), debit tax, credit AP (the stated total), and purchase price variance
= AP - GRNI - tax on whichever side (the line variances plus any rounding residue within the
total tolerance), so the entry balances by construction. ``MatchBook.record`` adds a matched
invoice to the book (history and invoiced quantities); an exception records nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from medbridge.canonical.finance import JournalLine
from medbridge.domain.errors import MissingAccount
from medbridge.domain.ledger import CENT, ZERO, money

PoKey = tuple[str, int]  # order number, order line
InvoiceKey = tuple[str, str, Decimal]  # supplier, invoice number, total to the cent
HUNDRED = Decimal(100)


class MatchStatus(StrEnum):
    MATCHED = "matched"
    EXCEPTION = "exception"


class ExceptionKind(StrEnum):
    UNKNOWN_PO = "unknown_po"
    UNIT_MISMATCH = "unit_mismatch"
    INVOICE_WITHOUT_RECEIPT = "invoice_without_receipt"
    QUANTITY_OVER_RECEIVED = "quantity_over_received"
    PRICE_VARIANCE = "price_variance"
    DUPLICATE_INVOICE = "duplicate_invoice"
    DUPLICATE_NUMBER = "duplicate_number"
    TOTAL_MISMATCH = "total_mismatch"
    CREDIT_MEMO = "credit_memo"


@dataclass(frozen=True, slots=True)
class Tolerances:
    """``price_absolute`` is per base unit; the percentages are of the PO figure."""

    price_percent: Decimal = Decimal(2)
    price_absolute: Decimal = Decimal("0.05")
    quantity_percent: Decimal = ZERO
    total_absolute: Decimal = Decimal("0.05")

    def __post_init__(self) -> None:
        if min(self.price_percent, self.price_absolute, self.quantity_percent) < 0:
            raise ValueError("tolerances cannot be negative")
        if self.total_absolute < 0:
            raise ValueError("tolerances cannot be negative")


@dataclass(frozen=True, slots=True)
class PoLine:
    order: str
    line: int
    item: str
    unit: str
    quantity: Decimal
    unit_price: Decimal  # per ``unit``
    pack_factor: Decimal  # base units per ``unit``


@dataclass(frozen=True, slots=True)
class ReceivedLine:
    """One receipt against a PO line (several receipts of a line add up)."""

    order: str
    line: int
    item: str
    unit: str
    quantity: Decimal
    pack_factor: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceLineIn:
    line: int
    order: str | None
    order_line: int | None
    item: str
    unit: str
    quantity: Decimal
    unit_price: Decimal  # per ``unit``
    pack_factor: Decimal | None = None  # None: the PO's, if the same unit, else a known one


@dataclass(frozen=True, slots=True)
class MatchInvoice:
    supplier: str
    number: str
    invoice_date: date
    total: Decimal  # as the supplier states it: lines + tax
    lines: tuple[InvoiceLineIn, ...]
    tax: Decimal = ZERO
    credit_memo: bool = False

    @property
    def key(self) -> InvoiceKey:
        return (self.supplier, self.number.strip().upper(), money(self.total))


@dataclass(frozen=True, slots=True)
class MatchException:
    kind: ExceptionKind
    reason: str
    line: int | None = None  # the invoice line; None for the whole invoice
    expected: Decimal | None = None
    actual: Decimal | None = None


@dataclass(frozen=True, slots=True)
class MatchedLine:
    """An invoice line resolved to its PO line, in base units, with its amounts."""

    line: int
    po: PoKey
    base_quantity: Decimal
    amount: Decimal  # invoiced: quantity * unit price, to the cent
    grni: Decimal  # received value cleared: base quantity * PO price per base unit

    @property
    def variance(self) -> Decimal:
        return self.amount - self.grni


@dataclass(frozen=True, slots=True)
class Posting:
    """What a matched invoice posts; ``grni + ppv + tax == ap``."""

    grni: Decimal
    ppv: Decimal
    tax: Decimal
    ap: Decimal


@dataclass(frozen=True, slots=True)
class MatchResult:
    invoice: InvoiceKey
    status: MatchStatus
    exceptions: tuple[MatchException, ...]
    lines: tuple[MatchedLine, ...]
    posting: Posting | None  # set exactly when MATCHED

    @property
    def matched(self) -> bool:
        return self.status is MatchStatus.MATCHED


@dataclass
class MatchBook:
    """The purchasing history an invoice is matched against (quantities in base units)."""

    orders: dict[PoKey, PoLine] = field(default_factory=dict)
    received: dict[PoKey, Decimal] = field(default_factory=dict)
    invoiced: dict[PoKey, Decimal] = field(default_factory=dict)
    seen: dict[tuple[str, str], set[Decimal]] = field(default_factory=dict)
    factors: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # item, unit
    by_item: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # order, item

    @classmethod
    def build(
        cls,
        po_lines: Iterable[PoLine],
        receipts: Iterable[ReceivedLine] = (),
        invoiced: Mapping[PoKey, Decimal] | None = None,
        history: Iterable[InvoiceKey] = (),
    ) -> MatchBook:
        """``invoiced``: base units already invoiced per PO line; ``history``: invoices
        already matched or posted, (supplier, number, total)."""
        book = cls(invoiced=dict(invoiced or {}))
        by_item: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
        for po in po_lines:
            book.orders[(po.order, po.line)] = po
            book.factors.setdefault((po.item, po.unit), po.pack_factor)
            by_item[(po.order, po.item)].append(po.line)
        book.by_item = dict(by_item)
        received: defaultdict[PoKey, Decimal] = defaultdict(Decimal)
        for r in receipts:
            received[(r.order, r.line)] += r.quantity * r.pack_factor
            book.factors.setdefault((r.item, r.unit), r.pack_factor)
        book.received = dict(received)
        for supplier, number, total in history:
            book.seen.setdefault((supplier, number.strip().upper()), set()).add(money(total))
        return book

    def match(self, invoice: MatchInvoice, tolerances: Tolerances | None = None) -> MatchResult:
        return match_invoice(invoice, self, tolerances or Tolerances())

    def record(self, result: MatchResult) -> None:
        """Add a matched invoice to the history; an exception result changes nothing."""
        if not result.matched:
            return
        supplier, number, total = result.invoice
        self.seen.setdefault((supplier, number), set()).add(total)
        for line in result.lines:
            self.invoiced[line.po] = self.invoiced.get(line.po, ZERO) + line.base_quantity


def _po_key(ln: InvoiceLineIn, book: MatchBook) -> PoKey | None:
    if ln.order is None:
        return None
    if ln.order_line is not None:
        key = (ln.order, ln.order_line)
        return key if key in book.orders else None
    candidates = book.by_item.get((ln.order, ln.item), ())
    return (ln.order, candidates[0]) if len(candidates) == 1 else None


def _factor(ln: InvoiceLineIn, po: PoLine, book: MatchBook) -> Decimal | str:
    """The line's pack factor, or why there is none."""
    if ln.item != po.item:
        return f"item {ln.item} billed on a PO line for {po.item}"
    if ln.unit == po.unit:
        if ln.pack_factor is not None and ln.pack_factor != po.pack_factor:
            return f"{ln.unit} of {ln.pack_factor} billed, {ln.unit} of {po.pack_factor} ordered"
        return po.pack_factor
    factor = ln.pack_factor if ln.pack_factor is not None else book.factors.get((ln.item, ln.unit))
    if factor is None or factor <= 0:
        return f"unit {ln.unit} of {ln.item}: no known pack factor"
    return factor


def match_invoice(
    invoice: MatchInvoice, book: MatchBook, tolerances: Tolerances | None = None
) -> MatchResult:
    """Match one invoice (pure: the book is read, never changed; see ``MatchBook.record``)."""
    tol = tolerances or Tolerances()
    key = invoice.key
    if invoice.credit_memo:
        return _refused(key, ExceptionKind.CREDIT_MEMO, "credit memos are not matched")
    if invoice.total < 0:  # a credit in an invoice's clothes: AP would be debited
        reason = f"the invoice states a negative total ({invoice.total}): a credit, not matched"
        return _refused(key, ExceptionKind.CREDIT_MEMO, reason, None, invoice.total)
    amounts = book.seen.get((key[0], key[1]))
    if amounts:
        if key[2] in amounts:
            reason = f"invoice {key[1]} of {key[0]} for {key[2]} was already matched"
            return _refused(key, ExceptionKind.DUPLICATE_INVOICE, reason, key[2])
        reason = f"invoice number {key[1]} of {key[0]} was already matched, for another amount"
        return _refused(key, ExceptionKind.DUPLICATE_NUMBER, reason, min(amounts), key[2])

    exceptions: list[MatchException] = []
    matched: list[MatchedLine] = []
    billing: dict[PoKey, Decimal] = {}  # base units billed by this invoice so far, per PO line
    lines_total = ZERO
    price_pct, price_abs = tol.price_percent, tol.price_absolute * HUNDRED
    qty_ceiling = HUNDRED + tol.quantity_percent
    for ln in invoice.lines:
        amount = (ln.quantity * ln.unit_price).quantize(CENT, ROUND_HALF_EVEN)  # money()
        lines_total += amount
        po_key = _po_key(ln, book)
        if po_key is None:
            where = (
                "no purchase order"
                if ln.order is None
                else f"{ln.order}, no single line for {ln.item}"
                if ln.order_line is None
                else f"{ln.order} line {ln.order_line}, which does not exist"
            )
            exceptions.append(
                MatchException(ExceptionKind.UNKNOWN_PO, f"billed against {where}", ln.line)
            )
            continue
        po = book.orders[po_key]
        factor = _factor(ln, po, book)
        if isinstance(factor, str):
            exceptions.append(MatchException(ExceptionKind.UNIT_MISMATCH, factor, ln.line))
            continue
        base_qty = ln.quantity * factor
        grni = (base_qty * po.unit_price / po.pack_factor).quantize(CENT, ROUND_HALF_EVEN)
        matched.append(MatchedLine(ln.line, po_key, base_qty, amount, grni))
        received = book.received.get(po_key, ZERO)
        billed = billing.get(po_key, book.invoiced.get(po_key, ZERO)) + base_qty
        billing[po_key] = billed
        if received <= 0:
            reason = f"nothing received on {po_key[0]} line {po_key[1]}"
            exceptions.append(
                MatchException(ExceptionKind.INVOICE_WITHOUT_RECEIPT, reason, ln.line, ZERO, billed)
            )
        elif billed * HUNDRED > received * qty_ceiling:
            reason = (
                f"{billed} base units billed on {po_key[0]} line {po_key[1]}, {received} received"
            )
            exceptions.append(
                MatchException(
                    ExceptionKind.QUANTITY_OVER_RECEIVED, reason, ln.line, received, billed
                )
            )
        # |p_inv / f_inv - p_po / f_po| <= max(pct% of p_po / f_po, abs), times 100 f_inv f_po
        gap = abs(ln.unit_price * po.pack_factor - po.unit_price * factor) * HUNDRED
        allowed = max(po.unit_price * factor * price_pct, price_abs * factor * po.pack_factor)
        if gap > allowed:
            expected, actual = po.unit_price / po.pack_factor, ln.unit_price / factor
            reason = f"price per base unit {actual:.6g}, ordered at {expected:.6g}"
            exceptions.append(
                MatchException(ExceptionKind.PRICE_VARIANCE, reason, ln.line, expected, actual)
            )

    stated = money(invoice.total)
    computed = lines_total + invoice.tax
    if abs(computed - stated) > tol.total_absolute:
        reason = f"lines {lines_total} + tax {invoice.tax} = {computed}, invoice states {stated}"
        exceptions.append(
            MatchException(ExceptionKind.TOTAL_MISMATCH, reason, None, computed, stated)
        )
    if exceptions:
        return MatchResult(key, MatchStatus.EXCEPTION, tuple(exceptions), tuple(matched), None)
    grni = sum((m.grni for m in matched), ZERO)
    tax = money(invoice.tax)
    posting = Posting(grni=grni, ppv=stated - grni - tax, tax=tax, ap=stated)
    return MatchResult(key, MatchStatus.MATCHED, (), tuple(matched), posting)


def _refused(
    key: InvoiceKey,
    kind: ExceptionKind,
    reason: str,
    expected: Decimal | None = None,
    actual: Decimal | None = None,
) -> MatchResult:
    exception = MatchException(kind, reason, None, expected, actual)
    return MatchResult(key, MatchStatus.EXCEPTION, (exception,), (), None)


@dataclass(frozen=True, slots=True)
class PostingAccounts:
    """GL account codes for an invoice posting; ``tax`` is needed only when tax is billed."""

    grni: str
    ppv: str
    ap: str
    tax: str | None = None


def journal_lines(
    posting: Posting, accounts: PostingAccounts, facility: str, cost_center: str | None = None
) -> tuple[JournalLine, ...]:
    """The balanced journal lines of a matched invoice: debit GRNI, debit tax, debit (or
    credit) PPV, credit AP. Zero amounts post no line; ``cost_center`` goes on the PPV line."""
    if posting.tax and accounts.tax is None:
        raise MissingAccount(facility, "tax")
    nets = (
        (accounts.grni, posting.grni, None),
        (accounts.tax or "", posting.tax, None),
        (accounts.ppv, posting.ppv, cost_center),
        (accounts.ap, -posting.ap, None),
    )
    return tuple(
        JournalLine(
            account=account,
            debit=net if net > 0 else ZERO,
            credit=-net if net < 0 else ZERO,
            cost_center=center,
            facility=facility,
        )
        for account, net, center in nets
        if net
    )
