"""The ERP outbox: one row per (document, destination), for every outbound ERP call.

- A journal entry's rows are written in the entry's transaction (``enqueue``, called from
  ``ledger.record``), one per destination its GL route names (``flows.erp_routing``).
- A workflow step's document (a purchase order, its confirmation or cancellation, a goods
  receipt, a supplier invoice) is written by the step (``flows.erp_calls``) with its
  ``payload``; ``after`` names the document that must be posted on the same destination
  first (the order before its confirmation).

The ``ErpPosting`` worker of each destination claims its due rows, posts them and marks them.
A row's life: ``pending`` (due at ``next_attempt_at``) -> ``posted`` (with the ERP's id) or
``failed`` (the ERP refused the content: a dead letter with its reason; ``requeue`` after the
fix). With summarised GL posting (``domain.gl_summary``) a consumption entry's row is
``summarising`` instead: never claimed here; the summarizer (``flows.gl_summary``) of its
destination posts the summary of its slice and then marks it ``posted`` with the summary's
ERP move. ``claim`` leases due rows by pushing their ``next_attempt_at`` forward, so a worker
that dies mid-batch only delays them: the ERP's idempotency by reference makes the repeat
harmless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Table, and_, exists, func, or_, select, update

from medbridge.domain.erp_routing import DEFAULT_DESTINATION, ErpDomain, Role
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


class DocumentKind(StrEnum):
    """What an outbox row posts, and so which ERP call (``flows.erp_posting``)."""

    JOURNAL_ENTRY = "journal_entry"
    PURCHASE_ORDER = "purchase_order"
    """Create the order (idempotent by reference); payload: the ``PurchaseOrder``."""
    ORDER_CONFIRMATION = "order_confirmation"
    """Confirm the order ``after`` names, by its id in this ERP."""
    ORDER_CANCELLATION = "order_cancellation"
    """Cancel what is open of the order ``after`` names; payload: ``{"reason": ...}``."""
    GOODS_RECEIPT = "goods_receipt"
    """Payload: the ``GoodsReceipt`` (its order found by reference)."""
    SUPPLIER_INVOICE = "supplier_invoice"
    """Create and post; payload: the ``SupplierInvoice``."""


@dataclass(frozen=True)
class Delivery:
    """One outbox row to write: a document for one destination."""

    document: str
    destination: str
    kind: DocumentKind
    role: Role
    domain: ErpDomain
    facility: str | None = None
    summarising: bool = False
    payload: str | None = None
    after: str | None = None


@dataclass(frozen=True)
class Posting:
    document: str
    status: PostingStatus
    erp_id: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    posted_at: datetime | None
    created_at: datetime
    destination: str = DEFAULT_DESTINATION
    kind: DocumentKind = DocumentKind.JOURNAL_ENTRY
    role: Role = Role.RECORD
    domain: ErpDomain = ErpDomain.GL
    facility: str | None = None
    payload: str | None = None
    after: str | None = None
    result: str | None = None

    @property
    def entry_id(self) -> str:
        """The journal entry a GL posting posts (its ``document``)."""
        return self.document


_insert_postings = BulkInsert(
    erp_postings,
    (
        "document",
        "destination",
        "kind",
        "role",
        "domain",
        "facility",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "traceparent",
        "tracestate",
        "payload",
        "after",
    ),
)

_UNTRACED: tuple[str | None, str | None] = (None, None)


def enqueue(
    conn: Connection,
    deliveries: Sequence[Delivery],
    now: datetime,
    traces: Mapping[str, tuple[str | None, str | None]] | None = None,
) -> None:
    """A pending row per delivery (``summarising`` where it says so); call in the
    transaction that records the documents. ``traces``: per document, the W3C
    ``(traceparent, tracestate)`` its ERP call continues."""
    if deliveries:
        traces = traces or {}
        _insert_postings(
            conn,
            [
                {
                    "document": d.document,
                    "destination": d.destination,
                    "kind": d.kind.value,
                    "role": d.role.value,
                    "domain": d.domain.value,
                    "facility": d.facility,
                    "status": (
                        PostingStatus.SUMMARISING if d.summarising else PostingStatus.PENDING
                    ).value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "traceparent": trace[0],
                    "tracestate": trace[1],
                    "payload": d.payload,
                    "after": d.after,
                }
                for d in deliveries
                for trace in (traces.get(d.document, _UNTRACED),)
            ],
        )


def enqueue_missing(conn: Connection, deliveries: Sequence[Delivery], now: datetime) -> None:
    """``enqueue`` the deliveries that have no row yet (a workflow step run again)."""
    t = erp_postings
    fresh = [
        d
        for d in deliveries
        if conn.execute(
            select(t.c.document).where(t.c.document == d.document, t.c.destination == d.destination)
        ).first()
        is None
    ]
    enqueue(conn, fresh, now)


def trace_contexts(
    conn: Connection, destination: str, documents: Sequence[str]
) -> dict[str, tuple[str | None, str | None]]:
    """The ``(traceparent, tracestate)`` of the traced postings among ``documents``."""
    t = erp_postings
    found: dict[str, tuple[str | None, str | None]] = {}
    for chunk in chunks(documents):
        rows = conn.execute(
            select(t.c.document, t.c.traceparent, t.c.tracestate).where(
                t.c.destination == destination,
                t.c.document.in_(chunk),
                t.c.traceparent.is_not(None),
            )
        )
        found.update({r.document: (r.traceparent, r.tracestate) for r in rows})
    return found


def claim(
    conn: Connection, destination: str, limit: int, now: datetime, lease: timedelta
) -> list[Posting]:
    """Up to ``limit`` due pending rows of ``destination``, oldest due first, leased until
    ``now + lease``; a row whose ``after`` is not posted on the destination yet waits. On
    PostgreSQL concurrent workers skip each other's rows (``FOR UPDATE SKIP LOCKED``)."""
    t = erp_postings
    before = t.alias("before")
    waiting = exists().where(
        before.c.document == t.c.after,
        before.c.destination == t.c.destination,
        before.c.status != PostingStatus.POSTED.value,
    )
    stmt = (
        select(t)
        .where(
            t.c.destination == destination,
            t.c.status == PostingStatus.PENDING.value,
            t.c.next_attempt_at <= now,
            or_(t.c.after.is_(None), ~waiting),
        )
        .order_by(t.c.next_attempt_at, t.c.created_at, t.c.document)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=t, skip_locked=True)
    rows = [_posting(row) for row in conn.execute(stmt)]
    for chunk in chunks([r.document for r in rows]):
        conn.execute(
            update(t)
            .where(t.c.destination == destination, t.c.document.in_(chunk))
            .values(next_attempt_at=now + lease)
        )
    return rows


