"""The Bus port contract (``medbridge.bus.port``), one suite for every adapter.

``BusContract`` holds the tests; an adapter joins by subclassing it as ``Test<Adapter>`` and
providing four things: the ``make_bus`` fixture (a bus with ``partitions`` partitions on an
empty log), the ``reopen`` fixture (a second, independent bus on the same log: new client,
new connection, as another process would have), ``poison`` (an envelope that adapter must
refuse to store, to prove that a batch is all-or-nothing) and ``crash`` (what a process that
dies leaves behind). Duplicates are re-sent at once, inside every adapter's duplicate window
(the SQL log's is forever; JetStream's is the stream's ``duplicate_window``). The consumer
loop (``medbridge.bus.consumer.Consumer``) is tested through the port, so it is exercised
over every adapter too. The idempotent handler keeps its dedup record in the application
database (``engine``), whatever the bus.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine

from medbridge.bus.consumer import Consumer
from medbridge.bus.dead_letters import SqlDeadLetterStore
from medbridge.bus.jetstream import JetStreamBus, JetStreamConfig
from medbridge.bus.port import (
    AppendResult,
    Bus,
    BusError,
    BusMessage,
    DeadLetter,
    DeadLetterFilter,
    RetryPolicy,
    trace_parent,
)
from medbridge.bus.sql import SqlBus
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.store.db import create_db_engine
from medbridge.store.dedup import claim

pytestmark = pytest.mark.db

Envelope = EventEnvelope[StockMovement]
MakeBus = Callable[[int], Bus]
Reopen = Callable[[Bus], Bus]

SUBJECT = "ITEM1@LOC1"
BASE_BACKOFF = 0.1
JITTER = 0.5


# --- helpers -------------------------------------------------------------------------------


def envelope(
    subject: str = SUBJECT,
    *,
    key: str | None = None,
    kind: MovementKind = MovementKind.DISPENSE,
    correlation_id: UUID | None = None,
    causation_id: UUID | None = None,
) -> Envelope:
    item, location = subject.split("@")
    movement = StockMovement(
        kind=kind,
        item=item,
        location=location,
        quantity=Decimal("2"),
        unit="EA",
        occurred_at=datetime(2024, 5, 1, 8, 30, tzinfo=UTC),
    )
    return Envelope(
        type=movement.event_type,
        source="contract-test",
        subject=subject,
        idempotency_key=key or f"key-{uuid4()}",
        correlation_id=correlation_id,
        causation_id=causation_id,
        data=movement,
    )


def fetch_all(bus: Bus, group: str) -> list[BusMessage]:
    """Every message after the group's positions, partition by partition."""
    return [m for p in range(bus.partitions) for m in bus.fetch(group, p, 10_000)]


def eventually(fetch: Callable[[], list[BusMessage]], within: float = 30.0) -> list[BusMessage]:
    """``fetch`` until it returns something (another process's share comes after its lease
    and ack wait on JetStream, at once on the SQL log); [] if nothing came ``within``."""
    deadline = time.monotonic() + within
    while not (messages := fetch()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return messages


def policy(max_attempts: int = 4, permanent: tuple[type[BaseException], ...] = ()) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_backoff=BASE_BACKOFF,
        max_backoff=10.0,
        multiplier=2.0,
        jitter=JITTER,
        permanent=permanent,
        rng=random.Random(20240501),
    )


def only_dead_letter(bus: Bus, group: str) -> DeadLetter:
    dead = bus.dead_letters(DeadLetterFilter(group=group, status=None))
    assert len(dead) == 1
    return dead[0]


class ApplyError(RuntimeError):
    """A transient failure of the recording handler."""


class PoisonError(ValueError):
    """A failure that retrying cannot fix (declared permanent in the policy)."""


