"""Property tests of the AP posting rules (medbridge.domain.ap_posting).

For any settled invoice (1-6 lines at any price and quantity, tax or none, a stated total off
the lines by a residue or not, any GRNI cleared) and for any credit memo:

- the ERP document's total is what AP is credited with, to the cent, and its lines are booked
  on the facility's GRNI (charges on tax and PPV);
- the mirror of that document is a balanced entry whose only AP line names the supplier and
  credits the stated total (a credit memo: debits it);
- the mirror and the variance entry together post exactly the three-way match's ``Posting``
  (debit GRNI, tax and PPV, credit AP): nothing booked twice, nothing lost;
- the variance entry touches only PPV and GRNI, and balances.
- "post as decided": approve and request credit post the billed total; adjusting posts the
  corrected lines plus tax.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.tasks import Action
from medbridge.domain.ap_posting import (
    ApAccounts,
    BilledLine,
    Settlement,
    book,
    stated_total,
)
from medbridge.domain.ledger import money
from medbridge.domain.matching import Posting, PostingAccounts, journal_lines

ACCOUNTS = ApAccounts(grni="2100-H1", ppv="5500-H1", ap="2000-H1", tax="2200-H1")
CENT = Decimal("0.01")

prices = st.decimals(min_value=0, max_value=5000, places=4)
quantities = st.decimals(min_value=Decimal("0.01"), max_value=10_000, places=2)
amounts = st.decimals(min_value=0, max_value=100_000, places=2)
residues = st.decimals(min_value=-5, max_value=5, places=2)

billed_lines = st.lists(
    st.builds(
        BilledLine,
        item=st.sampled_from(["VANCO-1G", "AMPI-250", "DRAPE-SM"]),
        quantity=quantities,
        unit=st.sampled_from(["VIAL", "CAP", "EA"]),
        unit_price=prices,
    ),
    min_size=1,
    max_size=6,
).map(tuple)


def _settlement(
    lines: tuple[BilledLine, ...],
    tax: Decimal,
    residue: Decimal,
    grni: Decimal,
    credit_memo: bool = False,
) -> Settlement:
    stated = sum((ln.amount for ln in lines), Decimal(0)) + tax + residue
    return Settlement(
        reference="x12:ZZ:MCKDEMO:1:1:0001",
        supplier="MCK",
        facility="H1",
        number="INV-1",
        invoice_date=date(2026, 12, 8),
        purchase_order="PO00000001",
        lines=lines,
        tax=tax,
        stated=stated,
        grni=grni,
        credit_memo=credit_memo,
    )


def _net(lines: Iterable[JournalLine]) -> dict[str, Decimal]:
    net: dict[str, Decimal] = defaultdict(Decimal)
    for ln in lines:
        net[ln.account] += ln.debit - ln.credit
    return {k: v for k, v in net.items() if v}


def _entry(lines: tuple[JournalLine, ...]) -> JournalEntry:
    """Raises unless the lines balance (the canonical model's own check)."""
    return JournalEntry(
        entry_id="e",
        posting_date=date(2026, 12, 8),
        description="d",
        source_event_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        lines=lines,
    )


@given(billed_lines, amounts, residues, amounts)
def test_an_invoice_is_booked_once_as_the_match_posts_it(
    lines: tuple[BilledLine, ...], tax: Decimal, residue: Decimal, grni: Decimal
) -> None:
    s = _settlement(lines, tax, residue, grni)
    booking = book(s, ACCOUNTS)

    document = booking.document
    assert money(document.total) == money(s.stated)
    assert {ln.account for ln in document.lines} == {"2100-H1"}
    assert {c.account for c in document.charges} <= {"2200-H1", "5500-H1"}
    assert document.payable_account == "2000-H1"
    assert document.accounting_date == s.invoice_date
    assert not document.credit_memo

    if s.stated:
        _entry(booking.mirror)
    ap = [ln for ln in booking.mirror if ln.account == "2000-H1"]
    assert all(ln.party == "MCK" for ln in ap)
    assert sum(ln.credit - ln.debit for ln in ap) == money(s.stated)
    assert not [ln for ln in booking.mirror if ln.account != "2000-H1" and ln.party]

    if booking.variance:
        _entry(booking.variance)
        assert {ln.account for ln in booking.variance} == {"5500-H1", "2100-H1"}

    posting = Posting(grni=grni, ppv=s.stated - grni - tax, tax=tax, ap=s.stated)
    expected = journal_lines(
        posting, PostingAccounts(grni="2100-H1", ppv="5500-H1", ap="2000-H1", tax="2200-H1"), "H1"
    )
    assert _net(booking.mirror + booking.variance) == _net(expected)


@given(amounts.filter(bool))
def test_a_credit_memo_debits_the_suppliers_payable_and_credits_ppv(amount: Decimal) -> None:
    s = Settlement(
        reference="cxml:cm-1",
        supplier="MEDSURG",
        facility="H1",
        number="CM-1",
        invoice_date=date(2026, 12, 8),
        purchase_order="PO00000001",
        lines=(),
        tax=Decimal(0),
        stated=amount,
        grni=Decimal(0),
        credit_memo=True,
    )
    booking = book(s, ACCOUNTS)
    assert booking.document.credit_memo
    assert booking.document.total == amount
    assert booking.variance == ()
    _entry(booking.mirror)
    assert _net(booking.mirror) == {"2000-H1": amount, "5500-H1": -amount}
    assert [ln.party for ln in booking.mirror if ln.account == "2000-H1"] == ["MEDSURG"]


@given(billed_lines, amounts, amounts, st.sampled_from(list(Action)))
def test_post_as_decided(
    lines: tuple[BilledLine, ...], tax: Decimal, billed_total: Decimal, action: Action
) -> None:
    stated = stated_total(action, lines, tax, billed_total)
    if action in (Action.APPROVE, Action.REQUEST_CREDIT):
        assert stated == billed_total
    else:
        assert stated == sum((ln.amount for ln in lines), Decimal(0)) + tax
    assert stated_total(None, lines, tax, billed_total) == billed_total
