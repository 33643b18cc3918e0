"""The dead-letter store over SQLAlchemy (``bus_dead_letters``): used by the SQL log and by
the NATS JetStream bus alike (JetStream has no dead-letter queue of its own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from medbridge.bus.consumer import format_traceback
from medbridge.bus.port import BusMessage, DeadLetter, DeadLetterFilter, DeadLetterStore
from medbridge.store import audit
from medbridge.store.sql import upsert
from medbridge.store.tables import bus_dead_letters


class SqlDeadLetterStore(DeadLetterStore):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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

    def mark_replayed(self, dead_letter_id: int, *, actor: str) -> None:
        with self.engine.begin() as conn:
            before = _state(conn, dead_letter_id)
            conn.execute(
                update(bus_dead_letters)
                .where(bus_dead_letters.c.id == dead_letter_id)
                .values(status="replayed", replayed_at=datetime.now(UTC))
            )
            _audit(conn, dead_letter_id, actor, "dead_letter.replay", before, {})

    def record_replay_failure(
        self, dead_letter_id: int, error: BaseException, attempts: int, *, actor: str
    ) -> None:
        with self.engine.begin() as conn:
            before = _state(conn, dead_letter_id)
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
            failure = {"error_type": type(error).__name__, "attempts": attempts}
            _audit(conn, dead_letter_id, actor, "dead_letter.replay_failed", before, failure)

    def dead_letter_count(self, group: str) -> int:
        t = bus_dead_letters
        stmt = select(func.count()).where(t.c.group == group, t.c.status == "dead")
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())


def _state(conn: Connection, dead_letter_id: int) -> dict[str, Any] | None:
    return audit.row_state(conn, bus_dead_letters, exclude=("traceback",), id=dead_letter_id)


def _audit(
    conn: Connection,
    dead_letter_id: int,
    actor: str,
    action: str,
    before: dict[str, Any] | None,
    extra: dict[str, Any],
) -> None:
    """One audit row: which event of which group, and the outcome (no payload: the event's
    data stays in the log, named by its id)."""
    after = _state(conn, dead_letter_id)
    about = after or before or {}
    audit.append(
        conn,
        actor=actor,
        action=action,
        target_type="dead_letter",
        target_id=dead_letter_id,
        before=before,
        after=after,
        detail={
            "group": about.get("group"),
            "event_id": about.get("event_id"),
            "event_type": about.get("event_type"),
            "subject": about.get("subject"),
        }
        | extra,
    )
