"""The message store: write message rows (in the caller's transaction), search them on the
keyset (received_at, id) newest first, read one with its body, and prune bodies.

Writes happen inside the transaction of what the message caused: the event log's append
(``bus.sql``: the group commit's transaction), the exception queue's park, or alone for a
message that stores nothing else (a refusal). ``MessageRecorder`` is the alone case, and the
fallback for a log that is not in this database (JetStream: the rows are written right after
the server stored the events, before any caller is answered).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)

from medbridge.canonical.messages import MessageFilter, MessageRecord, MessageStatus
from medbridge.store.sql import BulkInsert, chunks
from medbridge.store.tables import (
    bus_dead_letters,
    bus_events,
    message_bodies,
    messages,
    trade_documents,
)

MAX_BODY_CHARS = 4_000_000
"""A body longer than this is stored cut (junk floods must not fill the disk)."""

_MESSAGE_COLUMNS = (
    "id",
    "received_at",
    "direction",
    "protocol",
    "connector",
    "sender",
    "message_type",
    "control_id",
    "business_key",
    "facility",
    "status",
    "correlation_id",
    "idempotency_key",
    "event_count",
    "ack",
    "error",
)
_BODY_COLUMNS = ("message_id", "connector", "received_at", "media_type", "body")

insert_messages = BulkInsert(messages, _MESSAGE_COLUMNS, dialect_binds=True)
insert_bodies = BulkInsert(message_bodies, _BODY_COLUMNS, dialect_binds=True)


def _cut(value: str | None, size: int) -> str:
    return (value or "")[:size]


def message_row(r: MessageRecord) -> dict[str, Any]:
    if r.status is None:
        raise ValueError(f"message {r.id} has no status to store")
    return {
        "id": r.id,
        "received_at": r.received_at,
        "direction": str(r.direction),
        "protocol": _cut(r.protocol, 16),
        "connector": _cut(r.connector, 64),
        "sender": _cut(r.sender, 200),
        "message_type": _cut(r.message_type, 64),
        "control_id": _cut(r.control_id, 200),
        "business_key": _cut(r.business_key, 200),
        "facility": r.facility[:64] if r.facility else None,
        "status": str(r.status),
        "correlation_id": r.correlation_id[:36] if r.correlation_id else None,
        "idempotency_key": r.idempotency_key[:200] if r.idempotency_key else None,
        "event_count": r.event_count,
        "ack": r.ack,
        "error": r.error,
    }


def body_row(r: MessageRecord) -> dict[str, Any]:
    return {
        "message_id": r.id,
        "connector": _cut(r.connector, 64),
        "received_at": r.received_at,
        "media_type": _cut(r.media_type, 64),
        "body": r.raw[:MAX_BODY_CHARS],
    }


def write(conn: Connection, records: Sequence[MessageRecord]) -> None:
    """Insert the rows and bodies of ``records`` (each settled: a status) in ``conn``'s
    transaction."""
    if records:
        insert_messages(conn, [message_row(r) for r in records])
        insert_bodies(conn, [body_row(r) for r in records])


def sqlite_time(at: datetime) -> str:
    """``at`` as SQLAlchemy's SQLite DATETIME stores it (UTC, microseconds always), so that
    rows written here compare with Core's parameters (``test_message_store`` checks it)."""
    u = at.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d} "
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}"
    )


_SQLITE_MESSAGES = (
    f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) "  # noqa: S608 (constants)
    f"VALUES ({', '.join('?' * len(_MESSAGE_COLUMNS))})"
)
_SQLITE_BODIES = (
    f"INSERT INTO message_bodies ({', '.join(_BODY_COLUMNS)}) "  # noqa: S608 (constants)
    f"VALUES ({', '.join('?' * len(_BODY_COLUMNS))})"
)


def write_sqlite(driver: Any, records: Sequence[MessageRecord]) -> None:
    """``write`` on SQLite's own driver connection, inside the transaction ``bus.sql``'s
    append runs there: the values as tuples in column order, without SQLAlchemy's per-row
    parameter processing (measured: 32 us a message through ``BulkInsert``, most of the
    message rows' cost on the group commit's writer thread)."""
    if not records:
        return
    messages_, bodies = [], []
    for r in records:
        row = message_row(r)
        at = sqlite_time(r.received_at)
        row["received_at"] = at
        messages_.append(tuple(row[c] for c in _MESSAGE_COLUMNS))
        bodies.append((r.id, row["connector"], at, r.media_type[:64], r.raw[:MAX_BODY_CHARS]))
    driver.executemany(_SQLITE_MESSAGES, messages_)
    driver.executemany(_SQLITE_BODIES, bodies)


def set_ack(conn: Connection, message_id: str, ack: str) -> None:
    conn.execute(update(messages).where(messages.c.id == message_id).values(ack=ack))


