"""Summarised GL posting, the pure part: slices, late events, summary ids, netting."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.domain.gl_summary import (
    SummaryPeriod,
    net_lines,
    slice_for,
    slice_start,
    summarise,
    summary_id,
)

MINUTE, HOUR, DAY = SummaryPeriod.MINUTE, SummaryPeriod.HOUR, SummaryPeriod.DAY
T = datetime(2026, 12, 6, 10, 37, 12, tzinfo=UTC)


def consumption(n: int, amount: str, cost_center: str = "H1-CC-ICU") -> JournalEntry:
    a = Decimal(amount)
    return JournalEntry(
        entry_id=f"JE-{n}",
        posting_date=date(2026, 12, 6),
        description=f"dispense {n}",
        source_event_id=f"ev-{n}",
        correlation_id=f"c-{n}",
        lines=(
            JournalLine(account="5100-H1", debit=a, cost_center=cost_center, facility="H1"),
            JournalLine(account="1300-H1", credit=a, facility="H1"),
        ),
    )


def test_slice_start_is_the_utc_hour_or_day() -> None:
    assert slice_start(T, HOUR) == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert slice_start(T, DAY) == datetime(2026, 12, 6, tzinfo=UTC)
    local = T.astimezone(timezone(timedelta(hours=-5)))  # 05:37 local, 10:37 UTC
    assert slice_start(local, HOUR) == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert slice_start(T.replace(tzinfo=None), HOUR) == datetime(2026, 12, 6, 10, tzinfo=UTC)


def test_the_demos_minute_slices() -> None:
    start = slice_start(T, MINUTE)
    assert start == datetime(2026, 12, 6, 10, 37, tzinfo=UTC)
    assert MINUTE.length == timedelta(minutes=1)
    assert summary_id("H1", start, MINUTE) == "SUM-H1-2026-12-06T10:37"
    assert summary_id("H1", start, MINUTE) != summary_id("H1", slice_start(T, HOUR), HOUR)
    late = slice_for(T, MINUTE, datetime(2026, 12, 6, 10, 40, tzinfo=UTC))
    assert late == datetime(2026, 12, 6, 10, 41, tzinfo=UTC)


def test_an_entry_goes_to_its_own_slice_unless_that_is_closed() -> None:
    assert slice_for(T, HOUR, None) == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert slice_for(T, HOUR, datetime(2026, 12, 6, 9, tzinfo=UTC)) == slice_start(T, HOUR)


@pytest.mark.parametrize("closed_hour", [10, 13])
def test_a_late_entry_goes_to_the_first_slice_after_the_last_closed(closed_hour: int) -> None:
    last = datetime(2026, 12, 6, closed_hour, tzinfo=UTC)
    assert slice_for(T, HOUR, last) == last + timedelta(hours=1)
    assert slice_for(T, DAY, datetime(2026, 12, 6, tzinfo=UTC)) == datetime(2026, 12, 7, tzinfo=UTC)


def test_the_summary_id_is_derived_from_the_slice() -> None:
    start = slice_start(T, HOUR)
    assert summary_id("H1", start, HOUR) == "SUM-H1-2026-12-06T10"
    assert summary_id("H1", slice_start(T, DAY), DAY) == "SUM-H1-2026-12-06"
    assert summary_id("H1", start, HOUR) == summary_id("H1", slice_start(T, HOUR), HOUR)


def test_summary_lines_are_the_nets_per_account_and_cost_center() -> None:
    entries = [
        consumption(1, "12.50"),
        consumption(2, "7.25"),
        consumption(3, "3.00", cost_center="H1-CC-ER"),
    ]
    summary = summarise(entries, facility="H1", start=slice_start(T, HOUR), period=HOUR)
    assert summary is not None
    assert summary.entry_id == summary.source_event_id == "SUM-H1-2026-12-06T10"
    assert summary.posting_date == date(2026, 12, 6)
    got = {(ln.account, ln.cost_center): (ln.debit, ln.credit) for ln in summary.lines}
    assert got == {
        ("1300-H1", None): (Decimal(0), Decimal("22.75")),
        ("5100-H1", "H1-CC-ER"): (Decimal("3.00"), Decimal(0)),
        ("5100-H1", "H1-CC-ICU"): (Decimal("19.75"), Decimal(0)),
    }
    # the summary's lines equal the sum of its entries' lines
    assert net_lines([summary]) == net_lines(entries)


def test_debits_and_credits_net_per_line_and_a_zero_line_is_left_out() -> None:
    reversal = JournalEntry(
        entry_id="JE-R",
        posting_date=date(2026, 12, 6),
        description="revaluation",
        source_event_id="ev-r",
        correlation_id="c-r",
        lines=(
            JournalLine(account="1300-H1", debit=Decimal("2.00"), facility="H1"),
            JournalLine(
                account="5100-H1", credit=Decimal("2.00"), cost_center="H1-CC-ER", facility="H1"
            ),
        ),
    )
    entries = [consumption(1, "5.00"), consumption(2, "2.00", cost_center="H1-CC-ER"), reversal]
    summary = summarise(entries, facility="H1", start=slice_start(T, HOUR), period=HOUR)
    assert summary is not None
    got = {(ln.account, ln.cost_center): (ln.debit, ln.credit) for ln in summary.lines}
    assert got == {
        ("1300-H1", None): (Decimal(0), Decimal("5.00")),
        ("5100-H1", "H1-CC-ICU"): (Decimal("5.00"), Decimal(0)),
    }


def test_nothing_to_summarise_is_no_summary() -> None:
    start = slice_start(T, HOUR)
    assert summarise([], facility="H1", start=start, period=HOUR) is None


def test_a_slice_of_mixed_currencies_is_refused() -> None:
    eur = consumption(2, "1.00").model_copy(update={"currency": "EUR"})
    with pytest.raises(ValueError, match="mixes"):
        summarise(
            [consumption(1, "1.00"), eur], facility="H1", start=slice_start(T, HOUR), period=HOUR
        )
