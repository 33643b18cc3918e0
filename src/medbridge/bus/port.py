"""The Bus port.

Contract (every adapter passes ``tests/contract/test_bus_contract.py``):

append(events) -> [AppendResult]
    All-or-nothing and durable when it returns: an acknowledgement may be sent after it.
    An event whose ``idempotency_key`` is already in the log (or earlier in the same call) is
    not appended again; its result says ``duplicate=True`` and carries the original's id and
    sequence number. Raises ``BusUnavailable`` when nothing could be stored.
partition_of(subject) -> int
    Events are partitioned by their business key (``subject``, e.g. item@location); within a
    partition they are delivered in append order. There is no global order. The partition
    count is fixed for the life of a log.
fetch(group, partition, limit) -> [BusMessage]
    The next messages of a partition after the consumer group's committed position, in order.
    Each consumer group sees every event (fan-out between groups).
commit(group, partition, seq)
    Moves the group's committed position. A crash before commit means redelivery: consumers
    must be idempotent (they record the idempotency key in the transaction of their effect).
dead_letter(group, message, error, attempts, context)
    Stores a message a group gave up on, with the error, traceback and context. The consumer
    loop commits past it afterwards.
dead_letters(filter) / mark_replayed(id) / record_replay_failure(id, error, attempts)
    The dead-letter store; ``Consumer.replay`` redelivers dead letters by id or by filter.
get(seq) -> BusMessage | None
lag(group) -> int;  dead_letter_count(group) -> int

Errors: ``BusError`` is the root; ``BusUnavailable`` is transient (retry later).
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
    """One delivered event. ``payload`` is the whole envelope as JSON."""

    seq: int
    partition: int
    event_id: str
    type: str
    subject: str
    idempotency_key: str
    correlation_id: str
    payload: str


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


class Bus(ABC):
    partitions: int

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
    def mark_replayed(self, dead_letter_id: int) -> None: ...

    @abstractmethod
    def record_replay_failure(
        self, dead_letter_id: int, error: BaseException, attempts: int
    ) -> None: ...

    @abstractmethod
    def lag(self, group: str) -> int: ...

    @abstractmethod
    def dead_letter_count(self, group: str) -> int: ...
