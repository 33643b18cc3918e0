"""The embedded event log: the Bus port over SQLAlchemy, on SQLite (default) or PostgreSQL.

Sequence numbers must be committed in order, or a consumer could read seq 11 while seq 10 is
still uncommitted and skip it forever. SQLite serialises writers (BEGIN IMMEDIATE); on
PostgreSQL ``append`` takes an EXCLUSIVE lock on the table (readers are not blocked), the
approach of pyeventsourcing's PostgreSQL recorder.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from medbridge.bus.consumer import format_traceback
from medbridge.bus.port import (
    AppendResult,
    Bus,
    BusError,
    BusMessage,
    BusUnavailable,
    DeadLetter,
    DeadLetterFilter,
)
from medbridge.canonical.events import EventEnvelope
from medbridge.observability.metrics import APPEND_SECONDS
from medbridge.store.sql import chunks, upsert
from medbridge.store.tables import bus_dead_letters, bus_events, bus_positions

_MESSAGE_COLUMNS = (
    bus_events.c.seq,
    bus_events.c.partition,
    bus_events.c.id,
    bus_events.c.type,
    bus_events.c.subject,
    bus_events.c.idempotency_key,
    bus_events.c.correlation_id,
    bus_events.c.payload,
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
    )


class SqlBus(Bus):
    def __init__(self, engine: Engine, partitions: int = 8) -> None:
        self.engine, self.partitions = engine, partitions

    def append(self, events: Sequence[EventEnvelope[Any]]) -> list[AppendResult]:
        if not events:
            return []
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
        except OperationalError as error:
            raise BusUnavailable(f"event log unavailable: {error.orig}") from error
        except DBAPIError as error:  # e.g. a constraint violation: the batch was rolled back
            raise BusError(f"event log refused the batch: {error.orig}") from error
        new = {r.idempotency_key: (r.id, r.seq, r.correlation_id) for r in inserted}
        results = []
        stored: set[str] = set()  # keys whose first occurrence in this call was inserted
        for event in events:
            key = event.idempotency_key
            if key in new and key not in stored:
                stored.add(key)
                results.append(AppendResult(event.id, new[key][1], False, UUID(new[key][2])))
            else:
                event_id, seq, correlation = known.get(key) or new[key]
                results.append(AppendResult(UUID(event_id), seq, True, UUID(correlation)))
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

    def dead_letter(
        self,
        group: str,
        message: BusMessage,
        error: BaseException,
        attempts: int,
        context: dict[str, Any],
    ) -> None:
        row = {
            "group": group,
            "event_seq": message.seq,
            "event_id": message.event_id,
            "event_type": message.type,
            "subject": message.subject,
            "correlation_id": message.correlation_id,
            "error_type": type(error).__name__,
            "error": str(error)[:4000],
            "traceback": format_traceback(error)[-8000:],
            "attempts": attempts,
            "context": context,
            "status": "dead",
            "dead_at": datetime.now(UTC),
            "replayed_at": None,
        }
        with self.engine.begin() as conn:
            upsert(conn, bus_dead_letters, [row], keys=("group", "event_id"))

    def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        t = bus_dead_letters
        conditions = []
        if selection.group is not None:
            conditions.append(t.c.group == selection.group)
        if selection.ids is not None:
            conditions.append(t.c.id.in_(selection.ids))
        if selection.event_type is not None:
            conditions.append(t.c.event_type == selection.event_type)
        if selection.subject is not None:
            conditions.append(t.c.subject == selection.subject)
        if selection.error_type is not None:
            conditions.append(t.c.error_type == selection.error_type)
        if selection.status is not None:
            conditions.append(t.c.status == selection.status)
        stmt = select(t).where(*conditions).order_by(t.c.id).limit(selection.limit)
        with self.engine.connect() as conn:
            return [DeadLetter(**row._mapping) for row in conn.execute(stmt)]

    def mark_replayed(self, dead_letter_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(bus_dead_letters)
                .where(bus_dead_letters.c.id == dead_letter_id)
                .values(status="replayed", replayed_at=datetime.now(UTC))
            )

    def record_replay_failure(
        self, dead_letter_id: int, error: BaseException, attempts: int
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(bus_dead_letters)
                .where(bus_dead_letters.c.id == dead_letter_id)
                .values(
                    error_type=type(error).__name__,
                    error=str(error)[:4000],
                    traceback=format_traceback(error)[-8000:],
                    attempts=attempts,
                )
            )

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

    def dead_letter_count(self, group: str) -> int:
        t = bus_dead_letters
        stmt = select(func.count()).where(t.c.group == group, t.c.status == "dead")
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())