class MessageRecorder:
    """Writes rows in transactions of their own (refusals; the rows of a log outside this
    database)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, records: Sequence[MessageRecord]) -> None:
        if records:
            with self.engine.begin() as conn:
                write(conn, records)

    def set_ack(self, message_id: str, ack: str) -> None:
        with self.engine.begin() as conn:
            set_ack(conn, message_id, ack)


# --- read side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """A position on the keyset (received_at, id): the last row of the page before."""

    received_at: datetime
    id: str

    def encode(self) -> str:
        text = f"{self.received_at.isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """``ValueError`` for anything that is not a cursor this module made."""
        try:
            padded = token + "=" * (-len(token) % 4)
            at, _, ident = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
            when = datetime.fromisoformat(at)
        except (binascii.Error, UnicodeDecodeError, ValueError) as error:
            raise ValueError("not a cursor of this listing") from error
        if when.tzinfo is None or not ident or len(ident) > 36:
            raise ValueError("not a cursor of this listing")
        return cls(when, ident)


def _dead_correlations() -> Any:
    return select(bus_dead_letters.c.correlation_id).where(bus_dead_letters.c.status == "dead")


def conditions(f: MessageFilter) -> list[ColumnElement[bool]]:
    """The WHERE terms of ``f`` (each served by an index ending in received_at, id)."""
    m = messages.c
    found: list[ColumnElement[bool]] = []
    for column, value in (
        (m.control_id, f.control_id),
        (m.business_key, f.business_key),
        (m.sender, f.sender),
        (m.protocol, f.protocol),
        (m.message_type, f.message_type),
        (m.direction, f.direction),
        (m.connector, f.connector),
    ):
        if value is not None:
            found.append(column == value)
    if f.status == MessageStatus.DEAD_LETTERED:
        found.append(m.correlation_id.in_(_dead_correlations()))
    elif f.status is not None:
        found.append(m.status == f.status)
    if f.since is not None:
        found.append(m.received_at >= f.since)
    if f.until is not None:
        found.append(m.received_at < f.until)
    if f.facilities is not None:
        found.append(m.facility.in_(sorted(f.facilities)))
    return found


def _after(cursor: Cursor) -> ColumnElement[bool]:
    """Strictly older than ``cursor`` on (received_at, id), written so that the first term
    is an index range on both engines (a row-value or a bare OR is not, on SQLite)."""
    m = messages.c
    return and_(
        m.received_at <= cursor.received_at,
        or_(m.received_at < cursor.received_at, m.id < cursor.id),
    )


def _dead_letter_waiting() -> Any:
    d = bus_dead_letters.c
    waiting = select(d.id).where(d.correlation_id == messages.c.correlation_id, d.status == "dead")
    return waiting.exists().label("dead_lettered")


def search(
    conn: Connection, f: MessageFilter, after: Cursor | None = None, limit: int = 50
) -> list[Any]:
    """Rows matching ``f``, newest first, ``limit`` of them after ``after``; each with
    ``dead_lettered`` (a dead letter of its correlation is waiting)."""
    where = conditions(f)
    if after is not None:
        where.append(_after(after))
    query = (
        select(messages, _dead_letter_waiting())
        .where(*where)
        .order_by(messages.c.received_at.desc(), messages.c.id.desc())
        .limit(limit)
    )
    return list(conn.execute(query))


def count(conn: Connection, f: MessageFilter) -> int:
    query = select(func.count()).select_from(messages).where(*conditions(f))
    return int(conn.execute(query).scalar_one())


def ids(conn: Connection, f: MessageFilter, limit: int) -> list[str]:
    """The ids matching ``f``, oldest first (the order a reprocess feeds them in)."""
    query = (
        select(messages.c.id)
        .where(*conditions(f))
        .order_by(messages.c.received_at, messages.c.id)
        .limit(limit)
    )
    return [r.id for r in conn.execute(query)]


def get(conn: Connection, message_id: str) -> Any | None:
    return conn.execute(select(messages).where(messages.c.id == message_id)).first()


def body(conn: Connection, message_id: str) -> Any | None:
    query = select(message_bodies).where(message_bodies.c.message_id == message_id)
    return conn.execute(query).first()


TRADE_PROTOCOLS = ("x12", "cxml")
MAX_EVENTS = 500


def events_of(conn: Connection, row: Any) -> list[Any]:
    """The events a message appended (a duplicate: the original's), oldest first: by key
    (``<idempotency_key>#<n>``, the inbound intake's), or for an interchange through its
    trade documents."""
    if not row.idempotency_key or not row.event_count:
        return []
    if row.protocol in TRADE_PROTOCOLS:
        ids = select(trade_documents.c.event_id).where(
            trade_documents.c.interchange == row.idempotency_key
        )
        where = bus_events.c.id.in_(ids)
    else:
        count = min(row.event_count, MAX_EVENTS)
        where = bus_events.c.idempotency_key.in_(
            [f"{row.idempotency_key}#{n}" for n in range(count)]
        )
    query = select(bus_events).where(where).order_by(bus_events.c.seq).limit(MAX_EVENTS)
    return list(conn.execute(query))


def dead_letters_of(conn: Connection, correlation_id: str) -> list[Any]:
    query = (
        select(bus_dead_letters)
        .where(bus_dead_letters.c.correlation_id == correlation_id)
        .order_by(bus_dead_letters.c.id)
    )
    return list(conn.execute(query))


# --- retention -----------------------------------------------------------------------------


def expired_bodies(
    conn: Connection, connector: str | None, before: datetime, limit: int, others: Sequence[str]
) -> list[Any]:
    """Up to ``limit`` bodies received before ``before``, oldest first: of ``connector``, or
    (None) of every connector not in ``others`` (those have an age of their own)."""
    b = message_bodies.c
    where: list[ColumnElement[bool]] = [b.received_at < before]
    if connector is not None:
        where.append(b.connector == connector)
    elif others:
        where.append(b.connector.not_in(list(others)))
    query = select(message_bodies).where(*where).order_by(b.received_at).limit(limit)
    return list(conn.execute(query))


def drop_bodies(conn: Connection, message_ids: Sequence[str]) -> int:
    dropped = 0
    for chunk in chunks(list(message_ids)):
        result = conn.execute(delete(message_bodies).where(message_bodies.c.message_id.in_(chunk)))
        dropped += result.rowcount
    return dropped


def applied_after_park(
    conn: Connection, idempotency_key: str, correlation_id: str, event_count: int
) -> None:
    """A parked message's exception was replayed and applied: its rows say so now (found
    among the parked rows: ``idempotency_key`` has no index of its own)."""
    conn.execute(
        update(messages)
        .where(messages.c.idempotency_key == idempotency_key, messages.c.status == "parked")
        .values(status="applied", correlation_id=correlation_id, event_count=event_count)
    )


@dataclass(frozen=True)
class MinuteCount:
    minute: datetime  # the minute's start, UTC
    protocol: str
    status: str
    count: int


def per_minute(
    conn: Connection, since: datetime, facilities: frozenset[str] | None = None
) -> list[MinuteCount]:
    """How many messages arrived in each minute from ``since``, per protocol and stored
    status (the dashboard's charts): one range scan of ``ix_messages_received``, grouped in
    the database. The console asks for the last hour only."""
    m = messages.c
    if conn.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (sqlite_time)
        bucket: ColumnElement[Any] = func.substr(m.received_at, 1, 16)
    else:
        bucket = func.date_trunc("minute", m.received_at)
    query = (
        select(bucket.label("minute"), m.protocol, m.status, func.count().label("n"))
        .where(m.received_at >= since)
        .group_by(bucket, m.protocol, m.status)
        .order_by(bucket)
    )
    if facilities is not None:
        query = query.where(m.facility.in_(sorted(facilities)))
    found = []
    for row in conn.execute(query):
        minute = row.minute
        if isinstance(minute, str):
            minute = datetime.fromisoformat(minute).replace(tzinfo=UTC)
        elif minute.tzinfo is None:
            minute = minute.replace(tzinfo=UTC)
        found.append(MinuteCount(minute, row.protocol, row.status, int(row.n)))
    return found


@dataclass(frozen=True)
class SenderActivity:
    """One partner or sender of one protocol over a window: its messages by stored status,
    its last message and its last error."""

    protocol: str
    connector: str
    sender: str
    counts: dict[str, int]
    last_at: datetime
    last_error: str | None
    last_error_at: datetime | None


def senders(
    conn: Connection, since: datetime, facilities: frozenset[str] | None = None
) -> list[SenderActivity]:
    """Every sender (and outbound partner) with a message from ``since``: the console's
    partners and connectors page (two range scans of ``ix_messages_received``)."""
    m = messages.c
    scope = [m.received_at >= since]
    if facilities is not None:
        scope.append(m.facility.in_(sorted(facilities)))
    totals: dict[tuple[str, str, str], dict[str, Any]] = {}
    grouped = (
        select(m.protocol, m.connector, m.sender, m.status, func.count(), func.max(m.received_at))
        .where(*scope)
        .group_by(m.protocol, m.connector, m.sender, m.status)
    )
    for protocol, connector, sender, status, n, last in conn.execute(grouped):
        key = (protocol, connector, sender)
        entry = totals.setdefault(key, {"counts": {}, "last": last})
        entry["counts"][status] = int(n)
        entry["last"] = max(entry["last"], last)
    errors: dict[tuple[str, str, str], tuple[str | None, datetime | None]] = {}
    failed = (
        select(m.protocol, m.connector, m.sender, m.error, m.received_at)
        .where(*scope, m.error.is_not(None))
        .order_by(m.received_at.desc())
        .limit(2000)
    )
    for protocol, connector, sender, error, at in conn.execute(failed):
        errors.setdefault((protocol, connector, sender), (error, at))
    found = []
    for key, entry in sorted(totals.items()):
        error, error_at = errors.get(key, (None, None))
        found.append(
            SenderActivity(
                *key,
                counts=entry["counts"],
                last_at=_aware(entry["last"]),
                last_error=error,
                last_error_at=None if error_at is None else _aware(error_at),
            )
        )
    return found


def _aware(at: datetime | str) -> datetime:
    if isinstance(at, str):  # SQLite's aggregate answers the stored text
        at = datetime.fromisoformat(at)
    return at if at.tzinfo else at.replace(tzinfo=UTC)
