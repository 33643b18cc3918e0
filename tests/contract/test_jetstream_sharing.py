"""Several worker processes in one consumer group on NATS JetStream (two ``JetStreamBus``
instances, two connections: two "processes"). They split the partitions' messages, together
apply every message exactly once with per-subject order kept, and when one dies without
committing, the other receives what it held."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from medbridge.bus.consumer import Consumer
from medbridge.bus.dead_letters import SqlDeadLetterStore
from medbridge.bus.jetstream import JetStreamBus, JetStreamConfig
from medbridge.bus.port import BusMessage, RetryPolicy
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.movements import MovementKind, StockMovement

pytestmark = [pytest.mark.nats, pytest.mark.db]

GROUP = "ledger"
SUBJECTS = [f"ITEM{i}@LOC{i % 3}" for i in range(24)]
ROUNDS = 5


def movement(subject: str, n: int) -> EventEnvelope[StockMovement]:
    item, location = subject.split("@")
    data = StockMovement(
        kind=MovementKind.DISPENSE,
        item=item,
        location=location,
        quantity=Decimal("1"),
        unit="EA",
        occurred_at=datetime(2024, 5, 1, 8, 30, tzinfo=UTC),
    )
    return EventEnvelope[StockMovement](
        type=data.event_type,
        source="sharing-test",
        subject=subject,
        idempotency_key=f"{subject}#{n}",
        data=data,
    )


class Journal:
    """What both processes applied, in the order they applied it (one lock for both)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[tuple[str, BusMessage]] = []

    def record(self, worker: str, messages: Sequence[BusMessage]) -> None:
        with self.lock:
            self.entries.extend((worker, m) for m in messages)

    def keys(self) -> list[str]:
        with self.lock:
            return [m.idempotency_key for _, m in self.entries]


class JournalHandler:
    def __init__(self, worker: str, journal: Journal) -> None:
        self.name, self.worker, self.journal = f"journal-{worker}", worker, journal

    def __call__(self, messages: Sequence[BusMessage]) -> None:
        self.journal.record(self.worker, messages)


@pytest.fixture
def workers(nats_stream: JetStreamConfig, engine: Engine) -> Iterator[list[JetStreamBus]]:
    config = replace(nats_stream, partitions=4, ack_wait=2.0)
    buses = [JetStreamBus(config, SqlDeadLetterStore(engine)) for _ in range(2)]
    yield buses
    for bus in buses:
        bus.close()
    cleanup = JetStreamBus(config, SqlDeadLetterStore(engine))
    cleanup.delete_stream()
    cleanup.close(hand_back=False)


def test_two_processes_share_a_group_exactly_once_in_order_and_take_over(
    workers: list[JetStreamBus],
) -> None:
    first, second = workers
    events = [movement(s, n) for n in range(ROUNDS) for s in SUBJECTS]
    first.append(events)
    assert first.lag(GROUP) == len(events)
    journal = Journal()

    # A partition's uncommitted messages belong to one process: the other is refused them.
    mine = {p: first.fetch(GROUP, p, 10) for p in (0, 1)}
    theirs = {p: second.fetch(GROUP, p, 10) for p in (2, 3)}
    assert all(mine.values())
    assert all(theirs.values())
    assert [second.fetch(GROUP, p, 10) for p in (0, 1)] == [[], []]
    assert [first.fetch(GROUP, p, 10) for p in (2, 3)] == [[], []]
    for bus, taken in ((first, mine), (second, theirs)):
        for partition, batch in taken.items():
            journal.record("first" if bus is first else "second", batch)
            bus.commit(GROUP, partition, batch[-1].seq)
    assert second.fetch(GROUP, 0, 10)[0].seq > mine[0][-1].seq  # committed: the next batch
    second.commit(GROUP, 0, 0)  # commits nothing, keeps the batch held

    # Both run the consumer loop until everything is applied.
    stop = threading.Event()
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.01)
    threads = [
        threading.Thread(
            target=Consumer(bus, GROUP, JournalHandler(name, journal), retry, batch_size=7).run,
            args=(stop, 0.01),
        )
        for name, bus in (("first", first), ("second", second))
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(journal.keys()) < len(events) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()

    keys = journal.keys()
    assert sorted(keys) == sorted(e.idempotency_key for e in events), "each exactly once"
    for subject in SUBJECTS:
        assert [k for k in keys if k.startswith(f"{subject}#")] == [
            f"{subject}#{n}" for n in range(ROUNDS)
        ], "per-subject order"
    assert {worker for worker, _ in journal.entries} == {"first", "second"}
    assert first.lag(GROUP) == second.lag(GROUP) == 0

    # One process dies holding a batch: the other receives that batch, and nothing else first.
    later = [movement(s, ROUNDS) for s in SUBJECTS]
    second.append(later)
    partition = first.partition_of(SUBJECTS[0])
    held = first.fetch(GROUP, partition, 100)
    assert held
    assert second.fetch(GROUP, partition, 100) == []

    first.close(hand_back=False)  # a crash: no commit, no hand-back

    deadline = time.monotonic() + 30
    while not (taken_over := second.fetch(GROUP, partition, 100)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert taken_over == held
    second.commit(GROUP, partition, taken_over[-1].seq)
    assert second.lag(GROUP) == len(later) - len(held)