def release(conn: Connection, destination: str, documents: Sequence[str], at: datetime) -> None:
    """Give claimed rows back untried (the circuit opened mid-batch): due again at ``at``."""
    t = erp_postings
    for chunk in chunks(documents):
        conn.execute(
            update(t)
            .where(
                t.c.destination == destination,
                t.c.document.in_(chunk),
                t.c.status == PostingStatus.PENDING.value,
            )
            .values(next_attempt_at=at)
        )


def _key(destination: str, document: str) -> Any:
    t = erp_postings
    return and_(t.c.destination == destination, t.c.document == document)


def mark_posted(
    conn: Connection,
    destination: str,
    document: str,
    erp_id: str,
    now: datetime,
    result: str | None = None,
) -> None:
    t = erp_postings
    conn.execute(
        update(t)
        .where(_key(destination, document))
        .values(
            status=PostingStatus.POSTED.value,
            erp_id=erp_id,
            attempts=t.c.attempts + 1,
            posted_at=now,
            result=result,
        )
    )


def mark_retry(conn: Connection, destination: str, document: str, error: str, at: datetime) -> None:
    t = erp_postings
    conn.execute(
        update(t)
        .where(_key(destination, document))
        .values(attempts=t.c.attempts + 1, last_error=error[:2000], next_attempt_at=at)
    )


def mark_failed(conn: Connection, destination: str, document: str, error: str) -> None:
    t = erp_postings
    conn.execute(
        update(t)
        .where(_key(destination, document))
        .values(
            status=PostingStatus.FAILED.value, attempts=t.c.attempts + 1, last_error=error[:2000]
        )
    )


def requeue(
    conn: Connection, document: str, now: datetime, *, actor: str, destination: str | None = None
) -> bool:
    """A failed posting back to pending, due now (after the fix): of ``destination``, or of
    every destination where it failed. False if none was failed. Audited as ``actor``'s, with
    the error it had failed with."""
    t = erp_postings
    where = [t.c.document == document, t.c.status == PostingStatus.FAILED.value]
    if destination is not None:
        where.append(t.c.destination == destination)
    failed = list(conn.execute(select(t.c.destination).where(*where)).scalars())
    done = False
    for name in failed:
        done |= requeue_failed(
            conn,
            t,
            {"document": document, "destination": name},
            now,
            actor,
            "erp_posting",
        )
    return done


