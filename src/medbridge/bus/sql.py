"""The embedded event log: the Bus port over SQLAlchemy, on SQLite (default) or PostgreSQL.

Sequence numbers must be committed in order, or a consumer could read seq 11 while seq 10 is
still uncommitted and skip it forever. SQLite serialises writers (BEGIN IMMEDIATE); on
PostgreSQL ``append`` takes an EXCLUSIVE lock on the table (readers are not blocked), the
approach of pyeventsourcing's PostgreSQL recorder.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select
from sqlalchemy.exc import DBAPIError, OperationalError

from medbridge.bus.dead_letters import SqlDeadLetterStore
from medbridge.bus.port import (
    AppendResult,
    Bus,
    BusError,
    BusMessage,
    BusUnavailable,
    DeadLetterStore,
    trace_parent,
)
from medbridge.bus.recorded import Recorded, settle
from medbridge.canonical.events import EventEnvelope
from medbridge.observability.metrics import APPEND_SECONDS
from medbridge.store import messages as message_store
from medbridge.store.sql import chunks, upsert
from medbridge.store.tables import bus_events, bus_positions

_MESSAGE_COLUMNS = (
    bus_events.c.seq,
    bus_events.c.partition,
    bus_events.c.id,
    bus_events.c.type,
    bus_events.c.subject,
    bus_events.c.idempotency_key,
    bus_events.c.correlation_id,
    bus_events.c.payload,
    bus_events.c.causation_id,
    bus_events.c.traceparent,
    bus_events.c.tracestate,
)


def _message(row: Any) -> BusMessage:
    return BusMessage(
        seq=row.seq,
        partition=row.partition,
        event_id=row.id,
        type=row.type,
        subject=row.subject,
        idempotency_key=row.idempotency_key,
        correlation_id=row.correlation_id,
        payload=row.payload,
        causation_id=row.causation_id,
        traceparent=row.traceparent or trace_parent(row.correlation_id, row.id),
        tracestate=row.tracestate or "",
    )


class SqlBus(Bus):
    """Duplicates are recognised forever (``bus_events.idempotency_key`` is unique). Dead
    letters go to ``bus_dead_letters`` of the same database unless another store is given."""

    def __init__(
        self,
        engine: Engine,
        partitions: int = 8,
        dead_letter_store: DeadLetterStore | None = None,
    ) -> None:
        self.engine, self.partitions = engine, partitions
        self.dead_letter_store = dead_letter_store or SqlDeadLetterStore(engine)
        self._sqlite = SqliteAppender(engine)

    def append(self, events: Sequence[EventEnvelope[Any]]) -> list[AppendResult]:
        return self.append_recorded(events, ())

    def append_recorded(
        self, events: Sequence[EventEnvelope[Any]], recorded: Sequence[Recorded]
    ) -> list[AppendResult]:
        """``append``, and the rows of the messages ``recorded`` in the same transaction
        (each settled from its events' results: ``bus.recorded.settle``)."""
        if not events and not recorded:
            return []
        if self.engine.dialect.name == "sqlite":
            return self._sqlite.append(events, self._row, recorded)
        try:
            with APPEND_SECONDS.time(), self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("LOCK TABLE bus_events IN EXCLUSIVE MODE")
                known: dict[str, tuple[str, int, str]] = {}
                keys = [e.idempotency_key for e in events]
                for chunk in chunks(keys):
                    rows = conn.execute(
                        select(
                            bus_events.c.idempotency_key,
                            bus_events.c.id,
                            bus_events.c.seq,
                            bus_events.c.correlation_id,
                        ).where(bus_events.c.idempotency_key.in_(chunk))
                    )
                    known.update({r.idempotency_key: (r.id, r.seq, r.correlation_id) for r in rows})
                now = datetime.now(UTC)
                fresh: list[dict[str, Any]] = []
                pending: set[str] = set()
                for event in events:
                    key = event.idempotency_key
                    if key in known or key in pending:
                        continue
                    pending.add(key)
                    fresh.append(self._row(event, now))
                if fresh:
                    stmt = insert(bus_events).returning(
                        bus_events.c.idempotency_key,
                        bus_events.c.id,
                        bus_events.c.seq,
                        bus_events.c.correlation_id,
                        sort_by_parameter_order=True,
                    )
                    inserted = conn.execute(stmt, fresh).all()
                else:
                    inserted = []
                new = {r.idempotency_key: (r.id, r.seq, r.correlation_id) for r in inserted}
                results = _results(events, new, known)
                message_store.write(conn, settle(recorded, events, results))
        except OperationalError as error:
            raise BusUnavailable(f"event log unavailable: {error.orig}") from error
        except DBAPIError as error:  # e.g. a constraint violation: the batch was rolled back
            raise BusError(f"event log refused the batch: {error.orig}") from error
        return results

    def _row(self, event: EventEnvelope[Any], now: datetime) -> dict[str, Any]:
        return {
            "id": str(event.id),
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "partition": self.partition_of(event.subject),
            "idempotency_key": event.idempotency_key,
            "correlation_id": str(event.correlation_id),
            "causation_id": str(event.causation_id) if event.causation_id else None,
            "time": event.time,
            "appended_at": now,
            "payload": event.model_dump_json(),
            "traceparent": event.traceparent,
            "tracestate": event.tracestate,
        }

    def fetch(self, group: str, partition: int, limit: int) -> list[BusMessage]:
        position = (
            select(bus_positions.c.position)
            .where(bus_positions.c.group == group, bus_positions.c.partition == partition)
            .scalar_subquery()
        )
        stmt = (
            select(*_MESSAGE_COLUMNS)
            .where(
                bus_events.c.partition == partition,
                bus_events.c.seq > func.coalesce(position, 0),
            )
            .order_by(bus_events.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_message(r) for r in conn.execute(stmt)]

    def commit(self, group: str, partition: int, seq: int) -> None:
        with self.engine.begin() as conn:
            upsert(
                conn,
                bus_positions,
                [{"group": group, "partition": partition, "position": seq}],
                keys=("group", "partition"),
            )

    def get(self, seq: int) -> BusMessage | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_MESSAGE_COLUMNS).where(bus_events.c.seq == seq)).first()
        return None if row is None else _message(row)

    def lag(self, group: str) -> int:
        p = bus_positions
        stmt = (
            select(func.count())
            .select_from(bus_events)
            .outerjoin(p, and_(p.c.group == group, p.c.partition == bus_events.c.partition))
            .where(or_(p.c.position.is_(None), bus_events.c.seq > p.c.position))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def oldest_unconsumed(self, group: str) -> datetime | None:
        p = bus_positions
        stmt = (
            select(func.min(bus_events.c.appended_at, type_=bus_events.c.appended_at.type))
            .select_from(bus_events)
            .outerjoin(p, and_(p.c.group == group, p.c.partition == bus_events.c.partition))
            .where(or_(p.c.position.is_(None), bus_events.c.seq > p.c.position))
        )
        with self.engine.connect() as conn:
            oldest: datetime | None = conn.execute(stmt).scalar_one()
        return oldest


_COLUMNS = (
    "id",
    "type",
    "source",
    "subject",
    "partition",
    "idempotency_key",
    "correlation_id",
    "causation_id",
    "time",
    "appended_at",
    "payload",
    "traceparent",
    "tracestate",
)


PER_STATEMENT = 2500
"""Rows per INSERT: 2,500 x 13 values, inside SQLite's 32,766 variables."""


class SqliteAppender:
    """The SQLite log's append, on one connection of its own, as one driver-level statement
    ``INSERT ... VALUES (...), (...) ON CONFLICT (idempotency_key) DO NOTHING RETURNING``
    (its own transaction); only the keys that came back as duplicates are looked up
    afterwards (their originals are committed).

    Why not SQLAlchemy Core here (measured, py-spy --gil, 32 MLLP connections): building,
    cache-keying and compiling the SELECT-then-INSERT and checking a connection out of the
    pool took over half of the GIL time of the group-commit writer, which capped ingest at
    about 1,500 messages/s. Values still go through the columns' own SQLAlchemy bind
    processors (``UTCDateTime``), so what is stored is what Core would store.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        binds = {c: bus_events.c[c].type.bind_processor(engine.dialect) for c in _COLUMNS}
        self._binds = [binds[c] for c in _COLUMNS]
        columns = ", ".join(_COLUMNS)  # constants: no input reaches the text
        self._head = f"INSERT INTO bus_events ({columns}) VALUES "  # noqa: S608
        self._one = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
        self._tail = (
            " ON CONFLICT (idempotency_key) DO NOTHING"
            " RETURNING idempotency_key, id, seq, correlation_id"
        )

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self.engine.connect()
        return self._conn

    def _params(self, row: dict[str, Any]) -> list[Any]:
        return [
            bind(row[c]) if bind is not None else row[c]
            for c, bind in zip(_COLUMNS, self._binds, strict=True)
        ]

    def append(
        self,
        events: Sequence[EventEnvelope[Any]],
        to_row: Callable[[EventEnvelope[Any], datetime], dict[str, Any]],
        recorded: Sequence[Recorded] = (),
    ) -> list[AppendResult]:
        now = datetime.now(UTC)
        rows = [to_row(e, now) for e in events]
        with self._lock, APPEND_SECONDS.time():
            try:
                raw = self._connection().connection.driver_connection
                assert raw is not None
                if recorded:
                    return self._append_recorded(raw, events, rows, recorded)
                new = self._insert(raw, rows)
                missing = sorted({e.idempotency_key for e in events} - new.keys())
                known = self._originals(raw, missing)
            except sqlite3.OperationalError as error:
                self._drop()
                raise BusUnavailable(f"event log unavailable: {error}") from error
            except sqlite3.DatabaseError as error:  # a constraint: nothing was stored
                raise BusError(f"event log refused the batch: {error}") from error
        return _results(events, new, known)

    def _append_recorded(
        self,
        raw: Any,
        events: Sequence[EventEnvelope[Any]],
        rows: list[dict[str, Any]],
        recorded: Sequence[Recorded],
    ) -> list[AppendResult]:
        """The events and the rows of their messages in ONE transaction: a message is never
        applied without its row, nor has a row without its events."""
        raw.execute("BEGIN IMMEDIATE")
        try:
            new = self._insert(raw, rows, in_transaction=True)
            missing = sorted({e.idempotency_key for e in events} - new.keys())
            results = _results(events, new, self._originals(raw, missing))
            message_store.write_sqlite(raw, settle(recorded, events, results))
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
        return results

    def _insert(
        self, raw: Any, rows: list[dict[str, Any]], *, in_transaction: bool = False
    ) -> dict[str, tuple[str, int, str]]:
        """One statement, its own transaction (autocommit: one call into SQLite, and one
        wait for the GIL after the fsync, not three); a batch too large for one statement
        runs in an explicit transaction."""
        new: dict[str, tuple[str, int, str]] = {}
        single = len(rows) <= PER_STATEMENT or in_transaction
        if not single:
            raw.execute("BEGIN IMMEDIATE")
        try:
            for at in range(0, len(rows), PER_STATEMENT):
                part = rows[at : at + PER_STATEMENT]
                sql = self._head + ", ".join([self._one] * len(part)) + self._tail
                params = tuple(v for row in part for v in self._params(row))
                for r in raw.execute(sql, params).fetchall():
                    new[r[0]] = (r[1], r[2], r[3])
            if not single:
                raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
        return new

    def _originals(self, raw: Any, keys: list[str]) -> dict[str, tuple[str, int, str]]:
        """The stored originals of the keys that came back as duplicates (committed)."""
        known: dict[str, tuple[str, int, str]] = {}
        for chunk in chunks(keys):
            marks = ", ".join("?" * len(chunk))
            rows = raw.execute(
                "SELECT idempotency_key, id, seq, correlation_id FROM bus_events "  # noqa: S608
                f"WHERE idempotency_key IN ({marks})",
                tuple(chunk),
            ).fetchall()
            known.update({r[0]: (r[1], r[2], r[3]) for r in rows})
        return known

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _results(
    events: Sequence[EventEnvelope[Any]],
    new: dict[str, tuple[str, int, str]],
    known: dict[str, tuple[str, int, str]],
) -> list[AppendResult]:
    """Per event: appended (the first occurrence of a key this call inserted) or a duplicate
    (the original's id, seq and correlation)."""
    results = []
    stored: set[str] = set()
    for event in events:
        key = event.idempotency_key
        if key in new and key not in stored and new[key][0] == str(event.id):
            stored.add(key)
            results.append(AppendResult(event.id, new[key][1], False, UUID(new[key][2])))
        else:
            event_id, seq, correlation = known.get(key) or new[key]
            results.append(AppendResult(UUID(event_id), seq, True, UUID(correlation)))
    return results
