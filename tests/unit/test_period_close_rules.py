"""The period close's pure rules: the lock's dating, the cut-off's checks, the report's
round trip and CSV, and a late supplier invoice dated in the next open period."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.domain import ap_posting
from medbridge.domain.close_report import report_html
from medbridge.domain.period_close import (
    CloseDifference,
    CloseReport,
    Dating,
    ErpCheck,
    GrniLine,
    PeriodError,
    PpvLine,
    StockCheck,
    aged_grni,
    check_cutoff,
    dating,
    late_note,
    report_csv,
    report_from_json,
    report_json,
)
from medbridge.flows.invoice_booking import dated_booking, dated_entries

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def test_an_event_of_an_open_period_keeps_its_day() -> None:
    assert dating(date(2026, 11, 29), {"2026-10"}) == Dating(date(2026, 11, 29))


def test_a_late_event_goes_to_the_first_day_of_the_next_open_period() -> None:
    assert dating(date(2026, 11, 29), {"2026-11"}) == Dating(date(2026, 12, 1), "2026-11")
    skipped = dating(date(2026, 11, 29), {"2026-11", "2026-12"})
    assert skipped == Dating(date(2027, 1, 1), "2026-11")


def test_the_note_comes_first_and_the_description_stays_within_200() -> None:
    note = late_note("x" * 300, date(2026, 11, 29), "2026-11")
    assert note.startswith("late, belongs to closed 2026-11 (event 2026-11-29): xxx")
    assert len(note) == 200


def test_the_cutoff_is_in_the_period_and_not_to_come() -> None:
    assert check_cutoff("2026-11", None, NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    moment = datetime(2026, 11, 30, 18, tzinfo=UTC)
    assert check_cutoff("2026-11", moment, NOW) == moment
    for wrong in (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, 1, tzinfo=UTC)):
        with pytest.raises(PeriodError, match="is not in 2026-11") as raised:
            check_cutoff("2026-11", wrong, NOW)
        assert raised.value.field == "cutoff"
    with pytest.raises(PeriodError, match="no time zone"):
        check_cutoff("2026-11", datetime(2026, 11, 20), NOW)
    with pytest.raises(PeriodError, match="2026-12 is not over"):
        check_cutoff("2026-12", None, NOW)
    for bad in ("2026-13", "26-11", "2026-1", "november", "0000-01", "9999-12"):
        with pytest.raises(PeriodError, match="is not YYYY-MM"):
            check_cutoff(bad, None, NOW)


def report() -> CloseReport:
    grni = (GrniLine("MCK", "PO1", "H1", "2100-H1", Decimal("274.00"), date(2026, 8, 1)),)
    return CloseReport(
        period="2026-11",
        cutoff=datetime(2026, 12, 1, tzinfo=UTC),
        generated_at=NOW,
        grni=grni,
        ppv=(PpvLine("MCK", "VANCO-1G", "H1", Decimal("1.50")),),
        stock=(StockCheck("H1", "1400-H1", Decimal("10.00"), Decimal("12.00")),),
        erps=(ErpCheck("tryton", "unreachable", error="down <script>"),),
        differences=(
            *aged_grni(grni, datetime(2026, 12, 1, tzinfo=UTC)),
            CloseDifference("stock_vs_gl", "H1", "1400-H1", Decimal("-2.00"), "finance", "H1", "x"),
        ),
        late_entries=2,
        notes=("forced: reviewed",),
    )


def test_old_grni_is_procurements_and_recent_grni_is_no_difference() -> None:
    cutoff = datetime(2026, 12, 1, tzinfo=UTC)
    recent = GrniLine("MCK", "PO2", "H1", "2100-H1", Decimal(5), cutoff.date() - timedelta(59))
    old = GrniLine("MCK", "PO3", "H1", "2100-H1", Decimal(7), cutoff.date() - timedelta(60))
    [aged] = aged_grni([recent, old], cutoff)
    assert (aged.kind, aged.owner, aged.reference, aged.amount) == (
        "grni_aged",
        "procurement",
        "PO3",
        Decimal(7),
    )


def test_the_report_survives_its_json_and_lists_every_difference_in_csv() -> None:
    original = report()
    assert report_from_json(report_json(original)) == original
    rows = list(csv.DictReader(io.StringIO(report_csv(original))))
    differences = [(r["kind"], r["facility"], r["amount"], r["owner"]) for r in rows[:2]]
    assert differences == [
        ("grni_aged", "H1", "274.00", "procurement"),
        ("stock_vs_gl", "H1", "-2.00", "finance"),
    ]
    assert [r["section"] for r in rows] == [
        "difference",
        "difference",
        "grni",
        "ppv",
        "stock",
        "erp",
    ]
    page = report_html(original, "closed")
    assert "down &lt;script&gt;" in page
    assert "<script>" not in page


def test_a_late_invoice_is_accounted_and_journaled_in_the_next_open_period() -> None:
    settled = ap_posting.Settlement(
        reference="inv-1",
        supplier="MCK",
        facility="H1",
        number="INV-1",
        invoice_date=date(2026, 11, 28),
        purchase_order="PO1",
        lines=(ap_posting.BilledLine("VANCO-1G", Decimal(10), "VIAL", Decimal("7.00")),),
        tax=Decimal(0),
        stated=Decimal("70.00"),
        grni=Decimal("68.50"),
    )
    booking = ap_posting.book(settled, ap_posting.ApAccounts("2100-H1", "5900-H1", "2000-H1"))
    dated = dating(settled.invoice_date, {"2026-11"})
    moved = dated_booking(booking, dated)
    assert moved.document.accounting_date == date(2026, 12, 1)
    assert moved.document.invoice_date == date(2026, 11, 28)  # the supplier's date stays
    entry = JournalEntry(
        entry_id="ppv:1",
        posting_date=settled.invoice_date,
        description="price variance, invoice INV-1 of MCK",
        source_event_id="e1",
        correlation_id="c1",
        lines=booking.variance,
    )
    [late] = dated_entries([entry], settled.invoice_date, dated)
    assert (late.posting_date, late.period) == (date(2026, 12, 1), "2026-12")
    assert late.description.startswith("late, belongs to closed 2026-11 (event 2026-11-28)")
    assert dated_entries([entry], settled.invoice_date, Dating(entry.posting_date)) == [entry]
    assert dated_booking(booking, Dating(settled.invoice_date)) is booking
    assert all(isinstance(line, JournalLine) for line in late.lines)
