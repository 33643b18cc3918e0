"""The ERP outbox: one row per journal entry, written in the journal entry's transaction
(``enqueue``, called from ``ledger.record``), then claimed, posted and marked by the
``ErpPosting`` worker.

A row's life: ``pending`` (due at ``next_attempt_at``) -> ``posted`` (with the ERP's id) or
``failed`` (the ERP refused the content: a dead letter with its reason; ``requeue`` after the
fix). With summarised GL posting (``domain.gl_summary``) a consumption entry's row is
``summarising`` instead: never claimed here; the summarizer (``flows.gl_summary``) posts the
summary of its slice and then marks it ``posted`` with the summary's ERP move. ``claim``
leases due rows by pushing their ``next_attempt_at`` forward, so a worker that dies mid-batch
only delays them: the ERP's idempotency by entry id makes the repeat harmless.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Table, and_, func, or_, select, update

from medbridge.store import audit
from medbridge.store.sql import BulkInsert, chunks
from medbridge.store.tables import (
    erp_postings,
    gl_summaries,
    gl_summary_entries,
    journal_entries,
    journal_lines,
)


class PostingStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    FAILED = "failed"
    SUMMARISING = "summarising"
    """Posted within its slice's summary (``gl_summaries``), not on its own; ``posted`` with
    the summary's ERP move once that is posted."""


@dataclass(frozen=True)
class Posting:
    entry_id: str
    status: PostingStatus
    erp_id: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    posted_at: datetime | None
    created_at: datetime


_insert_postings = BulkInsert(
    erp_postings,
    (
        "entry_id",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "traceparent",
        "tracestate",
    ),
)

_UNTRACED: tuple[str | None, str | None] = (None, None)


def enqueue(
    conn: Connection,
    entry_ids: Sequence[str],
    now: datetime,
    traces: Mapping[str, tuple[str | None, str | None]] | None = None,
    summarised: Collection[str] = (),
) -> None:
    """A pending posting per journal entry; call in the transaction that inserts them.
    ``traces``: per entry id, the W3C ``(traceparent, tracestate)`` its ERP call continues;
    ``summarised``: the entries posted in their slice's summary (``summarising``)."""
    if entry_ids:
        traces = traces or {}
        _insert_postings(
            conn,
            [
                {
                    "entry_id": entry_id,
                    "status": (
                        PostingStatus.SUMMARISING
                        if entry_id in summarised
                        else PostingStatus.PENDING
                    ).value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "traceparent": trace[0],
                    "tracestate": trace[1],
                }
                for entry_id in entry_ids
                for trace in (traces.get(entry_id, _UNTRACED),)
            ],
        )


def trace_contexts(
    conn: Connection, entry_ids: Sequence[str]
) -> dict[str, tuple[str | None, str | None]]:
    """The ``(traceparent, tracestate)`` of the traced postings among ``entry_ids``."""
    t = erp_postings
    found: dict[str, tuple[str | None, str | None]] = {}
    for chunk in chunks(entry_ids):
        rows = conn.execute(
            select(t.c.entry_id, t.c.traceparent, t.c.tracestate).where(
                t.c.entry_id.in_(chunk), t.c.traceparent.is_not(None)
            )
        )
        found.update({r.entry_id: (r.traceparent, r.tracestate) for r in rows})
    return found


