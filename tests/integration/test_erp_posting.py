"""Buffered posting of journal entries to the ERP (the FakeErp here; the same flow runs
against Tryton in the peer tests): outbox, exactly once through lost answers and outages,
rate limit, hold windows, dead letters, and the reconciliation checkpoint."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from tests.ledger_support import record_entries

from medbridge.app import MedBridge
from medbridge.bus.outbound import BreakerState
from medbridge.bus.port import RetryPolicy
from medbridge.canonical.base import Money
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.reconciliation import DifferenceKind
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy, PostingWindows, requeue
from medbridge.flows.intake import Submission
from medbridge.flows.reconciliation import reconcile_period
from medbridge.governance.clients import Role
from medbridge.store import erp_postings
from medbridge.store.erp_postings import PostingStatus
from medbridge.store.tables import erp_postings as erp_postings_table
from medbridge.store.tables import journal_entries

pytestmark = pytest.mark.db

DAY = date(2026, 11, 20)
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.01)


def policy(**overrides: object) -> ErpPostingPolicy:
    """Fast retries and cool-downs; no rate limit to speak of unless a test sets one."""
    base = ErpPostingPolicy(
        rate_limit=1000.0, cool_down=0.05, failure_threshold=3, lease=2.0, retry=FAST_RETRY
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def entry(n: int, amount: str = "12.50", account: str = "5100-H1") -> JournalEntry:
    a = Decimal(amount)
    return JournalEntry(
        entry_id=f"JE-{n:04d}",
        posting_date=DAY,
        description=f"test entry {n}",
        source_event_id=f"event-{n:04d}",
        correlation_id=f"corr-{n:04d}",
        lines=(
            JournalLine(account=account, debit=a, cost_center="H1-CC-PHARM", facility="H1"),
            JournalLine(account="1300-H1", credit=a, facility="H1"),
        ),
    )


def record(engine: Engine, *entries: JournalEntry) -> None:
    with engine.begin() as conn:
        record_entries(conn, list(entries))


def statuses(engine: Engine) -> dict[str, erp_postings.Posting]:
    with engine.connect() as conn:
        return {p.entry_id: p for p in erp_postings.postings(conn)}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def max_in_window(times: list[float], width: float = 1.0) -> int:
    return max((sum(1 for u in times if t <= u < t + width) for t in times), default=0)


# --- outbox --------------------------------------------------------------------------------


def test_journal_entry_gets_its_pending_posting_in_the_same_transaction(engine: Engine) -> None:
    record(engine, entry(1))
    [posting] = statuses(engine).values()
    assert (posting.entry_id, posting.status, posting.erp_id) == ("JE-0001", "pending", None)

    def failing_batch() -> None:
        with engine.begin() as conn:
            record_entries(conn, [entry(2)])
            raise RuntimeError("the batch fails after the insert")

    with pytest.raises(RuntimeError):
        failing_batch()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(journal_entries)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(erp_postings_table)).scalar_one() == 1


def test_worker_posts_pending_entries_with_the_erp_id(engine: Engine) -> None:
    record(engine, *(entry(n) for n in range(1, 8)))
    fake = FakeErp()
    worker = ErpPosting(engine, fake, policy(batch_size=3))
    assert worker.drain() == 7
    found = statuses(engine)
    assert {p.status for p in found.values()} == {PostingStatus.POSTED}
    for entry_id, posting in found.items():
        [move] = fake.moves(entry_id)
        assert posting.erp_id == move.move_id
        assert posting.posted_at is not None
    assert worker.drain() == 0
    assert len(fake.moves()) == 7


def test_a_wake_ends_the_idle_wait_of_a_running_worker(engine: Engine) -> None:
    """A workflow step that queued a document wakes its process's worker: it posts at once
    instead of after its idle poll (here ten minutes: without the wake the wait below would
    time out)."""
    fake = FakeErp()
    worker = ErpPosting(engine, fake, policy())
    rounds: list[int] = []
    poll = worker.poll_once

    def counted() -> int:
        done = poll()
        rounds.append(done)
        return done

    worker.poll_once = counted  # type: ignore[method-assign]
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=worker.run, args=(stop, 600.0), kwargs={"wake": wake}, daemon=True
    )
    thread.start()
    try:
        wait_for(lambda: bool(rounds), "the first (empty) round")
        record(engine, entry(1))
        wake.set()
        wait_for(lambda: statuses(engine)["JE-0001"].status == "posted", "the woken worker")
    finally:
        stop.set()
        wake.set()
        thread.join(10)
    assert not thread.is_alive()
    assert rounds[0] == 0


def test_a_lost_answer_is_retried_and_posts_exactly_one_move(engine: Engine) -> None:
    record(engine, entry(1))
    fake = FakeErp()
    fake.lose_next_answer(1)
    ErpPosting(engine, fake, policy()).drain()
    [move] = fake.moves("JE-0001")
    posting = statuses(engine)["JE-0001"]
    assert (posting.status, posting.erp_id, posting.attempts) == ("posted", move.move_id, 2)
    assert [c.outcome for c in fake.calls] == ["lost_answer", "ok"]


def test_rejected_entry_is_a_dead_letter_until_fixed_and_requeued(engine: Engine) -> None:
    record(engine, entry(1, account="5199-H1"), entry(2))
    fake = FakeErp(accounts={"5100-H1", "1300-H1"})
    worker = ErpPosting(engine, fake, policy())
    worker.drain()
    found = statuses(engine)
    assert found["JE-0002"].status == "posted"
    failed = found["JE-0001"]
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert "5199-H1" in failed.last_error
    assert "field account" in failed.last_error
    assert fake.moves("JE-0001") == []

    assert requeue(engine, "JE-0002", actor="test") is False  # only failed postings are requeued
    fake.add_account("5199-H1")
    assert requeue(engine, "JE-0001", actor="test") is True
    worker.drain()
    assert statuses(engine)["JE-0001"].status == "posted"
    assert len(fake.moves("JE-0001")) == 1


def test_refused_credentials_trip_the_circuit_and_lose_nothing(engine: Engine) -> None:
    record(engine, entry(1), entry(2))
    fake = FakeErp()
    fake.refuse_credentials()
    worker = ErpPosting(engine, fake, policy(auth_cool_down=0.05))
    assert worker.poll_once() == 0
    assert worker.breaker.state is BreakerState.OPEN
    assert {p.status for p in statuses(engine).values()} == {PostingStatus.PENDING}
    fake.accept_credentials()
    worker.drain()
    assert {p.status for p in statuses(engine).values()} == {PostingStatus.POSTED}


# --- rate limit ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.mark.parametrize("limit", [4, 8])
def test_rate_limit_holds_in_every_one_second_window(engine: Engine, limit: int) -> None:
    """One token per port call: each call posts a batch (here of 2), and no one-second window
    holds more calls than the limit."""
    record(engine, *(entry(n) for n in range(1, 41)))
    clock = FakeClock()
    fake = FakeErp(clock=clock.now)
    worker = ErpPosting(
        engine,
        fake,
        policy(rate_limit=float(limit), batch_size=2),
        clock=clock.now,
        sleep=clock.sleep,
    )
    assert worker.drain() == 40
    times = fake.call_times("post_journal_entries")
    assert len(times) == 20  # 40 entries, 2 per call
    assert fake.call_times() == times  # no other call reached the ERP
    assert max_in_window(times) == limit
    assert len(fake.moves()) == 40


def test_rate_limit_holds_in_real_time(engine: Engine) -> None:
    record(engine, *(entry(n) for n in range(1, 61)))
    fake = FakeErp()
    ErpPosting(engine, fake, policy(rate_limit=20.0, batch_size=2)).drain()
    times = fake.call_times("post_journal_entries")
    assert len(times) == 30
    assert max_in_window(times) <= 20  # the ERP's own clock; no assertion on durations


def test_a_batch_is_one_call_and_an_entry_refused_in_it_fails_alone(engine: Engine) -> None:
    """Ten entries, one on an account the ERP does not know: one call; nine posted, the one
    refused is a dead letter with its reason, each with its own outbound message."""
    record(engine, *(entry(n) for n in range(1, 10)), entry(10, account="9999-H9"))
    fake = FakeErp(accounts=("5100-H1", "1300-H1"))
    worker = ErpPosting(engine, fake, policy(batch_size=10))
    assert worker.poll_once() == 10
    assert [c.method for c in fake.calls] == ["post_journal_entries"]
    with engine.connect() as conn:
        found = {p.entry_id: p for p in erp_postings.postings(conn)}
    refused = found.pop(entry(10).entry_id)
    assert refused.status is PostingStatus.FAILED
    assert "9999-H9" in (refused.last_error or "")
    assert {p.status for p in found.values()} == {PostingStatus.POSTED}
    assert len(fake.moves()) == 9
    assert worker.breaker.state is BreakerState.CLOSED


# --- hold windows --------------------------------------------------------------------------


def test_nothing_is_posted_inside_a_hold_window_and_all_after(engine: Engine) -> None:
    record(engine, entry(1), entry(2))
    zone = "America/New_York"
    local = datetime.now(UTC).astimezone(ZoneInfo(zone))
    window = f"{local - timedelta(minutes=1):%H:%M}-{local + timedelta(minutes=30):%H:%M}"
    clock = {"now": datetime.now(UTC)}
    fake = FakeErp()
    worker = ErpPosting(
        engine,
        fake,
        policy(windows=PostingWindows.parse([window], zone)),
        now=lambda: clock["now"],
    )
    assert worker.held()
    assert worker.drain() == 0
    assert worker.poll_once() == 0
    assert fake.calls == []
    clock["now"] += timedelta(minutes=45)
    assert not worker.held()
    assert worker.drain() == 2
    assert len(fake.moves()) == 2


# --- an outage under a stream of postings --------------------------------------------------


def receipt(n: int) -> Submission:
    movement = StockMovement(
        kind=MovementKind.RECEIPT,
        item="VANCO-1G",
        location="H1-PHARM",
        quantity=Decimal(1),
        unit="VIAL",
        lot="V2611A",
        expiry=date(2028, 3, 31),
        unit_cost=Money(amount=Decimal("6.85")),
        occurred_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
    )
    return Submission(movement, f"stream-{n}")


def circuit_gauge(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('medbridge_erp_circuit_state{erp="tryton"}'):
            return float(line.split()[-1])
    raise AssertionError("medbridge_erp_circuit_state is not on /metrics")


def test_erp_outage_under_a_stream_buffers_then_drains_without_duplicates(
    medbridge: MedBridge,
) -> None:
    fake = FakeErp()
    worker = ErpPosting(medbridge.engine, fake, policy(rate_limit=200.0, batch_size=5))
    ledger = medbridge.consumers["ledger"]
    stop, produced = threading.Event(), threading.Event()

    def produce() -> None:
        for n in range(60):
            medbridge.intake.submit([receipt(n)], source="stream-test")
            ledger.drain()
            time.sleep(0.01)
        produced.set()

    def posted() -> int:
        with medbridge.engine.connect() as conn:
            return erp_postings.counts(conn)[PostingStatus.POSTED]

    producer = threading.Thread(target=produce, name="producer")
    runner = threading.Thread(target=worker.run, args=(stop, 0.005), name="erp-posting")
    with TestClient(medbridge.api()) as client:
        producer.start()
        runner.start()
        try:
            wait_for(lambda: posted() >= 5, "the first postings")
            assert circuit_gauge(client) == 0
            fake.go_down()
            wait_for(lambda: worker.breaker.state is BreakerState.OPEN, "the circuit to open")
            assert circuit_gauge(client) in (1, 2)  # open, or half-open for a trial
            backlog = worker.backlog()
            wait_for(lambda: worker.backlog() >= backlog + 10, "the backlog to grow")
            fake.come_up()
            wait_for(produced.is_set, "the producer")
            wait_for(lambda: worker.backlog() == 0, "the backlog to drain")
        finally:
            stop.set()
            fake.come_up()
            producer.join(30)
            runner.join(30)
        assert circuit_gauge(client) == 0

    history = list(worker.breaker.history)
    opened = history.index(BreakerState.OPEN)
    assert BreakerState.HALF_OPEN in history[opened:]
    assert history[-1] is BreakerState.CLOSED
    assert any(c.outcome == "down" for c in fake.calls)

    found = statuses(medbridge.engine)
    assert len(found) == 60
    assert {p.status for p in found.values()} == {PostingStatus.POSTED}
    for entry_id, posting in found.items():
        [move] = fake.moves(entry_id)  # exactly once
        assert posting.erp_id == move.move_id
    assert len(fake.moves()) == 60
    assert reconcile_period(medbridge.engine, fake, "2026-11").balanced


# --- reconciliation ------------------------------------------------------------------------


def test_reconciliation_finds_exactly_the_planted_and_the_missing(engine: Engine) -> None:
    record(engine, *(entry(n) for n in range(1, 6)))
    fake = FakeErp()
    ErpPosting(engine, fake, policy()).drain()
    report = reconcile_period(engine, fake, "2026-11")
    assert report.differences == ()
    assert (report.entries, report.moves) == (5, 5)

    planted = fake.plant_move(
        "HAND-77",
        DAY,
        [
            ("5100-H1", "H1-CC-PHARM", Decimal("3.00"), Decimal(0)),
            ("1300-H1", None, Decimal(0), Decimal("3.00")),
        ],
    )
    [difference] = reconcile_period(engine, fake, "2026-11").differences
    assert (difference.kind, difference.reference, difference.move_id) == (
        DifferenceKind.UNEXPECTED_IN_ERP,
        "HAND-77",
        planted,
    )
    assert difference.erp_amount == Decimal("3.00")
    fake.delete_move(planted)

    [move] = fake.moves("JE-0003")
    fake.delete_move(move.move_id)
    [difference] = reconcile_period(engine, fake, "2026-11").differences
    assert (difference.kind, difference.reference) == (DifferenceKind.MISSING_IN_ERP, "JE-0003")
    assert reconcile_period(engine, fake, "2026-10").differences == ()


def test_reconciliation_and_posting_statuses_through_the_api(medbridge: MedBridge) -> None:
    record(medbridge.engine, entry(1), entry(2), entry(3, account="5199-H1"))
    fake = FakeErp(accounts={"5100-H1", "1300-H1"})
    ErpPosting(medbridge.engine, fake, policy()).drain()
    reader = medbridge.clients.register("finance-analyst", Role.READER)
    api = medbridge.api()
    with TestClient(api, headers={"X-API-Key": reader}) as client:
        assert client.get("/v1/reconciliation/erp", params={"period": "2026-11"}).status_code == 503
        api.state.services = dataclasses.replace(api.state.services, erp=fake)
        assert client.get("/v1/reconciliation/erp").status_code == 422
        report = client.get("/v1/reconciliation/erp", params={"period": "2026-11"}).json()
        assert report["balanced"] is False
        assert [(d["kind"], d["reference"]) for d in report["differences"]] == [
            ("missing_in_erp", "JE-0003")
        ]
        fake.plant_move(
            "HAND-1",
            DAY,
            [("5100-H1", None, Decimal(1), Decimal(0)), ("1300-H1", None, Decimal(0), Decimal(1))],
        )
        kinds = [
            d["kind"]
            for d in client.get("/v1/reconciliation/erp", params={"period": "2026-11"}).json()[
                "differences"
            ]
        ]
        assert kinds == ["missing_in_erp", "unexpected_in_erp"]

        failed = client.get("/v1/erp-postings", params={"status": "failed"}).json()
        assert failed["counts"] == {"pending": 0, "posted": 2, "failed": 1, "summarising": 0}
        [item] = failed["items"]
        assert item["entry_id"] == "JE-0003"
        assert "5199-H1" in item["last_error"]
        assert client.get("/v1/erp-postings", params={"status": "lost"}).status_code == 422

        entries = {e["entry_id"]: e for e in client.get("/v1/journal-entries").json()["items"]}
        assert entries["JE-0001"]["posting_status"] == "posted"
        assert entries["JE-0001"]["erp_id"] == fake.moves("JE-0001")[0].move_id
        assert (entries["JE-0003"]["posting_status"], entries["JE-0003"]["erp_id"]) == (
            "failed",
            None,
        )


def test_failed_posting_is_requeued_through_the_api(medbridge: MedBridge) -> None:
    record(medbridge.engine, entry(1, account="5199-H1"))
    fake = FakeErp(accounts={"5100-H1", "1300-H1"})
    worker = ErpPosting(medbridge.engine, fake, policy())
    worker.drain()
    admin = medbridge.ensure_admin_key()[0]
    reader = medbridge.clients.register("finance-analyst", Role.READER)
    with TestClient(medbridge.api(), headers={"X-API-Key": admin}) as client:
        path = "/v1/erp-postings/JE-0001/requeue"
        assert client.post(path, headers={"X-API-Key": reader}).status_code == 403
        fake.add_account("5199-H1")
        assert client.post(path).json() == {"entry_id": "JE-0001", "status": "pending"}
        assert client.post(path).status_code == 409  # pending now: nothing to requeue
    worker.drain()
    assert statuses(medbridge.engine)["JE-0001"].status == "posted"
    assert len(fake.moves("JE-0001")) == 1
