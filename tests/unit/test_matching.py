"""Three-way match (medbridge.domain.matching): invoice vs purchase order vs goods received.

The PO below orders gloves in EA at 1.00 (line 1), syringes in BX of 10 at 8.00 (line 2) and
gauze in EA at 0.50 (line 3, never received). Default tolerances: 2 % / 0.05 per base unit on
price, 0 % on quantity, 0.05 on the total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal

import pytest

from medbridge.canonical.finance import JournalEntry
from medbridge.domain.errors import MissingAccount
from medbridge.domain.matching import (
    ExceptionKind,
    InvoiceKey,
    InvoiceLineIn,
    MatchBook,
    MatchInvoice,
    MatchResult,
    MatchStatus,
    PoKey,
    PoLine,
    Posting,
    PostingAccounts,
    ReceivedLine,
    Tolerances,
    journal_lines,
)

D = Decimal
PO = "PO-1001"
SUPPLIER = "ACME"
ACCOUNTS = PostingAccounts(grni="2150", ppv="5950", ap="2100", tax="2300")

PO_LINES = (
    PoLine(PO, 1, "GLOVE-M", "EA", D(100), D("1.00"), D(1)),
    PoLine(PO, 2, "SYRINGE-5", "BX", D(5), D("8.00"), D(10)),
    PoLine(PO, 3, "GAUZE-10", "EA", D(50), D("0.50"), D(1)),
)
RECEIPTS = (
    ReceivedLine(PO, 1, "GLOVE-M", "EA", D(100), D(1)),
    ReceivedLine(PO, 2, "SYRINGE-5", "BX", D(5), D(10)),
)


def book(
    receipts: Iterable[ReceivedLine] = RECEIPTS,
    invoiced: Mapping[PoKey, Decimal] | None = None,
    history: Iterable[InvoiceKey] = (),
) -> MatchBook:
    return MatchBook.build(PO_LINES, receipts, invoiced, history)


def line(
    n: int,
    order_line: int | None,
    item: str,
    unit: str,
    qty: str,
    price: str,
    pack_factor: Decimal | None = None,
    order: str | None = PO,
) -> InvoiceLineIn:
    return InvoiceLineIn(n, order, order_line, item, unit, D(qty), D(price), pack_factor)


def invoice(
    *lines: InvoiceLineIn,
    total: str | None = None,
    tax: str = "0",
    supplier: str = SUPPLIER,
    number: str = "INV-1",
    credit_memo: bool = False,
) -> MatchInvoice:
    amount = sum((ln.quantity * ln.unit_price for ln in lines), D(0)) + D(tax)
    stated = D(total) if total is not None else amount
    return MatchInvoice(
        supplier, number, date(2026, 3, 1), stated, lines, D(tax), credit_memo=credit_memo
    )


def kinds(result: MatchResult) -> list[tuple[ExceptionKind, int | None]]:
    return [(e.kind, e.line) for e in result.exceptions]


def balanced(posting: Posting) -> JournalEntry:
    """The lines in a JournalEntry: its validator refuses an unbalanced entry."""
    return JournalEntry(
        entry_id="INV-1",
        posting_date=date(2026, 3, 1),
        description="invoice",
        source_event_id="e",
        correlation_id="c",
        lines=journal_lines(posting, ACCOUNTS, "F1"),
    )


# --- clean matches ----------------------------------------------------------------------------


def test_clean_match_posts_grni_and_ap() -> None:
    inv = invoice(
        line(1, 1, "GLOVE-M", "EA", "100", "1.00"), line(2, 2, "SYRINGE-5", "BX", "5", "8.00")
    )
    result = book().match(inv)
    assert result.status is MatchStatus.MATCHED
    assert result.exceptions == ()
    assert [(m.po, m.base_quantity, m.amount, m.grni) for m in result.lines] == [
        ((PO, 1), D(100), D("100.00"), D("100.00")),
        ((PO, 2), D(50), D("40.00"), D("40.00")),
    ]
    assert result.posting == Posting(grni=D("140.00"), ppv=D("0.00"), tax=D("0.00"), ap=D("140.00"))
    entry = balanced(result.posting)
    assert [(ln.account, ln.debit, ln.credit) for ln in entry.lines] == [
        ("2150", D("140.00"), D(0)),
        ("2100", D(0), D("140.00")),
    ]


def test_invoice_in_boxes_of_ten_matches_a_po_in_each() -> None:
    # ordered and received 100 EA at 1.00; billed as 10 BX of 10 at 10.00
    inv = invoice(line(1, 1, "GLOVE-M", "BX", "10", "10.00", pack_factor=D(10)))
    result = book().match(inv)
    assert result.matched
    assert result.lines[0].base_quantity == D(100)
    assert result.posting is not None
    assert result.posting.grni == D("100.00")


def test_invoice_in_each_matches_a_po_in_boxes() -> None:
    inv = invoice(line(1, 2, "SYRINGE-5", "EA", "50", "0.80", pack_factor=D(10) / D(10)))
    assert book().match(inv).matched


def test_pack_factor_is_taken_from_the_po_line_for_its_unit() -> None:
    inv = invoice(line(1, 2, "SYRINGE-5", "BX", "5", "8.00"))  # no pack factor stated
    assert book().match(inv).lines[0].base_quantity == D(50)


def test_pack_factor_known_from_a_receipt() -> None:
    receipts = (*RECEIPTS[:1], ReceivedLine(PO, 2, "SYRINGE-5", "CA", D(1), D(50)))
    inv = invoice(line(1, 2, "SYRINGE-5", "CA", "1", "40.00"))  # CA known from the receipt
    result = book(receipts=receipts).match(inv)
    assert result.matched
    assert result.lines[0].base_quantity == D(50)


def test_line_naming_only_the_order_is_matched_by_item() -> None:
    inv = invoice(line(1, None, "GLOVE-M", "EA", "100", "1.00"))
    assert book().match(inv).lines[0].po == (PO, 1)


def test_partial_receipts_are_summed() -> None:
    receipts = (
        ReceivedLine(PO, 1, "GLOVE-M", "EA", D(40), D(1)),
        ReceivedLine(PO, 1, "GLOVE-M", "BX", D(6), D(10)),  # 60 more, in boxes
    )
    inv = invoice(line(1, 1, "GLOVE-M", "EA", "100", "1.00"))
    assert book(receipts=receipts).match(inv).matched
    assert book(receipts=receipts[:1]).match(inv).exceptions[0].expected == D(40)


def test_second_invoice_bills_the_rest_of_a_line() -> None:
    b = book()
    first = b.match(invoice(line(1, 1, "GLOVE-M", "EA", "60", "1.00"), number="INV-1"))
    assert first.matched
    b.record(first)
    assert b.invoiced[(PO, 1)] == D(60)
    rest = b.match(invoice(line(1, 1, "GLOVE-M", "EA", "40", "1.00"), number="INV-2"))
    assert rest.matched
    b.record(rest)
    one_more = b.match(invoice(line(1, 1, "GLOVE-M", "EA", "1", "1.00"), number="INV-3"))
    assert kinds(one_more) == [(ExceptionKind.QUANTITY_OVER_RECEIVED, 1)]
    assert (one_more.exceptions[0].expected, one_more.exceptions[0].actual) == (D(100), D(101))


def test_previously_invoiced_quantities_come_from_the_caller() -> None:
    b = book(invoiced={(PO, 1): D(90)})
    assert b.match(invoice(line(1, 1, "GLOVE-M", "EA", "10", "1.00"))).matched
    assert not b.match(invoice(line(1, 1, "GLOVE-M", "EA", "11", "1.00"))).matched


def test_an_exception_records_nothing() -> None:
    b = book()
    result = b.match(invoice(line(1, 3, "GAUZE-10", "EA", "50", "0.50")))
    b.record(result)
    assert b.invoiced == {}
    assert b.seen == {}


# --- one test per exception kind --------------------------------------------------------------


def test_price_variance() -> None:
    result = book().match(invoice(line(1, 2, "SYRINGE-5", "BX", "5", "9.00")))
    assert kinds(result) == [(ExceptionKind.PRICE_VARIANCE, 1)]
    assert (result.exceptions[0].expected, result.exceptions[0].actual) == (D("0.8"), D("0.9"))
    assert result.posting is None


@pytest.mark.parametrize(
    ("price", "matched"),
    [
        ("8.40", True),  # 0.84 per EA: 0.04 over, within 0.05 absolute
        ("8.50", True),  # 0.85: 0.05 over, exactly at the absolute tolerance
        ("8.51", False),  # 0.851: over both (2 % of 0.80 is 0.016)
        ("7.50", True),  # 0.05 under
        ("7.49", False),  # under by more than the tolerance is flagged too
    ],
)
def test_price_tolerance_boundary_absolute(price: str, matched: bool) -> None:
    result = book().match(invoice(line(1, 2, "SYRINGE-5", "BX", "5", price)))
    assert result.matched is matched
    if matched:
        assert result.posting is not None
        assert result.posting.ppv == D(5) * D(price) - D("40.00")
        balanced(result.posting)


@pytest.mark.parametrize(("price", "matched"), [("102.00", True), ("102.01", False)])
def test_price_tolerance_boundary_percent(price: str, matched: bool) -> None:
    # an expensive item: 2 % of 100.00 = 2.00 per unit is the larger tolerance
    b = MatchBook.build(
        [PoLine("PO-9", 1, "PUMP", "EA", D(1), D("100.00"), D(1))],
        [ReceivedLine("PO-9", 1, "PUMP", "EA", D(1), D(1))],
    )
    inv = invoice(line(1, 1, "PUMP", "EA", "1", price, order="PO-9"))
    assert b.match(inv).matched is matched


def test_tolerances_are_configurable() -> None:
    strict = Tolerances(price_percent=D(0), price_absolute=D(0))
    inv = invoice(line(1, 2, "SYRINGE-5", "BX", "5", "8.01"))
    assert book().match(inv).matched
    assert kinds(book().match(inv, strict)) == [(ExceptionKind.PRICE_VARIANCE, 1)]
    with pytest.raises(ValueError):
        Tolerances(price_percent=D(-1))


def test_quantity_over_received() -> None:
    result = book().match(invoice(line(1, 1, "GLOVE-M", "EA", "101", "1.00")))
    assert kinds(result) == [(ExceptionKind.QUANTITY_OVER_RECEIVED, 1)]
    assert result.exceptions[0].expected == D(100)
    assert (
        book()
        .match(
            invoice(line(1, 1, "GLOVE-M", "EA", "101", "1.00")), Tolerances(quantity_percent=D(1))
        )
        .matched
    )


def test_two_lines_billing_one_po_line_add_up() -> None:
    inv = invoice(
        line(1, 1, "GLOVE-M", "EA", "60", "1.00"), line(2, 1, "GLOVE-M", "EA", "60", "1.00")
    )
    assert kinds(book().match(inv)) == [(ExceptionKind.QUANTITY_OVER_RECEIVED, 2)]


def test_unit_mismatch_unknown_unit() -> None:
    result = book().match(invoice(line(1, 1, "GLOVE-M", "CA", "1", "100.00")))
    assert kinds(result) == [(ExceptionKind.UNIT_MISMATCH, 1)]
    assert "no known pack factor" in result.exceptions[0].reason


def test_unit_mismatch_same_unit_other_pack_size() -> None:
    result = book().match(invoice(line(1, 2, "SYRINGE-5", "BX", "5", "8.00", pack_factor=D(12))))
    assert kinds(result) == [(ExceptionKind.UNIT_MISMATCH, 1)]


def test_unit_mismatch_other_item_than_the_po_line() -> None:
    result = book().match(invoice(line(1, 1, "GLOVE-L", "EA", "100", "1.00")))
    assert kinds(result) == [(ExceptionKind.UNIT_MISMATCH, 1)]
    assert "GLOVE-L" in result.exceptions[0].reason


def test_invoice_without_receipt() -> None:
    result = book().match(invoice(line(1, 3, "GAUZE-10", "EA", "50", "0.50")))
    assert kinds(result) == [(ExceptionKind.INVOICE_WITHOUT_RECEIPT, 1)]
    assert (result.exceptions[0].expected, result.exceptions[0].actual) == (D(0), D(50))


@pytest.mark.parametrize(
    ("order", "order_line", "item"),
    [("PO-404", 1, "GLOVE-M"), (PO, 9, "GLOVE-M"), (None, None, "GLOVE-M"), (PO, None, "X")],
)
def test_unknown_po(order: str | None, order_line: int | None, item: str) -> None:
    inv = invoice(
        line(1, 1, "GLOVE-M", "EA", "100", "1.00"),
        line(2, order_line, item, "EA", "1", "1.00", order=order),
    )
    result = book().match(inv)
    assert kinds(result) == [(ExceptionKind.UNKNOWN_PO, 2)]
    assert [m.line for m in result.lines] == [1]  # the good line still has its amounts


def test_duplicate_invoice_same_supplier_number_and_amount() -> None:
    inv = invoice(line(1, 1, "GLOVE-M", "EA", "100", "1.00"), number="inv-7 ")
    b = book(history=[(SUPPLIER, "INV-7", D("100"))])
    assert kinds(b.match(inv)) == [(ExceptionKind.DUPLICATE_INVOICE, None)]
    other_supplier = invoice(
        line(1, 1, "GLOVE-M", "EA", "100", "1.00"), number="INV-7", supplier="B"
    )
    assert b.match(other_supplier).matched


def test_duplicate_invoice_after_record() -> None:
    b = book()
    inv = invoice(line(1, 1, "GLOVE-M", "EA", "50", "1.00"))
    b.record(b.match(inv))
    assert kinds(b.match(inv)) == [(ExceptionKind.DUPLICATE_INVOICE, None)]  # alone


def test_duplicate_number_with_another_amount() -> None:
    b = book(history=[(SUPPLIER, "INV-1", D("99.00"))])
    result = b.match(invoice(line(1, 1, "GLOVE-M", "EA", "100", "1.00")))
    assert kinds(result) == [(ExceptionKind.DUPLICATE_NUMBER, None)]
    assert (result.exceptions[0].expected, result.exceptions[0].actual) == (D("99.00"), D("100.00"))


def test_total_mismatch() -> None:
    inv = invoice(line(1, 1, "GLOVE-M", "EA", "100", "1.00"), total="100.06")
    result = book().match(inv)
    assert kinds(result) == [(ExceptionKind.TOTAL_MISMATCH, None)]
    assert (result.exceptions[0].expected, result.exceptions[0].actual) == (
        D("100.00"),
        D("100.06"),
    )


def test_total_within_tolerance_goes_to_ppv() -> None:
    result = book().match(invoice(line(1, 1, "GLOVE-M", "EA", "100", "1.00"), total="100.05"))
    assert result.posting == Posting(D("100.00"), D("0.05"), D("0.00"), D("100.05"))


def test_credit_memo_is_not_matched() -> None:
    inv = invoice(line(1, 1, "GLOVE-M", "EA", "10", "1.00"), credit_memo=True)
    assert kinds(book().match(inv)) == [(ExceptionKind.CREDIT_MEMO, None)]


def test_an_invoice_stating_a_negative_total_is_a_credit_not_matched() -> None:
    """Lines of 0.01 and a total of -0.01 (within the 0.05 total tolerance): posted, it would
    debit AP. Hypothesis found it (test_journal_lines_always_balance)."""
    inv = invoice(line(1, 1, "GLOVE-M", "EA", "1", "0.01"), total="-0.01")
    result = book().match(inv)
    assert kinds(result) == [(ExceptionKind.CREDIT_MEMO, None)]
    assert result.posting is None
    assert "negative total" in result.exceptions[0].reason


def test_every_fault_of_an_invoice_is_reported() -> None:
    inv = invoice(
        line(1, 1, "GLOVE-M", "EA", "101", "1.10"),
        line(2, 3, "GAUZE-10", "EA", "1", "0.50"),
        line(3, 2, "SYRINGE-5", "PK", "1", "1.00"),
        total="1.00",
    )
    assert kinds(book().match(inv)) == [
        (ExceptionKind.QUANTITY_OVER_RECEIVED, 1),
        (ExceptionKind.PRICE_VARIANCE, 1),
        (ExceptionKind.INVOICE_WITHOUT_RECEIPT, 2),
        (ExceptionKind.UNIT_MISMATCH, 3),
        (ExceptionKind.TOTAL_MISMATCH, None),
    ]


# --- posting ----------------------------------------------------------------------------------


def test_posting_with_variance_and_tax_balances() -> None:
    inv = invoice(
        line(1, 1, "GLOVE-M", "EA", "100", "1.02"),  # 2.00 over
        line(2, 2, "SYRINGE-5", "BX", "5", "7.90"),  # 0.50 under
        tax="7.12",
    )
    result = book().match(inv)
    assert result.posting == Posting(D("140.00"), D("1.50"), D("7.12"), D("148.62"))
    entry = balanced(result.posting)
    assert [(ln.account, ln.debit, ln.credit) for ln in entry.lines] == [
        ("2150", D("140.00"), D(0)),
        ("2300", D("7.12"), D(0)),
        ("5950", D("1.50"), D(0)),
        ("2100", D(0), D("148.62")),
    ]


def test_favourable_variance_is_a_ppv_credit() -> None:
    result = book().match(invoice(line(1, 2, "SYRINGE-5", "BX", "5", "7.60")))
    assert result.posting is not None
    ppv = [
        ln for ln in journal_lines(result.posting, ACCOUNTS, "F1", "CC-1") if ln.account == "5950"
    ]
    assert [(ln.debit, ln.credit, ln.cost_center) for ln in ppv] == [(D(0), D("2.00"), "CC-1")]


def test_tax_needs_a_tax_account() -> None:
    posting = Posting(D("10.00"), D("0.00"), D("1.00"), D("11.00"))
    with pytest.raises(MissingAccount):
        journal_lines(posting, PostingAccounts(grni="2150", ppv="5950", ap="2100"), "F1")