def requeue_failed(
    conn: Connection,
    table: Table,
    key: Mapping[str, str],
    now: datetime,
    actor: str,
    kind: str,
) -> bool:
    """A ``failed`` row of an outbox ``table`` (its ``key`` columns) back to ``pending``, due
    ``now``, audited as ``<kind>.requeue`` by ``actor`` with the error it had failed with;
    False if it was not failed. The ERP postings' and the GL summaries' requeue."""
    where: dict[str, Any] = dict(key)
    before = audit.row_state(conn, table, **where)
    result = conn.execute(
        update(table)
        .where(*(table.c[k] == v for k, v in key.items()))
        .where(table.c.status == PostingStatus.FAILED.value)
        .values(status=PostingStatus.PENDING.value, attempts=0, next_attempt_at=now)
    )
    if not result.rowcount:
        return False
    audit.append(
        conn,
        actor=actor,
        action=f"{kind}.requeue",
        target_type=kind,
        target_id=next(iter(key.values())),
        before=before,
        after=audit.row_state(conn, table, **where),
        detail={
            "last_error": (before or {}).get("last_error"),
            "destination": key.get("destination"),
        },
    )
    return True


# --- read side -----------------------------------------------------------------------------


def _posting(row: Any) -> Posting:
    return Posting(
        row.document,
        PostingStatus(row.status),
        row.erp_id,
        row.attempts,
        row.last_error,
        row.next_attempt_at,
        row.posted_at,
        row.created_at,
        row.destination,
        DocumentKind(row.kind),
        Role(row.role),
        ErpDomain(row.domain),
        row.facility,
        row.payload,
        row.after,
        row.result,
    )


def postings(
    conn: Connection,
    *,
    status: PostingStatus | None = None,
    entry_ids: Sequence[str] | None = None,
    facilities: frozenset[str] | None = None,
    destination: str | None = None,
    kind: DocumentKind | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[Posting]:
    """``entry_ids``: these documents only; ``facilities``: only the postings of entries
    whose every line is of these (and of other documents routed for them)."""
    t = erp_postings
    conditions: list[Any] = []
    if facilities is not None:
        conditions.append(_within(facilities))
    if status is not None:
        conditions.append(t.c.status == status.value)
    if entry_ids is not None:
        conditions.append(t.c.document.in_(entry_ids))
    if destination is not None:
        conditions.append(t.c.destination == destination)
    if kind is not None:
        conditions.append(t.c.kind == kind.value)
    stmt = (
        select(t)
        .where(*conditions)
        .order_by(t.c.created_at, t.c.document, t.c.destination)
        .limit(limit)
        .offset(offset)
    )
    return [_posting(row) for row in conn.execute(stmt)]


def get(conn: Connection, document: str, destination: str | None = None) -> Posting | None:
    """The row of ``document`` for ``destination`` (None: its system of record's)."""
    t = erp_postings
    stmt = select(t).where(t.c.document == document)
    stmt = stmt.where(
        t.c.destination == destination if destination is not None else t.c.role == "record"
    )
    row = conn.execute(stmt).first()
    return None if row is None else _posting(row)


def _outside(facilities: frozenset[str]) -> Any:
    """The entries with a line of another facility (a subquery)."""
    return select(journal_lines.c.entry_id).where(journal_lines.c.facility.not_in(facilities))


def _within(facilities: frozenset[str]) -> Any:
    t = erp_postings
    return or_(
        and_(
            t.c.kind == DocumentKind.JOURNAL_ENTRY.value, t.c.document.not_in(_outside(facilities))
        ),
        and_(t.c.kind != DocumentKind.JOURNAL_ENTRY.value, t.c.facility.in_(facilities)),
    )


def entry_facilities(conn: Connection, entry_id: str) -> set[str]:
    ln = journal_lines
    found = set(
        conn.execute(select(ln.c.facility).distinct().where(ln.c.entry_id == entry_id)).scalars()
    )
    if not found:  # a workflow document: the facility that routed it
        t = erp_postings
        found = {
            f
            for f in conn.execute(
                select(t.c.facility).distinct().where(t.c.document == entry_id)
            ).scalars()
            if f is not None
        }
    return found


def counts(
    conn: Connection, facilities: frozenset[str] | None = None, destination: str | None = None
) -> dict[PostingStatus, int]:
    t = erp_postings
    stmt = select(t.c.status, func.count()).group_by(t.c.status)
    if facilities is not None:
        stmt = stmt.where(_within(facilities))
    if destination is not None:
        stmt = stmt.where(t.c.destination == destination)
    found: dict[str, int] = {row[0]: row[1] for row in conn.execute(stmt)}
    return {s: int(found.get(s.value, 0)) for s in PostingStatus}


def counts_by_destination(
    conn: Connection, facilities: frozenset[str] | None = None
) -> dict[str, dict[PostingStatus, int]]:
    """``counts`` per destination (every destination with a row)."""
    t = erp_postings
    stmt = select(t.c.destination, t.c.status, func.count()).group_by(t.c.destination, t.c.status)
    if facilities is not None:
        stmt = stmt.where(_within(facilities))
    found: dict[str, dict[PostingStatus, int]] = {}
    for destination, status, n in conn.execute(stmt):
        found.setdefault(destination, dict.fromkeys(PostingStatus, 0))[PostingStatus(status)] = n
    return found


def oldest_pending(conn: Connection, facilities: frozenset[str] | None = None) -> datetime | None:
    """When the oldest posting still pending was written (None: nothing pending)."""
    t = erp_postings
    stmt = select(func.min(t.c.created_at, type_=t.c.created_at.type)).where(
        t.c.status == PostingStatus.PENDING.value
    )
    if facilities is not None:
        stmt = stmt.where(_within(facilities))
    oldest: datetime | None = conn.execute(stmt).scalar_one()
    return oldest


def next_due(conn: Connection, destination: str | None = None) -> datetime | None:
    """When the earliest pending posting is due (None: nothing pending)."""
    t = erp_postings
    stmt = select(func.min(t.c.next_attempt_at)).where(t.c.status == PostingStatus.PENDING.value)
    if destination is not None:
        stmt = stmt.where(t.c.destination == destination)
    due: datetime | None = conn.execute(stmt).scalar_one()
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
    conn: Connection,
    start: date,
    end: date,
    accounts: Sequence[str] | None = None,
    destination: str = DEFAULT_DESTINATION,
) -> list[LedgerLineRow]:
    """Every MedBridge journal line the ERP ``destination`` books, whose entry is dated in
    ``[start, end]`` as it books it (on ``accounts`` only, when given): the entries routed to
    it (an outbox row of it, any role), and the mirrors of the ERP documents it holds (a
    supplier invoice with a row of it, or sent before the outbox knew documents: none at
    all). A summarised entry is booked in its summary's move: its ``erp_document`` is the
    summary (reconciliation compares per summary) and its date the summary's, its slice's UTC
    date (a late entry's slice may be of a later day)."""
    e, ln, g, s, p = journal_entries, journal_lines, gl_summary_entries, gl_summaries, erp_postings
    first = datetime.combine(start, time(0), tzinfo=UTC)
    after = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC)
    routed = exists().where(p.c.document == e.c.entry_id, p.c.destination == destination)
    document_here = exists().where(p.c.document == e.c.erp_document, p.c.destination == destination)
    document_sent = exists().where(p.c.document == e.c.erp_document)
    conditions: list[Any] = [
        or_(
            and_(s.c.summary_id.is_(None), e.c.posting_date >= start, e.c.posting_date <= end),
            and_(s.c.slice_start >= first, s.c.slice_start < after),
        ),
        or_(
            and_(e.c.erp_document.is_(None), routed),
            and_(e.c.erp_document.is_not(None), or_(document_here, ~document_sent)),
        ),
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
        .outerjoin(g, and_(g.c.entry_id == e.c.entry_id, g.c.destination == destination))
        .outerjoin(s, and_(s.c.summary_id == g.c.summary_id, s.c.destination == g.c.destination))
        .where(*conditions)
        .order_by(e.c.entry_id, ln.c.line_no)
    )
    return [LedgerLineRow(*row) for row in conn.execute(stmt)]


