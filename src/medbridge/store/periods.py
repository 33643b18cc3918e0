"""The closed periods: read (one small query: the ledger posting asks once per batch) and
written once per period, audited (``period.close``) in the close's transaction.

A batch that posts and a close must not cross: on PostgreSQL the posting reads the closed
periods under a SHARE lock of the table (``closed(conn, posting=True)``: batches do not wait
for each other) and the close takes it EXCLUSIVE (``lock_for_close``) before it writes, so a
close waits for the batches in flight and the next batches see it. On SQLite every writing
transaction holds the database's one write lock already (``store.db``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, text

from medbridge.store import audit
from medbridge.store.tables import journal_entries, periods


@dataclass(frozen=True)
class Period:
    period: str
    state: str  # open | closed
    cutoff: datetime | None = None
    closed_at: datetime | None = None
    actor: str | None = None
    differences: int | None = None
    forced_reason: str | None = None
    entries: int = 0


def closed(conn: Connection, *, posting: bool = False) -> frozenset[str]:
    """Every closed period (``YYYY-MM``); ``posting``: in a transaction that dates entries
    by them (see the module's docstring)."""
    t = periods
    if posting and conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE periods IN SHARE MODE"))
    return frozenset(conn.execute(select(t.c.period).where(t.c.state == "closed")).scalars())


def lock_for_close(conn: Connection) -> None:
    """No entry is dated by the closed periods until this transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE periods IN EXCLUSIVE MODE"))


def get(conn: Connection, period: str) -> Period | None:
    row = conn.execute(select(periods).where(periods.c.period == period)).first()
    return None if row is None else _period(row)


def stored_report(conn: Connection, period: str) -> dict[str, Any] | None:
    """The report as the close wrote it (None: the period is not closed)."""
    t = periods
    found = conn.execute(select(t.c.report).where(t.c.period == period)).scalar_one_or_none()
    return None if found is None else dict(found)


def _period(row: Any, entries: int = 0) -> Period:
    return Period(
        row.period,
        row.state,
        row.cutoff,
        row.closed_at,
        row.actor,
        row.differences,
        row.forced_reason,
        entries,
    )


def listing(conn: Connection) -> list[Period]:
    """Every period with journal entries or a close, newest first, with its entry count."""
    e = journal_entries
    counts = dict(
        conn.execute(select(e.c.period, func.count()).group_by(e.c.period)).tuples().all()
    )
    rows = {r.period: r for r in conn.execute(select(periods))}
    found = [
        _period(rows[p], counts.get(p, 0)) if p in rows else Period(p, "open", entries=counts[p])
        for p in set(counts) | set(rows)
    ]
    return sorted(found, key=lambda p: p.period, reverse=True)


def close(
    conn: Connection,
    period: str,
    *,
    cutoff: datetime,
    closed_at: datetime,
    actor: str,
    differences: int,
    forced_reason: str | None,
    report: dict[str, Any],
) -> None:
    """Lock ``period`` (a second close of it fails on its primary key), audited."""
    values = {
        "period": period,
        "state": "closed",
        "cutoff": cutoff,
        "closed_at": closed_at,
        "actor": actor,
        "differences": differences,
        "forced_reason": forced_reason,
    }
    conn.execute(insert(periods).values(**values, report=report))
    audit.append(
        conn,
        actor=actor,
        action="period.close",
        target_type="period",
        target_id=period,
        before={"period": period, "state": "open"},
        after={k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()},
        detail={
            "cutoff": cutoff.isoformat(),
            "differences": differences,
            "forced_reason": forced_reason,
        },
    )
