"""Summarised GL posting (issue 17): many journal entries of one slice -> one summary entry.

A slice is a period (an hour or a day, UTC; a minute for the demo, which wants its
summaries in the ERP while one watches) at one facility. The consumption entries
(dispenses, clinical consumption) of a slice are posted to the ERP as ONE journal entry,
with one line per (account, cost center, party), debits and credits netted per line. Pure:
the store and the summarizer (``flows.gl_summary``) decide when a slice is closed.

- ``summary_id``: derived from the slice alone, frozen (``SUM-<facility>-<yyyy-mm-ddThh>``
  hourly, ``SUM-<facility>-<yyyy-mm-dd>`` daily, ``SUM-<facility>-<yyyy-mm-ddThh:mm>`` per
  minute): re-running the summarizer can never make
  a second summary of the same slice, and the ERP finds the move by this reference.
- ``slice_for``: an entry goes to the slice of its event's time, or, when that slice (or a
  later one) of its facility is closed already, to the first slice after the last closed
  one: a late event is never lost and never reopens a posted summary.
- ``summarise``: the summary entry, whose lines equal the sum of its entries' lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.movements import MovementKind

CONSUMPTION = frozenset({MovementKind.DISPENSE, MovementKind.CLINICAL_CONSUMPTION})
"""The movements whose entries a summarising destination receives in slices."""


class GlPostingMode(StrEnum):
    """How a destination's general ledger receives MedBridge's journal entries."""

    PER_EVENT = "per_event"
    """One ERP move per journal entry."""
    SUMMARISED = "summarised"
    """Consumption entries: one ERP move per slice (period, facility); the rest per event."""


class SummaryPeriod(StrEnum):
    MINUTE = "minute"
    """The demo's (``medbridge run --demo``): summaries reach its ERP within a minute or two."""
    HOUR = "hour"
    DAY = "day"

    @property
    def length(self) -> timedelta:
        return _LENGTHS[self]


_LENGTHS = {
    SummaryPeriod.MINUTE: timedelta(minutes=1),
    SummaryPeriod.HOUR: timedelta(hours=1),
    SummaryPeriod.DAY: timedelta(days=1),
}


def slice_start(at: datetime, period: SummaryPeriod) -> datetime:
    """The start (UTC) of the slice holding ``at`` (a naive ``at`` is taken as UTC)."""
    utc = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    minute = utc.replace(second=0, microsecond=0)
    if period is SummaryPeriod.MINUTE:
        return minute
    hour = minute.replace(minute=0)
    return hour if period is SummaryPeriod.HOUR else hour.replace(hour=0)


def slice_for(
    occurred_at: datetime, period: SummaryPeriod, last_closed: datetime | None
) -> datetime:
    """The slice an entry goes to: its event's, or the first after ``last_closed`` (the start
    of its facility's latest closed slice) when that one is closed already."""
    own = slice_start(occurred_at, period)
    if last_closed is None or own > last_closed:
        return own
    return last_closed + period.length


def summary_id(facility: str, start: datetime, period: SummaryPeriod) -> str:
    """The summary's id, from its slice alone. Frozen: the ERP's move reference."""
    stamp = {
        SummaryPeriod.MINUTE: f"{start:%Y-%m-%dT%H:%M}",
        SummaryPeriod.HOUR: f"{start:%Y-%m-%dT%H}",
        SummaryPeriod.DAY: f"{start:%Y-%m-%d}",
    }[period]
    return f"SUM-{facility}-{stamp}"


LineKey = tuple[str, str | None, str, str | None]
"""(account, cost center, facility, party) of a summary line."""


def net_lines(entries: Sequence[JournalEntry]) -> dict[LineKey, Decimal]:
    """Debit minus credit per line key, over every line of ``entries``."""
    net: dict[LineKey, Decimal] = defaultdict(Decimal)
    for entry in entries:
        for line in entry.lines:
            net[(line.account, line.cost_center, line.facility, line.party)] += (
                line.debit - line.credit
            )
    return dict(net)


def summarise(
    entries: Sequence[JournalEntry],
    *,
    facility: str,
    start: datetime,
    period: SummaryPeriod,
) -> JournalEntry | None:
    """The summary entry of a slice's ``entries`` (None when they net to nothing); a slice of
    mixed currencies is refused (``ValueError``)."""
    currencies = {e.currency for e in entries}
    if len(currencies) > 1:
        raise ValueError(f"slice {summary_id(facility, start, period)} mixes {currencies}")
    return summary_entry(
        net_lines(entries),
        entries=len(entries),
        facility=facility,
        start=start,
        period=period,
        currency=currencies.pop() if currencies else "USD",
    )


def summary_entry(
    net: Mapping[LineKey, Decimal],
    *,
    entries: int,
    facility: str,
    start: datetime,
    period: SummaryPeriod,
    currency: str = "USD",
) -> JournalEntry | None:
    """The summary entry from the net amount per line key of its ``entries`` entries.

    One line per (account, cost center, facility, party), on the side of its net amount;
    balanced because each entry is. Its posting date is the slice's (UTC) date. None when
    everything nets to nothing (no move to post)."""
    lines = [
        JournalLine(
            account=account,
            cost_center=cost_center,
            facility=line_facility,
            party=party,
            debit=amount if amount > 0 else Decimal(0),
            credit=-amount if amount < 0 else Decimal(0),
        )
        for (account, cost_center, line_facility, party), amount in sorted(
            net.items(), key=lambda kv: tuple(p or "" for p in kv[0])
        )
        if amount != 0
    ]
    if len(lines) < 2:
        return None
    ident = summary_id(facility, start, period)
    day: date = start.date()
    return JournalEntry(
        entry_id=ident,
        posting_date=day,
        currency=currency,
        description=f"summary of {entries} consumption entries, {ident[4:]}"[:200],
        source_event_id=ident,
        correlation_id=ident,
        lines=tuple(lines),
    )