def claim(conn: Connection, limit: int, now: datetime, lease: timedelta) -> list[str]:
    """Up to ``limit`` due pending entries, oldest due first, leased until ``now + lease``.
    On PostgreSQL concurrent workers skip each other's rows (``FOR UPDATE SKIP LOCKED``)."""
    t = erp_postings
    stmt = (
        select(t.c.entry_id)
        .where(t.c.status == PostingStatus.PENDING.value, t.c.next_attempt_at <= now)
        .order_by(t.c.next_attempt_at, t.c.entry_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(conn.execute(stmt).scalars())
    for chunk in chunks(ids):
        conn.execute(update(t).where(t.c.entry_id.in_(chunk)).values(next_attempt_at=now + lease))
    return ids


def release(conn: Connection, entry_ids: Sequence[str], at: datetime) -> None:
    """Give claimed rows back untried (the circuit opened mid-batch): due again at ``at``."""
    t = erp_postings
    for chunk in chunks(entry_ids):
        conn.execute(
            update(t)
            .where(t.c.entry_id.in_(chunk), t.c.status == PostingStatus.PENDING.value)
            .values(next_attempt_at=at)
        )


def mark_posted(conn: Connection, entry_id: str, erp_id: str, now: datetime) -> None:
    t = erp_postings
    conn.execute(
        update(t)
        .where(t.c.entry_id == entry_id)
        .values(
            status=PostingStatus.POSTED.value,
            erp_id=erp_id,
            attempts=t.c.attempts + 1,
            posted_at=now,
        )
    )


def mark_retry(conn: Connection, entry_id: str, error: str, at: datetime) -> None:
    t = erp_postings
    conn.execute(
        update(t)
        .where(t.c.entry_id == entry_id)
        .values(attempts=t.c.attempts + 1, last_error=error[:2000], next_attempt_at=at)
    )


def mark_failed(conn: Connection, entry_id: str, error: str) -> None:
    t = erp_postings
    conn.execute(
        update(t)
        .where(t.c.entry_id == entry_id)
        .values(
            status=PostingStatus.FAILED.value, attempts=t.c.attempts + 1, last_error=error[:2000]
        )
    )


def requeue(conn: Connection, entry_id: str, now: datetime, *, actor: str) -> bool:
    """A failed posting back to pending, due now (after the fix). False if not failed.
    Audited as ``actor``'s, with the error it had failed with."""
    return requeue_failed(conn, erp_postings, "entry_id", entry_id, now, actor, "erp_posting")


def requeue_failed(
    conn: Connection, table: Table, key: str, value: str, now: datetime, actor: str, kind: str
) -> bool:
    """A ``failed`` row of an outbox ``table`` (``key`` = ``value``) back to ``pending``, due
    ``now``, audited as ``<kind>.requeue`` by ``actor`` with the error it had failed with;
    False if it was not failed. The ERP postings' and the GL summaries' requeue."""
    where: dict[str, Any] = {key: value}
    before = audit.row_state(conn, table, **where)
    result = conn.execute(
        update(table)
        .where(table.c[key] == value, table.c.status == PostingStatus.FAILED.value)
        .values(status=PostingStatus.PENDING.value, attempts=0, next_attempt_at=now)
    )
    if not result.rowcount:
        return False
    audit.append(
        conn,
        actor=actor,
        action=f"{kind}.requeue",
        target_type=kind,
        target_id=value,
        before=before,
        after=audit.row_state(conn, table, **where),
        detail={"last_error": (before or {}).get("last_error")},
    )
    return True


# --- read side -----------------------------------------------------------------------------


def _posting(row: Any) -> Posting:
    return Posting(
        row.entry_id,
        PostingStatus(row.status),
        row.erp_id,
        row.attempts,
        row.last_error,
        row.next_attempt_at,
        row.posted_at,
        row.created_at,
    )


def postings(
    conn: Connection,
    *,
    status: PostingStatus | None = None,
    entry_ids: Sequence[str] | None = None,
    facilities: frozenset[str] | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[Posting]:
    """``facilities``: only the postings of entries whose every line is of these."""
    t = erp_postings
    conditions: list[Any] = []
    if facilities is not None:
        conditions.append(t.c.entry_id.not_in(_outside(facilities)))
    if status is not None:
        conditions.append(t.c.status == status.value)
    if entry_ids is not None:
        conditions.append(t.c.entry_id.in_(entry_ids))
    stmt = (
        select(t)
        .where(*conditions)
        .order_by(t.c.created_at, t.c.entry_id)
        .limit(limit)
        .offset(offset)
    )
    return [_posting(row) for row in conn.execute(stmt)]


def get(conn: Connection, entry_id: str) -> Posting | None:
    row = conn.execute(select(erp_postings).where(erp_postings.c.entry_id == entry_id)).first()
    return None if row is None else _posting(row)


def _outside(facilities: frozenset[str]) -> Any:
    """The entries with a line of another facility (a subquery)."""
    return select(journal_lines.c.entry_id).where(journal_lines.c.facility.not_in(facilities))


def entry_facilities(conn: Connection, entry_id: str) -> set[str]:
    ln = journal_lines
    return set(
        conn.execute(select(ln.c.facility).distinct().where(ln.c.entry_id == entry_id)).scalars()
    )


def counts(conn: Connection, facilities: frozenset[str] | None = None) -> dict[PostingStatus, int]:
    t = erp_postings
    stmt = select(t.c.status, func.count()).group_by(t.c.status)
    if facilities is not None:
        stmt = stmt.where(t.c.entry_id.not_in(_outside(facilities)))
    found: dict[str, int] = {row[0]: row[1] for row in conn.execute(stmt)}
    return {s: int(found.get(s.value, 0)) for s in PostingStatus}


def oldest_pending(conn: Connection, facilities: frozenset[str] | None = None) -> datetime | None:
    """When the oldest posting still pending was written (None: nothing pending)."""
    t = erp_postings
    stmt = select(func.min(t.c.created_at, type_=t.c.created_at.type)).where(
        t.c.status == PostingStatus.PENDING.value
    )
    if facilities is not None:
        stmt = stmt.where(t.c.entry_id.not_in(_outside(facilities)))
    oldest: datetime | None = conn.execute(stmt).scalar_one()
    return oldest


def next_due(conn: Connection) -> datetime | None:
    """When the earliest pending posting is due (None: nothing pending)."""
    t = erp_postings
    due: datetime | None = conn.execute(
        select(func.min(t.c.next_attempt_at)).where(t.c.status == PostingStatus.PENDING.value)
    ).scalar_one()
    return due


@dataclass(frozen=True)
class LedgerLineRow:
    """A MedBridge journal line as reconciliation compares it."""

    entry_id: str
    posting_date: date
    account: str
    cost_center: str | None
    debit: Decimal
    credit: Decimal
    party: str | None
    erp_document: str | None


def journal_lines_between(
    conn: Connection, start: date, end: date, accounts: Sequence[str] | None = None
) -> list[LedgerLineRow]:
    """Every MedBridge journal line whose entry is dated in ``[start, end]`` as the ERP books
    it (on ``accounts`` only, when given). A summarised entry is booked in its summary's move:
    its ``erp_document`` is the summary (reconciliation compares per summary) and its date
    the summary's, its slice's UTC date (a late entry's slice may be of a later day)."""
    e, ln, g, s = journal_entries, journal_lines, gl_summary_entries, gl_summaries
    first = datetime.combine(start, time(0), tzinfo=UTC)
    after = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC)
    conditions: list[Any] = [
        or_(
            and_(s.c.summary_id.is_(None), e.c.posting_date >= start, e.c.posting_date <= end),
            and_(s.c.slice_start >= first, s.c.slice_start < after),
        )
    ]
    if accounts is not None:
        conditions.append(ln.c.account.in_(list(accounts)))
    stmt = (
        select(
            e.c.entry_id,
            e.c.posting_date,
            ln.c.account,
            ln.c.cost_center,
            ln.c.debit,
            ln.c.credit,
            ln.c.party,
            func.coalesce(e.c.erp_document, g.c.summary_id),
        )
        .join(ln, ln.c.entry_id == e.c.entry_id)
        .outerjoin(g, g.c.entry_id == e.c.entry_id)
        .outerjoin(s, s.c.summary_id == g.c.summary_id)
        .where(*conditions)
        .order_by(e.c.entry_id, ln.c.line_no)
    )
    return [LedgerLineRow(*row) for row in conn.execute(stmt)]
