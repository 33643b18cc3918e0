"""Idempotent consumers: the record of what a consumer has applied, written in the same
transaction as the effect (pyeventsourcing's tracking record). A duplicate is skipped; two
workers racing on the same message collide on the primary key and one rolls back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from sqlalchemy import Connection, select

from medbridge.store.sql import BulkInsert, chunks
from medbridge.store.tables import consumer_dedup


class Keyed(Protocol):
    @property
    def idempotency_key(self) -> str: ...

    @property
    def event_id(self) -> str: ...


KeyedT = TypeVar("KeyedT", bound=Keyed)


_insert_claims = BulkInsert(
    consumer_dedup, ("consumer", "idempotency_key", "event_id", "applied_at")
)


def claim(conn: Connection, consumer: str, messages: Sequence[KeyedT]) -> list[KeyedT]:
    """Record ``messages`` as applied by ``consumer``; return those not applied before, in order.

    Call inside the transaction that applies them: if it rolls back, so does the claim.
    """
    keys = [m.idempotency_key for m in messages]
    seen: set[str] = set()
    for chunk in chunks(keys):
        seen.update(
            conn.execute(
                select(consumer_dedup.c.idempotency_key).where(
                    consumer_dedup.c.consumer == consumer,
                    consumer_dedup.c.idempotency_key.in_(chunk),
                )
            ).scalars()
        )
    fresh: list[KeyedT] = []
    for message in messages:
        if message.idempotency_key not in seen:
            seen.add(message.idempotency_key)
            fresh.append(message)
    if fresh:
        now = datetime.now(UTC)
        _insert_claims(
            conn,
            [
                {
                    "consumer": consumer,
                    "idempotency_key": m.idempotency_key,
                    "event_id": m.event_id,
                    "applied_at": now,
                }
                for m in fresh
            ],
        )
    return fresh
