"""Summarised GL posting's tables: ``gl_summaries`` (one row per closed slice, its own
outbox row) and ``gl_summary_entries`` (the drill-down: each summarised entry, its summary).

A summary's life: ``pending`` (due at ``next_attempt_at``) -> ``posted`` (with the ERP's
move; its entries' ``erp_postings`` rows then ``posted`` with the same move) or ``failed``
(the ERP refused it, with the reason) or ``empty`` (its entries net to nothing: no move).
Per destination (a named ERP): ``(summary_id, destination)`` is the primary key and the id
is derived from the slice, so every ERP holds the summary of a slice under the same reference;
closing a slice twice fails on it, and an entry is in one summary at most per destination
(``gl_summary_entries``' key is the entry and the destination).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from medbridge.domain.erp_routing import DEFAULT_DESTINATION
from medbridge.domain.gl_summary import LineKey, SummaryPeriod
from medbridge.store.erp_postings import PostingStatus, requeue_failed
from medbridge.store.sql import chunks
from medbridge.store.tables import (
    erp_postings,
    gl_summaries,
    gl_summary_entries,
    journal_entries,
    journal_lines,
    ledger_movements,
)


class SummaryStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    FAILED = "failed"
    EMPTY = "empty"


DEFAULT = DEFAULT_DESTINATION


@dataclass(frozen=True)
class Summary:
    summary_id: str
    facility: str
    slice_start: datetime
    period: SummaryPeriod
    status: SummaryStatus
    erp_id: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    posted_at: datetime | None
    created_at: datetime
    destination: str = DEFAULT


@dataclass(frozen=True)
class Awaiting:
    """A summarised entry not in a summary yet: when its event happened, where."""

    entry_id: str
    occurred_at: datetime
    facility: str


def awaiting(
    conn: Connection,
    before: datetime | None = None,
    limit: int = 100_000,
    destination: str = DEFAULT,
) -> list[Awaiting]:
    """The ``summarising`` entries of ``destination`` in no summary of it yet, oldest event
    first; with ``before``, only those of an event before it (the others' slices cannot
    close yet)."""
    p, e, m = erp_postings, journal_entries, ledger_movements
    g, ln = gl_summary_entries, journal_lines
    facility = (
        select(func.min(ln.c.facility)).where(ln.c.entry_id == p.c.document).scalar_subquery()
    )
    stmt = (
        select(p.c.document, m.c.occurred_at, facility)
        .join(e, e.c.entry_id == p.c.document)
        .join(m, m.c.event_id == e.c.source_event_id)
        .where(
            p.c.destination == destination,
            p.c.status == PostingStatus.SUMMARISING.value,
            p.c.document.not_in(select(g.c.entry_id).where(g.c.destination == destination)),
            *([m.c.occurred_at < before] if before is not None else []),
        )
        .order_by(m.c.occurred_at, p.c.document)
        .limit(limit)
    )
    return [Awaiting(r[0], r[1], r[2]) for r in conn.execute(stmt)]


def last_closed(
    conn: Connection, period: SummaryPeriod, destination: str = DEFAULT
) -> dict[str, datetime]:
    """Per facility, the start of its latest closed slice of this period length."""
    t = gl_summaries
    rows = conn.execute(
        select(t.c.facility, func.max(t.c.slice_start, type_=t.c.slice_start.type))
        .where(t.c.period == period.value, t.c.destination == destination)
        .group_by(t.c.facility)
    )
    return {r[0]: r[1] for r in rows}


def close(
    conn: Connection,
    summary_id: str,
    facility: str,
    start: datetime,
    period: SummaryPeriod,
    members: Sequence[tuple[str, datetime]],
    now: datetime,
    destination: str = DEFAULT,
) -> None:
    """A closed slice: its summary, due now, and its ``members`` (entry id, the slice of its
    event). A second close of the same slice fails on the summary's key."""
    conn.execute(
        insert(gl_summaries).values(
            summary_id=summary_id,
            destination=destination,
            facility=facility,
            slice_start=start,
            period=period.value,
            status=SummaryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    rows = [
        {
            "entry_id": entry_id,
            "destination": destination,
            "summary_id": summary_id,
            "event_slice": event_slice,
        }
        for entry_id, event_slice in members
    ]
    for chunk in chunks(rows, 500):
        conn.execute(insert(gl_summary_entries), chunk)


def claim(
    conn: Connection, limit: int, now: datetime, lease: timedelta, destination: str = DEFAULT
) -> list[Summary]:
    """Up to ``limit`` due pending summaries of ``destination``, leased until ``now +
    lease``."""
    t = gl_summaries
    stmt = (
        select(t)
        .where(
            t.c.destination == destination,
            t.c.status == SummaryStatus.PENDING.value,
            t.c.next_attempt_at <= now,
        )
        .order_by(t.c.next_attempt_at, t.c.summary_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    found = [_summary(r) for r in conn.execute(stmt)]
    ids = [s.summary_id for s in found]
    if ids:
        conn.execute(
            update(t)
            .where(t.c.destination == destination, t.c.summary_id.in_(ids))
            .values(next_attempt_at=now + lease)
        )
    return found


def net_lines(
    conn: Connection, summary_id: str, destination: str = DEFAULT
) -> tuple[dict[LineKey, Decimal], int, set[str]]:
    """The summary's entries, summed in the database: debit - credit per (account, cost
    center, facility, party); how many entries; their currencies."""
    g, ln, e = gl_summary_entries, journal_lines, journal_entries
    rows = conn.execute(
        select(
            ln.c.account,
            ln.c.cost_center,
            ln.c.facility,
            ln.c.party,
            func.sum(ln.c.debit, type_=ln.c.debit.type),
            func.sum(ln.c.credit, type_=ln.c.credit.type),
        )
        .join(g, g.c.entry_id == ln.c.entry_id)
        .where(g.c.summary_id == summary_id, g.c.destination == destination)
        .group_by(ln.c.account, ln.c.cost_center, ln.c.facility, ln.c.party)
    )
    net = {(r[0], r[1], r[2], r[3]): Decimal(r[4] or 0) - Decimal(r[5] or 0) for r in rows}
    count = conn.execute(
        select(func.count())
        .select_from(g)
        .where(g.c.summary_id == summary_id, g.c.destination == destination)
    ).scalar_one()
    currencies = set(
        conn.execute(
            select(e.c.currency)
            .distinct()
            .join(g, g.c.entry_id == e.c.entry_id)
            .where(g.c.summary_id == summary_id, g.c.destination == destination)
        ).scalars()
    )
    return net, int(count), currencies


def _members(summary_id: str, destination: str) -> Any:
    g = gl_summary_entries
    return select(g.c.entry_id).where(g.c.summary_id == summary_id, g.c.destination == destination)


def _key(summary_id: str, destination: str) -> Any:
    t = gl_summaries
    return and_(t.c.summary_id == summary_id, t.c.destination == destination)


def mark_posted(
    conn: Connection,
    summary_id: str,
    erp_id: str | None,
    now: datetime,
    destination: str = DEFAULT,
) -> None:
    """The summary posted (``erp_id`` None: empty, nothing to post), and every entry in it."""
    t, p = gl_summaries, erp_postings
    status = SummaryStatus.POSTED if erp_id is not None else SummaryStatus.EMPTY
    conn.execute(
        update(t)
        .where(_key(summary_id, destination))
        .values(status=status.value, erp_id=erp_id, attempts=t.c.attempts + 1, posted_at=now)
    )
    conn.execute(
        update(p)
        .where(
            p.c.destination == destination,
            p.c.document.in_(_members(summary_id, destination)),
        )
        .values(status=PostingStatus.POSTED.value, erp_id=erp_id, posted_at=now)
    )


def mark_retry(
    conn: Connection, summary_id: str, error: str, at: datetime, destination: str = DEFAULT
) -> None:
    t = gl_summaries
    conn.execute(
        update(t)
        .where(_key(summary_id, destination))
        .values(attempts=t.c.attempts + 1, last_error=error[:2000], next_attempt_at=at)
    )


def mark_failed(conn: Connection, summary_id: str, error: str, destination: str = DEFAULT) -> None:
    t = gl_summaries
    conn.execute(
        update(t)
        .where(_key(summary_id, destination))
        .values(
            status=SummaryStatus.FAILED.value, attempts=t.c.attempts + 1, last_error=error[:2000]
        )
    )


def requeue(
    conn: Connection, summary_id: str, now: datetime, *, actor: str, destination: str | None = None
) -> bool:
    """A failed summary back to pending, due now (after the fix in the ERP): of
    ``destination``, or of every one where it failed. False if none was. Audited as
    ``actor``'s, with the error it had failed with."""
    t = gl_summaries
    where = [t.c.summary_id == summary_id, t.c.status == SummaryStatus.FAILED.value]
    if destination is not None:
        where.append(t.c.destination == destination)
    done = False
    for name in conn.execute(select(t.c.destination).where(*where)).scalars():
        key = {"summary_id": summary_id, "destination": name}
        done |= requeue_failed(conn, t, key, now, actor, "gl_summary")
    return done


# --- read side -----------------------------------------------------------------------------


def _summary(row: Any) -> Summary:
    return Summary(
        row.summary_id,
        row.facility,
        row.slice_start,
        SummaryPeriod(row.period),
        SummaryStatus(row.status),
        row.erp_id,
        row.attempts,
        row.last_error,
        row.next_attempt_at,
        row.posted_at,
        row.created_at,
        row.destination,
    )


def get(conn: Connection, summary_id: str, destination: str | None = None) -> Summary | None:
    """The summary (of ``destination``; None: the first destination's by name)."""
    t = gl_summaries
    stmt = select(t).where(t.c.summary_id == summary_id).order_by(t.c.destination).limit(1)
    if destination is not None:
        stmt = stmt.where(t.c.destination == destination)
    row = conn.execute(stmt).first()
    return None if row is None else _summary(row)


def summaries(
    conn: Connection,
    *,
    facilities: frozenset[str] | None = None,
    destination: str | None = None,
    limit: int = 1000,
) -> list[Summary]:
    """The summaries, newest slice first (of ``facilities`` only, when given)."""
    t = gl_summaries
    stmt = select(t).order_by(t.c.slice_start.desc(), t.c.facility, t.c.destination).limit(limit)
    if facilities is not None:
        stmt = stmt.where(t.c.facility.in_(facilities))
    if destination is not None:
        stmt = stmt.where(t.c.destination == destination)
    return [_summary(r) for r in conn.execute(stmt)]


@dataclass(frozen=True)
class DrillLine:
    """One journal line behind a summary line."""

    entry_id: str
    event_slice: datetime
    account: str
    cost_center: str | None
    facility: str
    party: str | None
    debit: Decimal
    credit: Decimal


def drill_down(
    conn: Connection, summary_id: str, *, destination: str = DEFAULT, limit: int = 10_000
) -> list[DrillLine]:
    """Every journal line of the entries in the summary, by (account, cost center), entry."""
    g, ln = gl_summary_entries, journal_lines
    stmt = (
        select(
            ln.c.entry_id,
            g.c.event_slice,
            ln.c.account,
            ln.c.cost_center,
            ln.c.facility,
            ln.c.party,
            ln.c.debit,
            ln.c.credit,
        )
        .join(g, g.c.entry_id == ln.c.entry_id)
        .where(g.c.summary_id == summary_id, g.c.destination == destination)
        .order_by(ln.c.account, ln.c.cost_center, ln.c.entry_id, ln.c.line_no)
        .limit(limit)
    )
    return [DrillLine(*r) for r in conn.execute(stmt)]


def failed_count(conn: Connection, facilities: frozenset[str] | None = None) -> int:
    """How many summaries the ERP refused (dead letters, their entries waiting with them)."""
    t = gl_summaries
    stmt = select(func.count()).where(t.c.status == SummaryStatus.FAILED.value)
    if facilities is not None:
        stmt = stmt.where(t.c.facility.in_(facilities))
    return int(conn.execute(stmt).scalar_one())


def summary_of(conn: Connection, entry_id: str) -> str | None:
    """The summary a journal entry went into (None: none, or not yet); the same id in every
    destination that summarised it."""
    g = gl_summary_entries
    found: str | None = conn.execute(
        select(g.c.summary_id).where(g.c.entry_id == entry_id).limit(1)
    ).scalar_one_or_none()
    return found


@dataclass(frozen=True)
class SummaryLine:
    """A line of the summary: its net amount and the journal lines behind it."""

    account: str
    cost_center: str | None
    facility: str
    party: str | None
    net: Decimal  # debit - credit
    behind: tuple[DrillLine, ...]


def summary_lines(rows: Sequence[DrillLine]) -> list[SummaryLine]:
    """``drill_down``'s rows grouped as the summary's lines (a zero net line included: the
    summary leaves it out, the drill-down shows what cancelled)."""
    grouped: dict[LineKey, list[DrillLine]] = {}
    for r in rows:
        grouped.setdefault((r.account, r.cost_center, r.facility, r.party), []).append(r)
    return [
        SummaryLine(*key, sum((r.debit - r.credit for r in behind), Decimal(0)), tuple(behind))
        for key, behind in grouped.items()
    ]
