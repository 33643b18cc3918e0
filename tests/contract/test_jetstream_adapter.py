"""What only the JetStream adapter has: a duplicate window that ends (after which the
consumers' own dedup records keep the effect exactly once), and its choice by settings."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from medbridge.bus.consumer import Consumer
from medbridge.bus.dead_letters import SqlDeadLetterStore
from medbridge.bus.jetstream import JetStreamBus, JetStreamConfig
from medbridge.bus.port import AppendResult, BusError, BusMessage, RetryPolicy
from medbridge.bus.sql import SqlBus
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.runtime.adapters import bus_from_settings
from medbridge.settings import Settings
from medbridge.store.dedup import claim

pytestmark = pytest.mark.db


def dispensed(key: str) -> EventEnvelope[StockMovement]:
    data = StockMovement(
        kind=MovementKind.DISPENSE,
        item="ITEM1",
        location="LOC1",
        quantity=Decimal("1"),
        unit="EA",
        occurred_at=datetime(2024, 5, 1, 8, 30, tzinfo=UTC),
    )
    return EventEnvelope[StockMovement](
        type=data.event_type,
        source="window-test",
        subject="ITEM1@LOC1",
        idempotency_key=key,
        data=data,
    )


class Ledger:
    """An idempotent consumer: claims keys in the transaction of its effect."""

    name = "window-ledger"

    def __init__(self, engine: Engine) -> None:
        self.engine, self.applied = engine, list[str]()

    def __call__(self, messages: Sequence[BusMessage]) -> None:
        with self.engine.begin() as conn:
            fresh = claim(conn, self.name, messages)
        self.applied.extend(m.idempotency_key for m in fresh)


@pytest.fixture
def short_window(nats_stream: JetStreamConfig, engine: Engine) -> Iterator[JetStreamBus]:
    bus = JetStreamBus(replace(nats_stream, duplicate_window=0.5), SqlDeadLetterStore(engine))
    yield bus
    bus.delete_stream()
    bus.close()


@pytest.mark.nats
def test_resend_after_the_window_is_stored_again_and_applied_once(
    short_window: JetStreamBus, engine: Engine
) -> None:
    bus = short_window
    [original] = bus.append([dispensed("src:MSG-1")])
    [inside] = bus.append([dispensed("src:MSG-1")])
    assert inside == AppendResult(original.event_id, original.seq, True, original.correlation_id)

    deadline = time.monotonic() + 30
    after = inside
    while after.duplicate and time.monotonic() < deadline:
        time.sleep(0.2)
        [after] = bus.append([dispensed("src:MSG-1")])

    assert after.duplicate is False, "outside the window the stream stores it again"
    assert after.seq > original.seq
    ledger = Ledger(engine)
    Consumer(bus, "ledger", ledger, RetryPolicy()).drain()
    assert ledger.applied == ["src:MSG-1"], "the consumer's dedup record skips the second copy"
    assert bus.lag("ledger") == 0


@pytest.mark.nats
def test_bus_url_chooses_jetstream(
    nats_stream: JetStreamConfig, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path,
        bus_url=nats_stream.url,
        bus_stream=nats_stream.stream,
        bus_subject_prefix=nats_stream.subject_prefix,
        bus_partitions=3,
        bus_duplicate_window=30,
    )
    bus = bus_from_settings(settings, engine)
    assert isinstance(bus, JetStreamBus)
    try:
        assert bus.partitions == 3
        assert bus.config.duplicate_window == 30
        assert isinstance(bus.dead_letter_store, SqlDeadLetterStore)
        [result] = bus.append([dispensed("src:MSG-2")])
        assert bus.get(result.seq) is not None
    finally:
        bus.delete_stream()
        bus.close()


@pytest.mark.nats
def test_a_stream_keeps_its_partition_count(nats_stream: JetStreamConfig, engine: Engine) -> None:
    bus = JetStreamBus(replace(nats_stream, partitions=4), SqlDeadLetterStore(engine))
    try:
        [result] = bus.append([dispensed("src:MSG-3")])
        other = replace(nats_stream, partitions=4, duplicate_window=60.0, ack_wait=5.0)
        reopened = JetStreamBus(other, SqlDeadLetterStore(engine))  # other settings: updated
        assert reopened.get(result.seq) == bus.get(result.seq)
        reopened.close()

        with pytest.raises(BusError, match="partitions"):
            JetStreamBus(replace(nats_stream, partitions=3), SqlDeadLetterStore(engine))
    finally:
        bus.delete_stream()
        bus.close()


def test_no_bus_url_chooses_the_sql_log(engine: Engine, database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path, bus_partitions=5)
    bus = bus_from_settings(settings, engine)
    assert isinstance(bus, SqlBus)
    assert bus.partitions == 5