@dataclass(frozen=True)
class DocumentOrigin:
    """Where MedBridge routed a document: its domain and facility."""

    document: str
    domain: ErpDomain
    facility: str | None


def document_origins(conn: Connection, documents: Sequence[str]) -> dict[str, DocumentOrigin]:
    """The domain and facility of each of ``documents`` MedBridge knows, by the reference an
    ERP books it under: an outbox row's document (any destination), a GL summary's id, the
    ERP document (a supplier invoice) that books a journal entry's mirror."""
    t, s, e, ln = erp_postings, gl_summaries, journal_entries, journal_lines
    found: dict[str, DocumentOrigin] = {}
    for chunk in chunks(sorted(set(documents))):
        for row in conn.execute(
            select(t.c.document, t.c.domain, t.c.facility)
            .where(t.c.document.in_(chunk))
            .order_by(t.c.document, t.c.role)  # record before shadow
        ):
            found.setdefault(
                row.document, DocumentOrigin(row.document, ErpDomain(row.domain), row.facility)
            )
        for row in conn.execute(
            select(s.c.summary_id, s.c.facility).where(s.c.summary_id.in_(chunk))
        ):
            found.setdefault(
                row.summary_id, DocumentOrigin(row.summary_id, ErpDomain.GL, row.facility)
            )
        for row in conn.execute(
            select(e.c.erp_document, ln.c.facility)
            .join(ln, ln.c.entry_id == e.c.entry_id)
            .where(e.c.erp_document.in_(chunk))
            .order_by(e.c.erp_document, ln.c.line_no)
        ):
            found.setdefault(
                row.erp_document,
                DocumentOrigin(row.erp_document, ErpDomain.INVOICES, row.facility),
            )
    return found
