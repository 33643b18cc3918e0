"""Property tests of the three-way match (medbridge.domain.matching).

A scenario is one purchase order of 1-8 lines, each in its own pack (1 to 100 base units per
unit), partly received in one or two receipts (in the order's unit and in base units), and an
invoice billing exactly what was received at the ordered price, each line in the order's unit
or in base units. Checked:

- such an invoice always matches, its lines clear exactly the received value, and its posting
  balances;
- re-packing (order lines, receipts and invoice lines expressed in a pack m times smaller)
  changes nothing: not the status, the exceptions, the amounts nor the posting, whether the
  invoice is clean or faulty;
- raising one line's price just above both price tolerances gives exactly one PRICE_VARIANCE,
  on that line;
- the journal lines of any matched invoice (with tax, price variances and a total residue
  within tolerance) balance: debits == credits, and AP is the stated total.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from medbridge.canonical.finance import JournalEntry
from medbridge.domain.ledger import money
from medbridge.domain.matching import (
    ExceptionKind,
    InvoiceLineIn,
    MatchBook,
    MatchInvoice,
    MatchResult,
    PoLine,
    ReceivedLine,
    Tolerances,
    journal_lines,
)
from medbridge.domain.matching import PostingAccounts as Accounts

D = Decimal
ZERO = D(0)
FACTORS = (1, 2, 4, 5, 10, 20, 25, 50, 100)
MOVES = [D("0.99"), D(1), D("1.005"), D("1.02"), D("1.03")]  # price x k
SMALLER = (2, 4, 5, 10)  # m: a pack m times smaller (exact decimal division)
ACCOUNTS = Accounts(grni="2150", ppv="5950", ap="2100", tax="2300")
TOL = Tolerances()
FAST = settings(max_examples=200, deadline=None)


@dataclass(frozen=True)
class Scenario:
    po_lines: tuple[PoLine, ...]
    receipts: tuple[ReceivedLine, ...]
    lines: tuple[InvoiceLineIn, ...]
    tax: Decimal = ZERO

    def book(self) -> MatchBook:
        return MatchBook.build(self.po_lines, self.receipts)

    def invoice(self, residue: Decimal = ZERO) -> MatchInvoice:
        total = sum((money(ln.quantity * ln.unit_price) for ln in self.lines), ZERO)
        return MatchInvoice(
            "ACME", "INV-1", date(2026, 3, 1), total + self.tax + residue, self.lines, self.tax
        )

    def match(self, residue: Decimal = ZERO) -> MatchResult:
        return self.book().match(self.invoice(residue), TOL)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    po_lines, receipts, lines = [], [], []
    for i in range(1, draw(st.integers(1, 8)) + 1):
        f = draw(st.sampled_from(FACTORS))
        item, unit = f"IT-{i}", "EA" if f == 1 else f"P{f}"
        ordered = draw(st.integers(1, 40))
        received = draw(st.integers(1, ordered))
        price = D(draw(st.integers(1, 50_000))) / 100
        po_lines.append(PoLine("PO-1", i, item, unit, D(ordered), price, D(f)))
        in_packs = draw(st.integers(0, received))
        if in_packs:
            receipts.append(ReceivedLine("PO-1", i, item, unit, D(in_packs), D(f)))
        if received > in_packs:
            receipts.append(ReceivedLine("PO-1", i, item, "EA", D((received - in_packs) * f), D(1)))
        if draw(st.booleans()):  # billed in base units
            lines.append(InvoiceLineIn(i, "PO-1", i, item, "EA", D(received * f), price / f, D(1)))
        else:
            lines.append(InvoiceLineIn(i, "PO-1", i, item, unit, D(received), price, D(f)))
    tax = D(draw(st.integers(0, 5_000))) / 100
    return Scenario(tuple(po_lines), tuple(receipts), tuple(lines), tax)


def repacked(s: Scenario, m: int) -> Scenario:
    """Everything in a pack m times smaller: m times the quantity at 1/m of the price."""
    k = D(m)
    return Scenario(
        tuple(
            replace(
                p,
                unit=f"{p.unit}/{m}",
                quantity=p.quantity * k,
                unit_price=p.unit_price / k,
                pack_factor=p.pack_factor / k,
            )
            for p in s.po_lines
        ),
        tuple(
            replace(r, unit=f"{r.unit}/{m}", quantity=r.quantity * k, pack_factor=r.pack_factor / k)
            for r in s.receipts
        ),
        tuple(
            replace(
                ln,
                unit=f"{ln.unit}/{m}",
                quantity=ln.quantity * k,
                unit_price=ln.unit_price / k,
                pack_factor=(ln.pack_factor or D(1)) / k,
            )
            for ln in s.lines
        ),
        s.tax,
    )


def faulty(s: Scenario, data: st.DataObject) -> Scenario:
    """Some lines billed at another price or for one more unit (some faults, some not)."""
    lines = []
    for ln in s.lines:
        price = ln.unit_price * data.draw(st.sampled_from([D(1), D("1.01"), D("1.5"), D("0.5")]))
        extra = data.draw(st.sampled_from([0, 0, 1]))
        lines.append(replace(ln, unit_price=price, quantity=ln.quantity + extra))
    return replace(s, lines=tuple(lines))


def outcome(result: MatchResult) -> object:
    return (
        result.status,
        [(e.kind, e.line) for e in result.exceptions],
        [(m.line, m.po, m.base_quantity, m.amount, m.grni) for m in result.lines],
        result.posting,
    )


def assert_balances(result: MatchResult) -> None:
    assert result.posting is not None
    lines = journal_lines(result.posting, ACCOUNTS, "F1")
    debits = sum((ln.debit for ln in lines), ZERO)
    credits = sum((ln.credit for ln in lines), ZERO)
    assert debits == credits
    assert sum((ln.credit for ln in lines if ln.account == "2100"), ZERO) == result.posting.ap
    if len(lines) >= 2:
        JournalEntry(
            entry_id="e",
            posting_date=date(2026, 3, 1),
            description="invoice",
            source_event_id="s",
            correlation_id="c",
            lines=lines,
        )


@FAST
@given(scenarios())
def test_invoice_of_what_was_received_matches_and_balances(s: Scenario) -> None:
    result = s.match()
    assert result.matched, result.exceptions
    received_value = sum(
        (
            money(r.quantity * r.pack_factor * p.unit_price / p.pack_factor)
            for p in s.po_lines
            for r in s.receipts
            if r.line == p.line
        ),
        ZERO,
    )
    assert result.posting is not None
    assert abs(result.posting.grni - received_value) <= D("0.01") * len(s.receipts)
    assert result.posting.ap == money(s.invoice().total)
    assert_balances(result)


@FAST
@given(scenarios(), st.sampled_from(SMALLER), st.data())
def test_repacking_changes_nothing(s: Scenario, m: int, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        s = faulty(s, data)
    assert outcome(repacked(s, m).match()) == outcome(s.match())


@FAST
@given(scenarios(), st.data())
def test_one_price_over_tolerance_is_one_price_variance(s: Scenario, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(s.lines) - 1))
    ln, po = s.lines[i], s.po_lines[i]
    base = po.unit_price / po.pack_factor
    over = base + max(base * TOL.price_percent / 100, TOL.price_absolute) + D("0.0001")
    assert ln.pack_factor is not None
    raised = replace(ln, unit_price=over * ln.pack_factor)
    s = replace(s, lines=(*s.lines[:i], raised, *s.lines[i + 1 :]))
    result = s.match()
    assert [(e.kind, e.line) for e in result.exceptions] == [(ExceptionKind.PRICE_VARIANCE, i + 1)]
    assert result.posting is None


@FAST
@given(
    scenarios(),
    st.lists(
        st.sampled_from([D("0.99"), D(1), D("1.005"), D("1.02"), D("1.03")]), min_size=8, max_size=8
    ),
    st.integers(-5, 5),
)
def test_journal_lines_always_balance(s: Scenario, moves: list[Decimal], cents: int) -> None:
    lines = tuple(
        replace(ln, unit_price=ln.unit_price * k) for ln, k in zip(s.lines, moves, strict=False)
    )
    result = replace(s, lines=lines).match(residue=D(cents) / 100)
    if result.matched:
        assert_balances(result)
    elif result.invoice[2] < 0:  # tiny lines, a negative residue: a credit, never posted
        assert [e.kind for e in result.exceptions] == [ExceptionKind.CREDIT_MEMO]
    else:  # 3 % over: refused when also over 0.05 per base unit
        assert {e.kind for e in result.exceptions} == {ExceptionKind.PRICE_VARIANCE}
