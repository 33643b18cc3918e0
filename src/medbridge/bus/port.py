"""The Bus port and the dead-letter store port.

Bus contract (every adapter passes ``tests/contract/test_bus_contract.py``: the embedded SQL
log on SQLite and PostgreSQL, and NATS JetStream):

append(events) -> [AppendResult]
    Durable when it returns: an acknowledgement may be sent after it. A batch is
    all-or-nothing against every refusal the adapter can detect (the SQL log: one transaction;
    JetStream: the batch is validated before anything is sent). JetStream has no multi-message
    transaction: if the server fails while a batch is being sent, part of it may be stored and
    ``BusUnavailable`` is raised; the caller's retry of the same events stores the rest, and
    the stored part comes back as duplicates of itself (see the duplicate window below).
    Raises ``BusUnavailable`` when the log cannot be reached (transient), ``BusError`` when it
    refuses the batch.
duplicates and their window
    An event whose ``idempotency_key`` is already in the log (or earlier in the same call) is
    not appended again; its result says ``duplicate=True`` and carries the original's id,
    sequence number and correlation. The window in which a re-sent key is recognised differs:
    the SQL log remembers keys forever (a unique column); JetStream remembers them for the
    stream's ``duplicate_window`` (``Nats-Msg-Id``, configurable, 2 minutes by default). A
    resend after the window is stored again as a new message: exactly-once *effect* still
    holds, because every consumer records the idempotency keys it applied in the transaction
    of its effect (``store.dedup.claim``) and skips the second copy.
partition_of(subject) -> int
    Events are partitioned by their business key (``subject``, e.g. item@location) with
    ``partition_for`` (crc32); within a partition they are delivered in append order. There is
    no global order. The partition count is fixed for the life of a log.
fetch(group, partition, limit) -> [BusMessage]
    The next messages of a partition after the consumer group's committed position, in order;
    fetched again, uncommitted messages come back (the same ``BusMessage`` values). Each
    consumer group sees every event (fan-out between groups). With several processes in one
    group, a partition's uncommitted messages belong to one process at a time (JetStream: a
    lease per group and partition): another process's fetch of that partition returns nothing
    until they are committed, or until the holder is gone (taken over after the ack wait).
commit(group, partition, seq)
    Moves the group's committed position past ``seq``. A crash before commit means
    redelivery: consumers must be idempotent (they record the idempotency key in the
    transaction of their effect).
dead_letter(group, message, error, attempts, context)
    Stores a message a group gave up on in the ``DeadLetterStore`` (JetStream has no
    dead-letter queue of its own: the message is also terminated, ``term``, at commit). The
    consumer loop commits past it afterwards.
get(seq) -> BusMessage | None
lag(group) -> int
    Events not yet committed by the group (JetStream: pending + delivered-but-unacked).
oldest_unconsumed(group) -> datetime | None
    When the oldest event the group has not committed was stored (the SQL log: its
    ``appended_at``; JetStream: the stream's timestamp of the first message after the
    consumer's ack floor), over every partition; None when the group has nothing waiting.
    ``now - oldest_unconsumed`` is the group's lag in seconds.
dead_letters / mark_replayed / record_replay_failure / dead_letter_count
    Thin delegations to ``dead_letter_store`` (callers may use the store itself).
close()
    Releases connections and threads; hands back uncommitted messages at once.

Every ``BusMessage`` carries its headers: correlation, causation and the W3C ``traceparent``
and ``tracestate``: the envelope's own (the span that produced the event, when tracing is on),
else ``trace_parent`` (the trace is the business transaction, the span is the event).

Errors: ``BusError`` is the root; ``BusUnavailable`` is transient (retry later). Library
errors (SQLAlchemy, nats-py) are translated at the adapter's boundary.
"""

from __future__ import annotations

import random
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from medbridge.canonical.events import EventEnvelope


class BusError(Exception):
    """Root of the bus errors."""


class BusUnavailable(BusError):
    """The log could not be reached or written; nothing was stored. Transient."""


@dataclass(frozen=True)
class AppendResult:
    """Where an event is in the log. For a duplicate: the original's id and correlation."""

    event_id: UUID
    seq: int
    duplicate: bool
    correlation_id: UUID


@dataclass(frozen=True)
class BusMessage:
    """One delivered event. ``payload`` is the whole envelope as JSON; the other fields are its
    headers (on JetStream, real message headers), readable without parsing the payload."""

    seq: int
    partition: int
    event_id: str
    type: str
    subject: str
    idempotency_key: str
    correlation_id: str
    payload: str
    causation_id: str | None = None
    traceparent: str = ""
    tracestate: str = ""


def trace_headers(event: EventEnvelope[Any]) -> tuple[str, str]:
    """The ``(traceparent, tracestate)`` headers of an event: the envelope's trace context
    when it has one, else ``trace_parent`` of its correlation and id."""
    if event.traceparent:
        return event.traceparent, event.tracestate or ""
    return trace_parent(event.correlation, event.id), ""


def trace_parent(correlation_id: UUID | str, event_id: UUID | str) -> str:
    """The W3C ``traceparent`` of an event: trace id = the correlation id (one business
    transaction, one trace), parent span id = the last 64 bits of the event id. Never change
    it: consumers and exporters join spans on it."""
    trace = UUID(str(correlation_id)).hex
    span = UUID(str(event_id)).hex[16:]
    if span == "0" * 16:  # an all-zero span id is invalid in W3C trace context
        span = "0" * 15 + "1"
    return f"00-{trace}-{span}-01"


