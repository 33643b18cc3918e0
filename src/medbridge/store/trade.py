"""What was exchanged with trading partners: interchanges (with the answer given, so that a
resent interchange gets the same answer and no second effect), the documents they carried,
and the control numbers MedBridge allocates for what it sends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from medbridge.store.tables import trade_control_numbers as ctl
from medbridge.store.tables import trade_documents as docs
from medbridge.store.tables import trade_interchanges as ix

CONTROL_MAX = 999_999_999
"""X12 ISA13 is nine digits; control numbers wrap to 1 after this."""


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    answer: str


@dataclass(frozen=True)
class TradeDocumentRow:
    id: int
    idempotency_key: str
    interchange: str
    partner: str
    direction: str
    wire_format: str
    kind: str
    number: str
    document: dict[str, Any]
    event_id: str | None
    correlation_id: str
    recorded_at: datetime


def answer_of(conn: Connection, key: str) -> StoredAnswer | None:
    row = conn.execute(select(ix.c.status, ix.c.answer).where(ix.c.key == key)).first()
    return StoredAnswer(int(row.status), str(row.answer)) if row else None


def record_interchange(
    conn: Connection,
    *,
    key: str,
    partner: str,
    wire_format: str,
    direction: str,
    status: int,
    answer: str,
) -> None:
    """Record an interchange and the answer given. Callers look it up first (``answer_of``)
    in the same transaction; two resends racing collide on the key and one rolls back."""
    conn.execute(
        insert(ix).values(
            key=key,
            partner=partner,
            wire_format=wire_format,
            direction=direction,
            status=status,
            answer=answer,
            received_at=datetime.now(UTC),
        )
    )


def complete_interchange(conn: Connection, key: str, *, status: int, answer: str) -> None:
    conn.execute(update(ix).where(ix.c.key == key).values(status=status, answer=answer))


def record_documents(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert the documents not recorded before (by idempotency key); return the new keys."""
    keys = [row["idempotency_key"] for row in rows]
    if not keys:
        return []
    seen = set(
        conn.execute(
            select(docs.c.idempotency_key).where(docs.c.idempotency_key.in_(keys))
        ).scalars()
    )
    fresh = [row for row in rows if row["idempotency_key"] not in seen]
    now = datetime.now(UTC)
    if fresh:
        conn.execute(insert(docs), [{"recorded_at": now, **row} for row in fresh])
    return [row["idempotency_key"] for row in fresh]


def _row(r: Any) -> TradeDocumentRow:
    return TradeDocumentRow(**{c: getattr(r, c) for c in TradeDocumentRow.__dataclass_fields__})


def find_documents(
    conn: Connection,
    *,
    partner: str | None = None,
    kind: str | None = None,
    number: str | None = None,
    direction: str | None = None,
    correlation_id: str | None = None,
    limit: int = 100,
) -> list[TradeDocumentRow]:
    query = select(docs).order_by(docs.c.id).limit(limit)
    for column, value in (
        (docs.c.partner, partner),
        (docs.c.kind, kind),
        (docs.c.number, number),
        (docs.c.direction, direction),
        (docs.c.correlation_id, correlation_id),
    ):
        if value is not None:
            query = query.where(column == value)
    return [_row(r) for r in conn.execute(query)]


def next_control_number(conn: Connection, partner: str, name: str) -> int:
    """The next control number of ``name`` (isa, gs, st ...) for ``partner``, 1 after the
    maximum. Call inside the transaction that records what carries it."""
    current = conn.execute(
        select(ctl.c.last).where(ctl.c.partner == partner, ctl.c.name == name)
    ).scalar()
    if current is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(ctl).values(partner=partner, name=name, last=1))
            return 1
        except IntegrityError:  # another transaction created it first
            current = conn.execute(
                select(ctl.c.last).where(ctl.c.partner == partner, ctl.c.name == name)
            ).scalar_one()
    following = 1 if int(current) >= CONTROL_MAX else int(current) + 1
    moved = conn.execute(
        update(ctl)
        .where(ctl.c.partner == partner, ctl.c.name == name, ctl.c.last == current)
        .values(last=following)
    )
    if moved.rowcount != 1:
        raise RuntimeError(f"control number {partner}/{name} moved concurrently; retry")
    return following
