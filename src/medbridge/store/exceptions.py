"""The inbound exception queue: messages whose codes did not resolve, kept whole with their
problems until a cross-reference is added and they are replayed (or discarded)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from medbridge.store import audit
from medbridge.store.tables import inbound_exceptions as t


@dataclass(frozen=True)
class InboundException:
    id: int
    source: str
    source_system: str
    idempotency_key: str
    problems: list[dict[str, Any]]
    drafts: list[dict[str, Any]]
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolution: str | None


def park(
    conn: Connection,
    *,
    source: str,
    source_system: str,
    idempotency_key: str,
    problems: Sequence[dict[str, Any]],
    drafts: Sequence[dict[str, Any]],
) -> tuple[int, bool]:
    """Store an exception once per idempotency key; return its id and whether it is new."""
    existing = conn.execute(select(t.c.id).where(t.c.idempotency_key == idempotency_key)).scalar()
    if existing is not None:
        return int(existing), False
    new_id = conn.execute(
        insert(t)
        .values(
            source=source,
            source_system=source_system,
            idempotency_key=idempotency_key,
            problems=list(problems),
            drafts=list(drafts),
            status="open",
            created_at=datetime.now(UTC),
        )
        .returning(t.c.id)
    ).scalar_one()
    return int(new_id), True


def get(
    conn: Connection, exception_id: int, *, for_update: bool = False
) -> InboundException | None:
    """``for_update``: the row locked until the transaction ends (PostgreSQL; SQLite
    serialises writers anyway)."""
    query = select(t).where(t.c.id == exception_id)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    return None if row is None else InboundException(**row._mapping)


def by_key(conn: Connection, idempotency_key: str) -> InboundException | None:
    row = conn.execute(select(t).where(t.c.idempotency_key == idempotency_key)).first()
    return None if row is None else InboundException(**row._mapping)


def listing(
    conn: Connection,
    *,
    status: str | None = "open",
    source_system: str | None = None,
    limit: int = 200,
) -> list[InboundException]:
    conditions = []
    if status is not None:
        conditions.append(t.c.status == status)
    if source_system is not None:
        conditions.append(t.c.source_system == source_system)
    rows = conn.execute(select(t).where(*conditions).order_by(t.c.id).limit(limit))
    return [InboundException(**row._mapping) for row in rows]


def _state(conn: Connection, exception_id: int) -> dict[str, Any] | None:
    """What an audit digest covers: the whole row (drafts included; only digested)."""
    return audit.row_state(conn, t, id=exception_id)


def update_problems(
    conn: Connection, exception_id: int, problems: Sequence[dict[str, Any]], *, actor: str
) -> None:
    """A replay that still found problems: they are updated; audited as ``actor``'s (the
    problems' fields, not their values: a value may be a patient's location)."""
    before = _state(conn, exception_id)
    conn.execute(update(t).where(t.c.id == exception_id).values(problems=list(problems)))
    audit.append(
        conn,
        actor=actor,
        action="inbound_exception.replay",
        target_type="inbound_exception",
        target_id=exception_id,
        before=before,
        after=_state(conn, exception_id),
        detail={"outcome": "exception", "unresolved": sorted({p["field"] for p in problems})},
    )


def fill(
    conn: Connection,
    exception_id: int,
    drafts: Sequence[dict[str, Any]],
    *,
    actor: str,
    detail: dict[str, Any],
) -> None:
    """A reviewer filled in what the message left out (``drafts``: the movements as they now
    read, the sender's codes still); audited as ``actor``'s, ``detail`` saying what."""
    before = _state(conn, exception_id)
    conn.execute(update(t).where(t.c.id == exception_id).values(drafts=list(drafts)))
    audit.append(
        conn,
        actor=actor,
        action="inbound_exception.fill",
        target_type="inbound_exception",
        target_id=exception_id,
        before=before,
        after=_state(conn, exception_id),
        detail=detail,
    )


def close(
    conn: Connection,
    exception_id: int,
    status: str,
    resolution: str,
    *,
    actor: str,
    action: str,
) -> None:
    """Close the exception (``applied`` or ``discarded``); audited as ``actor``'s."""
    before = _state(conn, exception_id)
    conn.execute(
        update(t)
        .where(t.c.id == exception_id)
        .values(status=status, resolved_at=datetime.now(UTC), resolution=resolution)
    )
    audit.append(
        conn,
        actor=actor,
        action=action,
        target_type="inbound_exception",
        target_id=exception_id,
        before=before,
        after=_state(conn, exception_id),
        detail={"outcome": status, "resolution": resolution},
    )
