"""The shadow run's comparison of two ERPs' ledgers (medbridge.domain.erp_compare): per
(domain, facility), documents on one side only and amounts that differ, with totals; the same
ledgers compare to exactly nothing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from medbridge.canonical.erp import ErpLedgerLine
from medbridge.domain.erp_compare import ComparisonKind, Origin, Side, compare

DAY = date(2026, 12, 3)
ORIGINS = {
    "JE-1": Origin("gl", "H1"),
    "JE-2": Origin("gl", "H2"),
    "SUM-H1-2026120309": Origin("gl", "H1"),
    "INV-7": Origin("invoices", "H1"),
}
ACCOUNTS = {"5100-H1": "H1", "1400-H1": "H1", "5100-H2": "H2", "1400-H2": "H2"}


def move(
    reference: str, amount: str, debit: str = "5100-H1", credit: str = "1400-H1", move_id: str = ""
) -> list[ErpLedgerLine]:
    a = Decimal(amount)
    mid = move_id or f"m-{reference}"
    return [
        ErpLedgerLine(reference, mid, DAY, debit, "H1-CC", a, Decimal(0)),
        ErpLedgerLine(reference, mid, DAY, credit, None, Decimal(0), a),
    ]


def test_the_same_ledgers_compare_to_exactly_nothing_with_totals_per_domain_and_facility() -> None:
    lines = (
        move("JE-1", "12.50")
        + move("JE-2", "3.10", "5100-H2", "1400-H2")
        + move("SUM-H1-2026120309", "40.00")
        + move("INV-7", "99.99", "2100-H1", "2000-H1")
    )
    # the other ERP answers the same amounts written otherwise, lines in another order
    other = [
        ErpLedgerLine(ln.reference, "x" + ln.move_id, ln.posting_date, ln.account, None,
                      ln.debit.quantize(Decimal("0.0001")), ln.credit)
        for ln in reversed(lines)
    ]  # fmt: skip
    report = compare("legacy", lines, "cloud", other, ORIGINS, ACCOUNTS)
    assert report.identical
    assert report.differences == ()
    by_group = {(g.domain, g.facility): g for g in report.groups}
    assert list(by_group) == [("gl", "H1"), ("gl", "H2"), ("invoices", "H1")]
    h1 = by_group[("gl", "H1")]
    assert (h1.left_documents, h1.right_documents) == (2, 2)
    assert (h1.left_debit, h1.right_debit) == (Decimal("52.50"), Decimal("52.50"))
    assert h1.debit_difference == 0
    assert h1.credit_difference == 0
    assert str(h1.debit_difference) in ("0.00", "0.0000", "0")


def test_a_planted_difference_is_reported_exactly() -> None:
    left = move("JE-1", "12.50") + move("JE-2", "3.10", "5100-H2", "1400-H2")
    right = (
        move("JE-1", "12.05")  # another amount
        + move("JE-2", "3.10", "5100-H2", "1400-H2")
        + move("HAND-8", "2.50", "5100-H2", "1400-H2")  # booked by hand on the right only
    )
    report = compare("legacy", left + move("JE-9", "1.00"), "cloud", right, ORIGINS, ACCOUNTS)
    assert [
        (d.kind, d.reference, d.domain, d.facility, d.account, d.left, d.right)
        for d in report.differences
    ] == [
        (
            ComparisonKind.AMOUNT_DIFFERS, "JE-1", "gl", "H1", "1400-H1",
            Side(Decimal(0), Decimal("12.50")), Side(Decimal(0), Decimal("12.05")),
        ),
        (
            ComparisonKind.AMOUNT_DIFFERS, "JE-1", "gl", "H1", "5100-H1",
            Side(Decimal("12.50"), Decimal(0)), Side(Decimal("12.05"), Decimal(0)),
        ),
        (
            ComparisonKind.ONLY_LEFT, "JE-9", None, "H1", None,
            Side(Decimal("1.00"), Decimal("1.00")), Side(),
        ),
        (
            ComparisonKind.ONLY_RIGHT, "HAND-8", None, "H2", None,
            Side(), Side(Decimal("2.50"), Decimal("2.50")),
        ),
    ]  # fmt: skip
    assert report.differences[1].difference == Decimal("0.45")
    gl_h1 = next(g for g in report.groups if (g.domain, g.facility) == ("gl", "H1"))
    assert gl_h1.debit_difference == Decimal("0.45")
    assert gl_h1.count(ComparisonKind.AMOUNT_DIFFERS) == 2


def test_a_move_posted_twice_on_one_side_shows_as_twice_the_amount() -> None:
    left = move("JE-1", "12.50")
    right = move("JE-1", "12.50") + move("JE-1", "12.50", move_id="m-again")
    [debit_side, credit_side] = [
        d for d in compare("l", left, "r", right, ORIGINS).differences if d.account
    ][::-1]
    assert debit_side.right.debit == Decimal("25.00")
    assert debit_side.left.debit == Decimal("12.50")
    assert credit_side.right.credit == Decimal("25.00")


def test_domains_restrict_the_report_but_references_of_no_domain_stay() -> None:
    left = move("JE-1", "1.00") + move("INV-7", "5.00") + move("HAND-1", "2.00")
    report = compare("l", left, "r", [], ORIGINS, ACCOUNTS, domains={"invoices"})
    assert [(d.reference, d.domain) for d in report.differences] == [
        ("INV-7", "invoices"),
        ("HAND-1", None),
    ]
    assert report.within({"H2"}).groups == ()
    assert [g.facility for g in report.within({"H1"}).groups] == ["H1", "H1"]


cents = st.integers(min_value=1, max_value=10_000_00).map(lambda n: Decimal(n) / 100)


@given(
    amounts=st.lists(cents, min_size=1, max_size=12),
    planted=st.integers(min_value=0, max_value=11),
    delta=st.integers(min_value=1, max_value=999).map(lambda n: Decimal(n) / 100),
)
def test_property_one_changed_amount_is_the_only_difference_and_exact(
    amounts: list[Decimal], planted: int, delta: Decimal
) -> None:
    planted %= len(amounts)
    references = [f"JE-{n}" for n in range(len(amounts))]
    origins = {r: Origin("gl", "H1") for r in references}
    left = [ln for r, a in zip(references, amounts, strict=True) for ln in move(r, str(a))]
    assert compare("l", left, "r", list(left), origins).identical
    changed = [
        ln
        for n, (r, a) in enumerate(zip(references, amounts, strict=True))
        for ln in move(r, str(a + delta if n == planted else a))
    ]
    report = compare("l", left, "r", changed, origins)
    assert {(d.reference, d.account) for d in report.differences} == {
        (references[planted], "5100-H1"),
        (references[planted], "1400-H1"),
    }
    [group] = report.groups
    assert group.right_debit - group.left_debit == delta
    assert all(abs(d.difference) == delta for d in report.differences)