class RecordingHandler:
    """Applies a batch all-or-nothing: it fails before applying anything if the batch holds a
    message it is told to fail on. ``journal`` interleaves calls, failures and sleeps."""

    name = "recording-handler"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.applied: list[str] = []
        self.journal: list[tuple[str, object]] = []
        self._failing: dict[str, tuple[type[Exception], str]] = {}

    def fail_on(self, event_id: str, error: type[Exception] = ApplyError, text: str = "") -> None:
        self._failing[event_id] = (error, text or f"cannot apply {event_id}")

    def heal(self, event_id: str) -> None:
        del self._failing[event_id]

    def attempts_of(self, event_id: str) -> int:
        return sum(event_id in call for call in self.calls)

    def __call__(self, messages: Sequence[BusMessage]) -> None:
        ids = [m.event_id for m in messages]
        self.calls.append(ids)
        for event_id in ids:
            if event_id in self._failing:
                error, text = self._failing[event_id]
                self.journal.append(("failed", event_id))
                raise error(text)
        self.applied.extend(ids)
        self.journal.extend(("applied", event_id) for event_id in ids)


class RecordingSleep:
    """Injected instead of ``time.sleep``: records the delays, never waits."""

    def __init__(self, journal: list[tuple[str, object]] | None = None) -> None:
        self.delays: list[float] = []
        self._journal = journal

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._journal is not None:
            self._journal.append(("sleep", seconds))


class DedupHandler:
    """An idempotent handler: claims the messages (``consumer_dedup``) in the transaction of its
    effect; the effect is the list ``applied``, extended only once that transaction commits.
    ``fail_after_claim`` makes an event's effect fail that many times, inside the transaction."""

    name = "contract-dedup-handler"

    def __init__(self, engine: Engine, fail_after_claim: dict[str, int] | None = None) -> None:
        self.engine = engine
        self.applied: list[str] = []
        self._failures = dict(fail_after_claim or {})

    def __call__(self, messages: Sequence[BusMessage]) -> None:
        with self.engine.begin() as conn:
            fresh = claim(conn, self.name, messages)
            for message in fresh:
                if self._failures.get(message.event_id, 0) > 0:
                    self._failures[message.event_id] -= 1
                    raise ApplyError(f"effect of {message.event_id} failed")
            effect = [m.event_id for m in fresh]
        self.applied.extend(effect)


# --- the contract --------------------------------------------------------------------------