@dataclass(frozen=True)
class DeadLetter:
    id: int
    group: str
    event_seq: int
    event_id: str
    event_type: str
    subject: str
    correlation_id: str
    error_type: str
    error: str
    traceback: str
    attempts: int
    context: dict[str, Any]
    status: str
    dead_at: datetime
    replayed_at: datetime | None


@dataclass(frozen=True)
class DeadLetterFilter:
    """Selects dead letters; every given field must match. ``status`` None means any."""

    group: str | None = None
    ids: tuple[int, ...] | None = None
    event_type: str | None = None
    subject: str | None = None
    error_type: str | None = None
    status: str | None = "dead"
    limit: int = 1000


class Handler(Protocol):
    """A consumer's effect. Called with a batch; must be all-or-nothing and idempotent (the
    idempotency keys it applied are recorded in the same transaction as the effect)."""

    @property
    def name(self) -> str: ...

    def __call__(self, messages: Sequence[BusMessage]) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How a consumer retries a failing message before dead-lettering it.

    Attempt n (1-based) that fails waits ``min(max_backoff, initial_backoff * multiplier**(n-1))``
    scaled by a random factor in ``[1 - jitter, 1]`` before attempt n+1. Errors of a
    ``permanent`` type skip the retries: retrying cannot help, only a fix and a replay can.
    Errors of a ``halt_on`` type mean the system, not the message, is failing (the database is
    down): the consumer stops the round without counting an attempt or dead-lettering
    anything, and the run loop tries again after a pause.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.5
    permanent: tuple[type[BaseException], ...] = ()
    halt_on: tuple[type[BaseException], ...] = ()
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base * (1 - self.jitter * self.rng.random())

    def is_permanent(self, error: BaseException) -> bool:
        return isinstance(error, self.permanent)

    def halts(self, error: BaseException) -> bool:
        return isinstance(error, self.halt_on)


def partition_for(subject: str, partitions: int) -> int:
    """Stable across processes and versions (crc32): never change it for an existing log."""
    return zlib.crc32(subject.encode()) % partitions


class DeadLetterStore(ABC):
    """Where messages a consumer group gave up on wait for a fix and a replay.

    dead_letter(group, message, error, attempts, context)
        Stores the message with its error type, text, traceback, attempts and context; a
        second dead letter of the same event in the same group replaces the first.
    dead_letters(selection) -> [DeadLetter]
        By ``DeadLetterFilter``, oldest first.
    mark_replayed(id, actor=)
        The replay applied it: status ``replayed``, ``replayed_at`` set; audited as
        ``actor``'s (``dead_letter.replay``) in the same transaction.
    record_replay_failure(id, error, attempts, actor=)
        The replay failed again: it stays ``dead`` with the new error and attempt count;
        audited as ``actor``'s (``dead_letter.replay_failed``) in the same transaction.
    dead_letter_count(group) -> int
        Dead letters of the group still waiting (status ``dead``).

    Errors: a store that cannot be reached raises its own (database) errors; the consumer loop
    treats them as infrastructure failures (``RetryPolicy.halt_on``), never as the message's.
    """

    @abstractmethod
    def dead_letter(
        self,
        group: str,
        message: BusMessage,
        error: BaseException,
        attempts: int,
        context: dict[str, Any],
    ) -> None: ...

    @abstractmethod
    def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]: ...

    @abstractmethod
    def mark_replayed(self, dead_letter_id: int, *, actor: str) -> None: ...

    @abstractmethod
    def record_replay_failure(
        self, dead_letter_id: int, error: BaseException, attempts: int, *, actor: str
    ) -> None: ...

    @abstractmethod
    def dead_letter_count(self, group: str) -> int: ...


class Bus(ABC):
    """The event log; see the module docstring for the contract."""

    partitions: int
    dead_letter_store: DeadLetterStore

    def partition_of(self, subject: str) -> int:
        return partition_for(subject, self.partitions)

    @abstractmethod
    def append(self, events: Sequence[EventEnvelope[Any]]) -> list[AppendResult]: ...

    @abstractmethod
    def fetch(self, group: str, partition: int, limit: int) -> list[BusMessage]: ...

    @abstractmethod
    def commit(self, group: str, partition: int, seq: int) -> None: ...

    @abstractmethod
    def get(self, seq: int) -> BusMessage | None: ...

    @abstractmethod
    def lag(self, group: str) -> int: ...

    @abstractmethod
    def oldest_unconsumed(self, group: str) -> datetime | None: ...

    def dead_letter(
        self,
        group: str,
        message: BusMessage,
        error: BaseException,
        attempts: int,
        context: dict[str, Any],
    ) -> None:
        self.dead_letter_store.dead_letter(group, message, error, attempts, context)

    def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        return self.dead_letter_store.dead_letters(selection)

    def mark_replayed(self, dead_letter_id: int, *, actor: str) -> None:
        self.dead_letter_store.mark_replayed(dead_letter_id, actor=actor)

    def record_replay_failure(
        self, dead_letter_id: int, error: BaseException, attempts: int, *, actor: str
    ) -> None:
        self.dead_letter_store.record_replay_failure(dead_letter_id, error, attempts, actor=actor)

    def dead_letter_count(self, group: str) -> int:
        return self.dead_letter_store.dead_letter_count(group)

    def close(self) -> None:
        """Release connections and threads. The SQL log holds none of its own."""
        return None
