"""Message records that travel with their events through the group commit, so that a
message's row is written in the transaction of its events (``SqlBus.append_recorded``), or
right after the server stored them when the log is not in the database (JetStream).

A record with no events is one that stores nothing else (a refusal): it is written with the
batch as its connector settled it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from medbridge.bus.port import AppendResult
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.messages import MessageRecord, MessageStatus


@dataclass(frozen=True)
class Recorded:
    """``record`` and where its events are in the batch: ``events[start : start + count]``."""

    record: MessageRecord
    start: int
    count: int


def settle(
    recorded: Sequence[Recorded],
    events: Sequence[EventEnvelope[Any]],
    results: Sequence[AppendResult],
) -> list[MessageRecord]:
    """Each record's status from its events' results: ``duplicate`` when every one was in
    the log before, else ``applied``; its correlation (the original's, for a duplicate: the
    trace of what it did), its event count and, if unset, its business key (the first
    event's subject)."""
    settled = []
    for r in recorded:
        record = r.record
        if r.count:
            mine = results[r.start : r.start + r.count]
            first = events[r.start]
            record.event_count = r.count
            record.correlation_id = str(mine[0].correlation_id)
            if not record.business_key:
                record.business_key = first.subject or ""
            if record.idempotency_key is None:
                record.idempotency_key = first.idempotency_key
            duplicate = all(m.duplicate for m in mine)
            record.settle(MessageStatus.DUPLICATE if duplicate else MessageStatus.APPLIED)
        elif record.status is None:
            record.settle(MessageStatus.APPLIED)
        settled.append(record)
    return settled


@runtime_checkable
class RecordingLog(Protocol):
    """A log that writes message rows in the transaction of the events (``SqlBus``)."""

    def append_recorded(
        self, events: Sequence[EventEnvelope[Any]], recorded: Sequence[Recorded]
    ) -> list[AppendResult]: ...


class RowWriter(Protocol):
    """Writes settled rows in a transaction of their own (``store.messages.MessageRecorder``)."""

    def write(self, records: Sequence[MessageRecord]) -> None: ...