class BusContract:
    """The tests every Bus adapter must pass. Not collected itself (no ``Test`` prefix)."""

    partitions = 4

    @pytest.fixture
    def make_bus(self) -> MakeBus:
        raise NotImplementedError("an adapter's test class provides make_bus")

    @pytest.fixture
    def reopen(self) -> Reopen:
        raise NotImplementedError("an adapter's test class provides reopen")

    def poison(self, stored: Envelope) -> Envelope:
        """A fresh-keyed envelope the adapter must fail to store, given one stored earlier in
        the same batch. Every adapter refuses an event id already stored under another key."""
        return stored.model_copy(update={"idempotency_key": f"poison-{uuid4()}"})

    def crash(self, bus: Bus) -> None:
        """The process owning ``bus`` dies: nothing it held in memory is handed back."""
        raise NotImplementedError

    @pytest.fixture
    def bus(self, make_bus: MakeBus) -> Bus:
        return make_bus(self.partitions)

    # append ------------------------------------------------------------------------------

    def test_append_returns_results_in_order_durably_with_increasing_seqs(
        self, bus: Bus, reopen: Reopen
    ) -> None:
        events = [envelope(f"ITEM{i}@LOC1") for i in range(6)]

        results = bus.append(events)

        assert [r.event_id for r in results] == [e.id for e in events]
        assert [r.correlation_id for r in results] == [e.correlation for e in events]
        assert not any(r.duplicate for r in results)
        seqs = [r.seq for r in results]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        later = bus.append([envelope()])
        assert later[0].seq > max(seqs)

        other = reopen(bus)
        fetched = {m.event_id: m for m in fetch_all(other, "durability")}
        assert set(fetched) == {str(e.id) for e in events} | {str(later[0].event_id)}
        for event, result in zip(events, results, strict=True):
            message = fetched[str(event.id)]
            assert message.seq == result.seq
            assert message.subject == event.subject
            assert message.type == event.type
            assert message.idempotency_key == event.idempotency_key
            assert message.correlation_id == str(event.correlation)
            assert Envelope.model_validate_json(message.payload) == event
            assert other.get(result.seq) == message

    def test_get_unknown_seq_is_none(self, bus: Bus) -> None:
        [result] = bus.append([envelope()])
        assert bus.get(result.seq + 1000) is None

    def test_messages_carry_correlation_causation_and_trace_context(
        self, bus: Bus, reopen: Reopen
    ) -> None:
        cause = envelope("ITEM7@LOC7")
        effect = envelope("ITEM7@LOC7", correlation_id=cause.correlation, causation_id=cause.id)
        bus.append([cause, effect])

        first, second = bus.fetch("g", bus.partition_of("ITEM7@LOC7"), 10)

        assert (first.event_id, second.event_id) == (str(cause.id), str(effect.id))
        assert first.causation_id is None
        assert second.causation_id == str(cause.id)
        assert second.correlation_id == first.correlation_id == str(cause.correlation)
        assert first.traceparent == trace_parent(cause.correlation, cause.id)
        assert second.traceparent == trace_parent(cause.correlation, effect.id)
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", second.traceparent)
        assert second.traceparent.split("-")[1] == cause.correlation.hex
        assert first.traceparent.split("-")[2] != second.traceparent.split("-")[2]
        assert reopen(bus).get(second.seq) == second

    def test_an_envelopes_own_trace_context_is_its_messages(self, bus: Bus, reopen: Reopen) -> None:
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        traced = envelope("ITEM8@LOC8").model_copy(
            update={"traceparent": traceparent, "tracestate": "vendor=abc,other=1"}
        )
        untraced = envelope("ITEM8@LOC8")
        bus.append([traced, untraced])

        first, second = bus.fetch("g", bus.partition_of("ITEM8@LOC8"), 10)

        assert (first.traceparent, first.tracestate) == (traceparent, "vendor=abc,other=1")
        assert Envelope.model_validate_json(first.payload).traceparent == traceparent
        assert second.traceparent == trace_parent(untraced.correlation, untraced.id)
        assert second.tracestate == ""
        assert reopen(bus).get(first.seq) == first

    def test_append_nothing_returns_nothing(self, bus: Bus) -> None:
        assert bus.append([]) == []
        assert bus.lag("g") == 0

    def test_reappended_key_inside_the_window_is_duplicate_of_the_original(self, bus: Bus) -> None:
        original = envelope(key="src:MSG-1")
        [first] = bus.append([original])
        retry = envelope(key="src:MSG-1", correlation_id=uuid4())  # new id, new correlation

        [again, same_object] = bus.append([retry, original])

        expected = AppendResult(original.id, first.seq, True, original.correlation)
        assert again == expected
        assert same_object == expected
        assert [m.event_id for m in fetch_all(bus, "g")] == [str(original.id)]
        assert bus.lag("g") == 1

    def test_key_twice_in_one_call_is_stored_once(self, bus: Bus) -> None:
        first = envelope(key="src:MSG-2")
        second = envelope(key="src:MSG-2", correlation_id=uuid4())
        other = envelope(key="src:MSG-3")

        results = bus.append([first, second, other, first])

        assert results[0].duplicate is False
        assert results[0].event_id == first.id
        expected = AppendResult(first.id, results[0].seq, True, first.correlation)
        assert results[1] == expected
        assert results[3] == expected
        assert results[2].duplicate is False
        assert results[2].seq > results[0].seq
        fetched = fetch_all(bus, "g")
        assert sorted(m.event_id for m in fetched) == sorted([str(first.id), str(other.id)])

    def test_append_batch_is_all_or_nothing(self, bus: Bus, reopen: Reopen) -> None:
        [before] = bus.append([envelope(key="before")])
        # Large enough for an adapter to write in several statements or chunks.
        batch = [envelope(f"ITEM{i % 40}@LOC{i % 3}") for i in range(1200)]

        with pytest.raises(BusError):
            bus.append([*batch, self.poison(batch[0])])

        other = reopen(bus)
        assert [m.event_id for m in fetch_all(other, "g")] == [str(before.event_id)]
        assert other.lag("g") == 1
        results = bus.append(batch)  # nothing of the failed batch was stored
        assert not any(r.duplicate for r in results)
        assert bus.lag("g") == 1 + len(batch)

    # partitions --------------------------------------------------------------------------

    def test_partitioning_by_subject_keeps_append_order(self, bus: Bus, reopen: Reopen) -> None:
        subjects = [f"ITEM{i}@LOC{i % 5}" for i in range(50)]
        other = reopen(bus)
        for subject in subjects:
            assert 0 <= bus.partition_of(subject) < bus.partitions
            assert bus.partition_of(subject) == bus.partition_of(subject)
            assert other.partition_of(subject) == bus.partition_of(subject)
        rounds = [[envelope(s, key=f"{s}#{n}") for s in subjects] for n in range(3)]
        appended = [r for batch in rounds for r in bus.append(batch)]
        order = {str(r.event_id): position for position, r in enumerate(appended)}

        seen = 0
        used = set()
        for partition in range(bus.partitions):
            messages = bus.fetch("g", partition, 10_000)
            seen += len(messages)
            if messages:
                used.add(partition)
            assert all(m.partition == partition for m in messages)
            assert all(bus.partition_of(m.subject) == partition for m in messages)
            positions = [order[m.event_id] for m in messages]
            assert positions == sorted(positions), "per-partition order is append order"
            for subject in {m.subject for m in messages}:
                keys = [m.idempotency_key for m in messages if m.subject == subject]
                assert keys == [f"{subject}#{n}" for n in range(3)]
        assert seen == len(appended)
        assert len(used) > 1

    # consumer groups ---------------------------------------------------------------------

    def test_every_group_sees_every_event(self, bus: Bus) -> None:
        events = [envelope(f"ITEM{i}@LOC2") for i in range(12)]
        bus.append(events)
        expected = sorted(str(e.id) for e in events)

        assert sorted(m.event_id for m in fetch_all(bus, "billing")) == expected
        assert sorted(m.event_id for m in fetch_all(bus, "ledger")) == expected

    def test_positions_are_per_group_and_fetch_resumes_after_commit(self, bus: Bus) -> None:
        events = [envelope(key=f"k{i}") for i in range(5)]
        bus.append(events)
        partition = bus.partition_of(SUBJECT)
        first = bus.fetch("billing", partition, 2)

        bus.commit("billing", partition, first[-1].seq)

        rest = bus.fetch("billing", partition, 100)
        assert [m.idempotency_key for m in rest] == ["k2", "k3", "k4"]
        assert all(m.seq > first[-1].seq for m in rest)
        ledger = bus.fetch("ledger", partition, 100)
        assert [m.idempotency_key for m in ledger] == [f"k{i}" for i in range(5)]
        bus.commit("billing", partition, rest[-1].seq)
        assert bus.fetch("billing", partition, 100) == []
        later = envelope(key="k5")
        bus.append([later])
        assert [m.idempotency_key for m in bus.fetch("billing", partition, 100)] == ["k5"]

    def test_no_commit_means_redelivery(self, bus: Bus, reopen: Reopen) -> None:
        bus.append([envelope(key=f"k{i}") for i in range(3)])
        partition = bus.partition_of(SUBJECT)
        delivered = bus.fetch("billing", partition, 100)
        assert [m.idempotency_key for m in delivered] == ["k0", "k1", "k2"]
        assert bus.fetch("billing", partition, 100) == delivered
        other = reopen(bus)

        self.crash(bus)  # the consumer process dies here: no commit

        assert eventually(lambda: other.fetch("billing", partition, 100)) == delivered
        other.commit("billing", partition, delivered[-1].seq)
        assert other.fetch("billing", partition, 100) == []
        assert other.lag("billing") == 0

    def test_close_hands_uncommitted_messages_back(self, bus: Bus, reopen: Reopen) -> None:
        bus.append([envelope(key=f"k{i}") for i in range(3)])
        partition = bus.partition_of(SUBJECT)
        delivered = bus.fetch("billing", partition, 2)
        other = reopen(bus)

        bus.close()

        assert eventually(lambda: other.fetch("billing", partition, 100))[:2] == delivered
        assert [m.idempotency_key for m in other.fetch("billing", partition, 100)] == [
            "k0",
            "k1",
            "k2",
        ]

    def test_fetch_respects_limit(self, bus: Bus) -> None:
        bus.append([envelope(key=f"k{i}") for i in range(7)])
        partition = bus.partition_of(SUBJECT)

        assert [m.idempotency_key for m in bus.fetch("g", partition, 3)] == ["k0", "k1", "k2"]
        assert len(bus.fetch("g", partition, 1)) == 1
        assert len(bus.fetch("g", partition, 100)) == 7

    def test_lag_counts_unconsumed_events_per_group(self, bus: Bus) -> None:
        events = [envelope(f"ITEM{i}@LOC3") for i in range(20)]
        bus.append(events)
        assert bus.lag("billing") == 20
        assert bus.lag("ledger") == 20
        busiest = max(range(bus.partitions), key=lambda p: len(bus.fetch("g", p, 100)))
        messages = bus.fetch("billing", busiest, 100)
        assert 0 < len(messages) < 20

        bus.commit("billing", busiest, messages[-1].seq)

        assert bus.lag("billing") == 20 - len(messages)
        assert bus.lag("ledger") == 20
        Consumer(bus, "billing", RecordingHandler(), policy()).drain()
        assert bus.lag("billing") == 0
        assert bus.lag("ledger") == 20
        bus.append([envelope()])
        assert bus.lag("billing") == 1
        assert bus.lag("ledger") == 21

    def test_oldest_unconsumed_is_when_the_first_waiting_event_was_stored(self, bus: Bus) -> None:
        """The lag in seconds is now minus this; it moves past what a group committed. (The
        store's clock is the server's: bounds get a second of slack, no duration is asserted.)"""
        slack = timedelta(seconds=1)
        assert bus.oldest_unconsumed("billing") is None
        before = datetime.now(UTC)
        bus.append([envelope(f"ITEM{i}@LOC4", key=f"first-{i}") for i in range(5)])
        after = datetime.now(UTC)
        first = bus.oldest_unconsumed("billing")
        assert first is not None
        assert before - slack <= first <= after + slack
        Consumer(bus, "billing", RecordingHandler(), policy()).drain()
        assert bus.oldest_unconsumed("billing") is None
        assert bus.oldest_unconsumed("ledger") == first  # another group's waits still

        later = datetime.now(UTC)
        bus.append([envelope("ITEM9@LOC4", key="second")])
        second = bus.oldest_unconsumed("billing")
        assert second is not None
        assert second >= max(later - slack, first)

    # the consumer loop -------------------------------------------------------------------

    def test_consumer_delivers_a_batch_in_one_call(self, bus: Bus) -> None:
        events = [envelope(key=f"k{i}") for i in range(5)]
        bus.append(events)
        handler = RecordingHandler()
        sleep = RecordingSleep()

        handled = Consumer(bus, "g", handler, policy(), batch_size=2, sleep=sleep).drain()

        ids = [str(e.id) for e in events]
        assert handled == 5
        assert handler.calls == [ids[0:2], ids[2:4], ids[4:5]]
        assert handler.applied == ids
        assert sleep.delays == []
        assert bus.lag("g") == 0
        assert fetch_all(bus, "g") == []
        assert Consumer(bus, "g", handler, policy(), sleep=sleep).drain() == 0

    def test_failing_message_is_retried_with_backoff_then_dead_lettered(self, bus: Bus) -> None:
        events = [envelope(key=f"k{i}") for i in range(5)]
        bus.append(events)
        ids = [str(e.id) for e in events]
        culprit = ids[2]
        handler = RecordingHandler()
        handler.fail_on(culprit)
        sleep = RecordingSleep()
        retry = policy(max_attempts=4)

        Consumer(bus, "g", handler, retry, sleep=sleep).drain()

        assert handler.calls[0] == ids, "the batch was tried in one call first"
        assert handler.applied == [i for i in ids if i != culprit]
        assert handler.attempts_of(culprit) == 1 + retry.max_attempts
        for other in ids:
            if other != culprit:
                assert handler.attempts_of(other) == 2  # the batch, then alone
        assert len(sleep.delays) == retry.max_attempts - 1
        for attempt, delay in enumerate(sleep.delays, start=1):
            base = BASE_BACKOFF * 2.0 ** (attempt - 1)
            assert base * (1 - JITTER) <= delay <= base
        assert sleep.delays == sorted(sleep.delays)
        assert len(set(sleep.delays)) == len(sleep.delays)

        dead = only_dead_letter(bus, "g")
        assert dead.event_id == culprit
        assert dead.event_seq == bus.fetch("other", bus.partition_of(SUBJECT), 3)[2].seq
        assert dead.event_type == events[2].type
        assert dead.subject == SUBJECT
        assert dead.correlation_id == str(events[2].correlation)
        assert dead.error_type == "ApplyError"
        assert dead.error == f"cannot apply {culprit}"
        assert "Traceback" in dead.traceback
        assert "ApplyError" in dead.traceback
        assert dead.attempts == retry.max_attempts
        assert dead.status == "dead"
        assert dead.replayed_at is None
        assert dead.context["partition"] == bus.partition_of(SUBJECT)
        assert dead.context["idempotency_key"] == "k2"
        assert dead.context["handler"] == RecordingHandler.name
        assert dead.context["permanent"] is False
        assert bus.lag("g") == 0
        assert bus.fetch("g", bus.partition_of(SUBJECT), 100) == []
        assert bus.dead_letter_count("g") == 1
        assert bus.dead_letter_count("other") == 0

    def test_permanent_error_is_dead_lettered_at_once(self, bus: Bus) -> None:
        events = [envelope(key=f"k{i}") for i in range(3)]
        bus.append(events)
        culprit = str(events[1].id)
        handler = RecordingHandler()
        handler.fail_on(culprit, PoisonError, "unknown item")
        sleep = RecordingSleep()

        Consumer(bus, "g", handler, policy(permanent=(PoisonError,)), sleep=sleep).drain()

        assert handler.attempts_of(culprit) == 2  # the batch, then once alone
        assert sleep.delays == []
        dead = only_dead_letter(bus, "g")
        assert (dead.event_id, dead.attempts, dead.error_type) == (culprit, 1, "PoisonError")
        assert dead.error == "unknown item"
        assert dead.context["permanent"] is True
        assert handler.applied == [str(events[0].id), str(events[2].id)]
        assert bus.lag("g") == 0

    def test_retry_keeps_order_within_a_partition(self, bus: Bus) -> None:
        # Use a second subject that lands in another partition.
        other_subject = next(
            s
            for s in (f"ITEM{i}@LOC9" for i in range(100))
            if bus.partition_of(s) != bus.partition_of(SUBJECT)
        )
        events = [envelope(key="a"), envelope(key="x"), envelope(key="b"), envelope(key="c")]
        elsewhere = envelope(other_subject, key="z")
        bus.append([*events, elsewhere])
        a, x, b, c = (str(e.id) for e in events)
        handler = RecordingHandler()
        handler.fail_on(x)
        sleep = RecordingSleep(handler.journal)

        Consumer(bus, "g", handler, policy(max_attempts=3), sleep=sleep).drain()

        journal = handler.journal
        applied = [event_id for what, event_id in journal if what == "applied"]
        assert [i for i in applied if i != str(elsewhere.id)] == [a, b, c]
        failures_of_x = [n for n, entry in enumerate(journal) if entry == ("failed", x)]
        assert len(failures_of_x) == 1 + 3  # the batch, then 3 attempts alone
        assert journal.index(("applied", b)) > failures_of_x[-1]
        assert journal.index(("applied", c)) > failures_of_x[-1]
        assert failures_of_x[0] < journal.index(("applied", a)) < failures_of_x[1]
        assert [entry[0] for entry in journal].count("sleep") == 2
        assert str(elsewhere.id) in applied
        assert only_dead_letter(bus, "g").event_id == x

    # replay ------------------------------------------------------------------------------

    def _dead_lettered(self, bus: Bus, events: Sequence[Envelope]) -> RecordingHandler:
        """Append ``events``, consume them with a handler failing on all; return the handler."""
        bus.append(events)
        handler = RecordingHandler()
        for event in events:
            handler.fail_on(str(event.id))
        Consumer(bus, "g", handler, policy(max_attempts=2), sleep=RecordingSleep()).drain()
        assert bus.dead_letter_count("g") == len(events)
        return handler

    def test_replay_by_id_applies_once_and_marks_replayed(self, bus: Bus) -> None:
        event = envelope()
        handler = self._dead_lettered(bus, [event])
        dead = only_dead_letter(bus, "g")
        handler.heal(str(event.id))
        consumer = Consumer(bus, "g", handler, policy(), sleep=RecordingSleep())

        report = consumer.replay(DeadLetterFilter(ids=(dead.id,)), actor="test")

        assert report.applied == [dead.id]
        assert report.failed == {}
        assert handler.applied == [str(event.id)]
        replayed = only_dead_letter(bus, "g")
        assert replayed.status == "replayed"
        assert replayed.replayed_at is not None
        assert replayed.attempts == dead.attempts
        assert bus.dead_letter_count("g") == 0

        again = consumer.replay(DeadLetterFilter(ids=(dead.id,)), actor="test")

        assert again.applied == []
        assert again.failed == {}
        assert handler.applied == [str(event.id)]
        assert bus.lag("g") == 0

    def test_replay_by_event_type_and_subject(self, bus: Bus) -> None:
        dispensed = envelope("ITEM1@WARD1", kind=MovementKind.DISPENSE)
        wasted = envelope("ITEM2@WARD2", kind=MovementKind.WASTAGE)
        handler = self._dead_lettered(bus, [dispensed, wasted])
        handler.heal(str(dispensed.id))
        handler.heal(str(wasted.id))
        consumer = Consumer(bus, "g", handler, policy(), sleep=RecordingSleep())
        by_event = {d.event_id: d for d in bus.dead_letters(DeadLetterFilter(group="g"))}

        report = consumer.replay(DeadLetterFilter(event_type=wasted.type), actor="test")

        assert report.applied == [by_event[str(wasted.id)].id]
        assert handler.applied == [str(wasted.id)]
        assert bus.dead_letter_count("g") == 1

        report = consumer.replay(DeadLetterFilter(subject="ITEM1@WARD1"), actor="test")

        assert report.applied == [by_event[str(dispensed.id)].id]
        assert handler.applied == [str(wasted.id), str(dispensed.id)]
        assert bus.dead_letter_count("g") == 0
        statuses = {d.status for d in bus.dead_letters(DeadLetterFilter(status=None))}
        assert statuses == {"replayed"}

    def test_replay_is_scoped_to_the_consumers_group(self, bus: Bus) -> None:
        event = envelope()
        handler = self._dead_lettered(bus, [event])
        dead = only_dead_letter(bus, "g")
        handler.heal(str(event.id))

        report = Consumer(bus, "other", handler, policy()).replay(
            DeadLetterFilter(ids=(dead.id,)), actor="test"
        )

        assert report.applied == []
        assert handler.applied == []
        assert bus.dead_letter_count("g") == 1

    def test_replay_that_fails_again_stays_dead_with_the_new_error(self, bus: Bus) -> None:
        event = envelope()
        handler = self._dead_lettered(bus, [event])
        dead = only_dead_letter(bus, "g")
        handler.fail_on(str(event.id), PoisonError, "still broken: unknown unit")
        consumer = Consumer(bus, "g", handler, policy(), sleep=RecordingSleep())

        report = consumer.replay(DeadLetterFilter(ids=(dead.id,)), actor="test")

        assert report.applied == []
        assert list(report.failed) == [dead.id]
        assert "still broken" in report.failed[dead.id]
        after = only_dead_letter(bus, "g")
        assert after.status == "dead"
        assert after.replayed_at is None
        assert after.attempts == dead.attempts + 1
        assert after.error_type == "PoisonError"
        assert after.error == "still broken: unknown unit"
        assert "PoisonError" in after.traceback
        assert handler.applied == []
        assert bus.dead_letter_count("g") == 1

    # idempotent consumers ----------------------------------------------------------------

    def test_idempotent_handler_applies_redeliveries_once(self, bus: Bus, engine: Engine) -> None:
        events = [envelope(f"ITEM{i % 3}@LOC4", key=f"k{i}") for i in range(6)]
        bus.append(events)
        ids = sorted(str(e.id) for e in events)
        # k1's effect fails after its claim (in the batch, then alone): the claim must roll back
        # with it, or k1 and its batch-mates would be skipped as already applied.
        handler = DedupHandler(engine, fail_after_claim={str(events[1].id): 2})
        sleep = RecordingSleep()

        Consumer(bus, "g", handler, policy(), sleep=sleep).drain()

        assert sorted(handler.applied) == ids
        assert len(sleep.delays) == 1
        assert bus.dead_letter_count("g") == 0

        # Redelivery: a group without positions, and the same messages handed over twice.
        Consumer(bus, "replica", handler, policy(), sleep=sleep).drain()
        redelivered = fetch_all(bus, "g2")
        handler(redelivered)
        handler([*redelivered, *redelivered])

        assert sorted(handler.applied) == ids


