"""The group commit (bus.group_commit.GroupCommit) over a recording log: callers queued while
a commit runs are committed together; nobody is released before the commit returns; a
caller whose events the log refuses fails alone; a transient failure fails the batch."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from medbridge.bus.group_commit import GroupCommit
from medbridge.bus.port import AppendResult, BusError, BusUnavailable
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.movements import MovementKind, StockMovement


def event(key: str) -> EventEnvelope[Any]:
    movement = StockMovement(
        kind=MovementKind.DISPENSE,
        item="VANCO-1G",
        location="H1-ICU",
        quantity=Decimal(1),
        unit="VIAL",
        occurred_at=datetime.now(UTC),
    )
    return EventEnvelope[StockMovement](
        type=movement.event_type,
        source="test",
        subject="VANCO-1G@H1-ICU",
        idempotency_key=key,
        data=movement,
    )


class RecordingLog:
    """Appends in memory; the first call waits for ``gate``; keys in ``refused`` fail."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.refused: set[str] = set()
        self.unavailable = False

    def append(self, events: Sequence[EventEnvelope[Any]]) -> list[AppendResult]:
        keys = [e.idempotency_key for e in events]
        self.entered.set()
        self.gate.wait(10)
        if self.unavailable:
            raise BusUnavailable("down")
        if self.refused & set(keys):
            raise BusError("constraint")
        self.calls.append(keys)
        return [AppendResult(e.id, len(self.calls), False, uuid.uuid4()) for e in events]


def test_callers_queued_during_a_commit_are_committed_together() -> None:
    log = RecordingLog()
    writer = GroupCommit(log)
    first = writer.submit([event("a")])
    assert log.entered.wait(5)
    later = [writer.submit([event(f"b{n}"), event(f"c{n}")]) for n in range(10)]
    assert not first.done()  # nobody is released before the commit returns
    assert not any(f.done() for f in later)
    log.gate.set()
    assert [r.seq for r in first.result(5)] == [1]
    results = [f.result(5) for f in later]
    assert log.calls == [["a"], [k for n in range(10) for k in (f"b{n}", f"c{n}")]]
    assert all(len(r) == 2 and r[0].seq == 2 for r in results)
    writer.close()


def test_a_refused_caller_fails_alone() -> None:
    log = RecordingLog()
    log.refused = {"bad"}
    writer = GroupCommit(log)
    blocker = writer.submit([event("first")])
    assert log.entered.wait(5)
    good: list[Future[list[AppendResult]]] = [writer.submit([event("ok1")])]
    bad = writer.submit([event("bad"), event("with-bad")])
    good.append(writer.submit([event("ok2")]))
    log.gate.set()
    blocker.result(5)
    with pytest.raises(BusError):
        bad.result(5)
    assert [len(f.result(5)) for f in good] == [1, 1]
    assert ["ok1"] in log.calls
    assert ["ok2"] in log.calls
    assert not [c for c in log.calls if "with-bad" in c]
    writer.close()


def test_an_unavailable_log_fails_every_caller_of_the_batch() -> None:
    log = RecordingLog()
    log.unavailable = True
    writer = GroupCommit(log)
    futures = [writer.submit([event(f"k{n}")]) for n in range(5)]
    log.gate.set()
    for f in futures:
        with pytest.raises(BusUnavailable):
            f.result(5)
    assert log.calls == []
    writer.close()


def test_a_closed_writer_refuses_new_callers() -> None:
    log = RecordingLog()
    log.gate.set()
    writer = GroupCommit(log)
    assert len(writer.append([event("x")])) == 1
    writer.close()
    with pytest.raises(BusUnavailable):
        writer.submit([event("y")]).result(5)