# --- adapters ------------------------------------------------------------------------------


class TestSqlBus(BusContract):
    """The embedded SQL log, on SQLite or PostgreSQL (MEDBRIDGE_DATABASE_URL)."""

    @pytest.fixture
    def make_bus(self, engine: Engine) -> MakeBus:
        def make(partitions: int) -> Bus:
            return SqlBus(engine, partitions=partitions)

        return make

    @pytest.fixture
    def reopen(self, database_url: str) -> Iterator[Reopen]:
        engines: list[Engine] = []

        def reopen_bus(bus: Bus) -> Bus:
            engines.append(create_db_engine(database_url))
            return SqlBus(engines[-1], partitions=bus.partitions)

        yield reopen_bus
        for other in engines:
            other.dispose()

    def crash(self, bus: Bus) -> None:
        """The SQL log keeps nothing in the process: positions are rows."""


@pytest.mark.nats
class TestJetStreamBus(BusContract):
    """NATS JetStream (the server at ``nats_url``; a stream of its own per test, deleted after),
    with its dead letters in the SQL store. A short ack wait lets crash tests finish soon."""

    @pytest.fixture
    def jetstream(self, nats_stream: JetStreamConfig) -> JetStreamConfig:
        return replace(nats_stream, ack_wait=1.0)

    @pytest.fixture
    def make_bus(self, engine: Engine, jetstream: JetStreamConfig) -> Iterator[MakeBus]:
        buses: list[JetStreamBus] = []

        def make(partitions: int) -> Bus:
            buses.append(
                JetStreamBus(replace(jetstream, partitions=partitions), SqlDeadLetterStore(engine))
            )
            return buses[-1]

        yield make
        cleanup = JetStreamBus(buses[0].config, SqlDeadLetterStore(engine)) if buses else None
        for bus in buses:
            bus.close()
        if cleanup is not None:
            cleanup.delete_stream()
            cleanup.close(hand_back=False)

    @pytest.fixture
    def reopen(self, engine: Engine) -> Iterator[Reopen]:
        buses: list[JetStreamBus] = []

        def reopen_bus(bus: Bus) -> Bus:
            assert isinstance(bus, JetStreamBus)
            buses.append(JetStreamBus(bus.config, SqlDeadLetterStore(engine)))
            return buses[-1]

        yield reopen_bus
        for bus in buses:
            bus.close()

    def crash(self, bus: Bus) -> None:
        assert isinstance(bus, JetStreamBus)
        bus.close(hand_back=False)
