"""Summarised GL posting (issue 17) on the database, against the FakeErp (the same summarizer
runs against Tryton in tests/peers/test_tryton_summary.py): consumption entries become one
ERP move per (hour, facility), exactly once; a late dispense goes to the next slice; every
summary line drills down to the entries behind it; reconciliation compares per summary."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.bus.port import RetryPolicy
from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.cli import UsageError, _build
from medbridge.cli import app as cli
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.gl_summary import GlPostingMode, SummaryPeriod, net_lines
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy, PostingWindows, requeue
from medbridge.flows.gl_summary import GlPostingPolicy, GlSummarizer
from medbridge.flows.intake import Submission
from medbridge.flows.reconciliation import reconcile_period
from medbridge.governance.clients import Role
from medbridge.observability.kpis import Dashboard
from medbridge.runtime.policies import gl_posting_policy
from medbridge.settings import Settings
from medbridge.store import erp_postings, gl_summaries
from medbridge.store import ledger as ledger_store
from medbridge.store.erp_postings import PostingStatus
from medbridge.store.trace import trace

pytestmark = pytest.mark.db

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
GL = GlPostingPolicy(
    mode=GlPostingMode.SUMMARISED,
    grace=300.0,
    retry=RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.01),
)


@pytest.fixture
def summarised(engine: Engine, settings: Settings) -> Iterator[MedBridge]:
    mb = MedBridge.build(settings.model_copy(update={"erp_gl_posting": "summarised"}))
    mb.seed_demo()
    yield mb
    mb.stop_workers()


def movement(kind: MovementKind, minute: int, quantity: str, hour: int = 10) -> StockMovement:
    return StockMovement(
        kind=kind,
        item="VANCO-1G",
        location="H1-PHARM",
        quantity=Decimal(quantity),
        unit="VIAL",
        lot="V2611A",
        expiry=date(2028, 3, 31),
        unit_cost=Money(amount=Decimal("6.85")) if kind is MovementKind.RECEIPT else None,
        occurred_at=AT.replace(hour=hour, minute=minute),
    )


def submit(mb: MedBridge, *movements: StockMovement) -> None:
    mb.intake.submit(
        [Submission(m, f"gl-{m.kind.value}-{m.occurred_at:%H%M}") for m in movements],
        source="gl-summary-test",
    )
    mb.consumers["ledger"].drain()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def test_a_slice_of_dispenses_is_one_move_exactly_once(summarised: MedBridge) -> None:
    mb = summarised
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, *(movement(MovementKind.DISPENSE, 5 * n, "2") for n in range(8)))
    with mb.engine.connect() as conn:
        postings = erp_postings.postings(conn)
    by_status = {s: sorted(p.entry_id for p in postings if p.status is s) for s in PostingStatus}
    assert len(by_status[PostingStatus.SUMMARISING]) == 8  # dispenses wait for their slice
    assert len(by_status[PostingStatus.PENDING]) == 1  # the receipt is posted per event

    fake, clock = FakeErp(), Clock(AT + timedelta(hours=1, minutes=4))
    summarizer = GlSummarizer(mb.engine, fake, GL, now=clock)
    assert summarizer.run_once() == (0, 0)  # the 10:00 slice is within its grace
    clock.at = AT + timedelta(hours=1, minutes=6)
    fake.lose_next_answer()  # the move is made, the answer lost: the summary is retried
    assert summarizer.run_once() == (1, 0)
    clock.at += timedelta(seconds=1)
    assert summarizer.run_once() == (0, 1)  # ... and finds the move, never makes a second
    assert summarizer.run_once() == (0, 0)  # a re-run closes and posts nothing
    [move] = fake.moves("SUM-H1-2026-11-20T10")
    assert len(fake.moves()) == 1

    # the move's lines equal the sums of the entries behind it
    with mb.engine.connect() as conn:
        entries = ledger_store.journal(conn, entry_ids=by_status[PostingStatus.SUMMARISING])
        posted = erp_postings.postings(conn, entry_ids=by_status[PostingStatus.SUMMARISING])
    assert len(entries) == 8
    expected = {(a, cc): n for (a, cc, _, _), n in net_lines(entries).items()}
    assert {(ln.account, ln.cost_center): ln.debit - ln.credit for ln in move.lines} == expected
    assert sum(ln.debit for ln in move.lines) == Decimal("109.60")  # 16 vials at 6.85
    assert {(p.status, p.erp_id) for p in posted} == {(PostingStatus.POSTED, move.move_id)}
    with mb.engine.connect() as conn:  # the trace names the summary a dispense went into
        steps = trace(conn, entries[0].correlation_id)
    [step] = [s for s in steps if s.kind == "erp_posting"]
    assert step.detail == {
        "status": "posted",
        "erp_id": move.move_id,
        "summary_id": "SUM-H1-2026-11-20T10",
        "destination": "tryton",
        "role": "record",
    }

    # reconciliation compares per summary: balanced once the receipt is posted too
    ErpPosting(mb.engine, fake, ErpPostingPolicy(rate_limit=1000.0)).drain()
    report = reconcile_period(mb.engine, fake, "2026-11")
    assert report.differences == ()


def test_a_late_dispense_goes_to_the_next_open_slice(summarised: MedBridge) -> None:
    mb = summarised
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, movement(MovementKind.DISPENSE, 10, "1"), movement(MovementKind.DISPENSE, 20, "1"))
    fake, clock = FakeErp(), Clock(AT + timedelta(hours=1, minutes=10))
    summarizer = GlSummarizer(mb.engine, fake, GL, now=clock)
    assert summarizer.run_once() == (1, 1)
    submit(mb, movement(MovementKind.DISPENSE, 50, "3"))  # happened at 10:50, arrives 11:10
    submit(mb, movement(MovementKind.DISPENSE, 15, "1", hour=11))
    clock.at = AT + timedelta(hours=2, minutes=10)
    assert summarizer.run_once() == (1, 1)
    with mb.engine.connect() as conn:
        rows = gl_summaries.drill_down(conn, "SUM-H1-2026-11-20T11")
    slices = sorted({(r.entry_id, r.event_slice.hour) for r in rows}, key=lambda x: x[1])
    assert [hour for _, hour in slices] == [10, 11]  # the late one keeps its own slice
    [late] = fake.moves("SUM-H1-2026-11-20T11")
    assert {ln.debit for ln in late.lines} - {Decimal(0)} == {Decimal("27.40")}  # 4 x 6.85
    assert len(fake.moves("SUM-H1-2026-11-20T10")) == 1


def test_every_summary_line_drills_down_to_its_entries_through_the_api(
    summarised: MedBridge,
) -> None:
    mb = summarised
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, *(movement(MovementKind.DISPENSE, 7 * n, str(n + 1)) for n in range(5)))
    GlSummarizer(mb.engine, FakeErp(), GL, now=Clock(AT + timedelta(hours=2))).run_once()
    reader = mb.clients.register("gl-analyst", Role.READER)
    other = mb.clients.register("h2-analyst", Role.READER, facilities=["H2"])
    with TestClient(mb.api(), headers={"X-API-Key": reader}) as client:
        found = client.get("/v1/erp-summaries/SUM-H1-2026-11-20T10/entries")
        assert found.status_code == 200, found.text
        body = found.json()
        assert (body["status"], body["entries"], body["facility"]) == ("posted", 5, "H1")
        for line in body["lines"]:
            debit = sum((Decimal(e["debit"]) for e in line["entries"]), Decimal(0))
            credit = sum((Decimal(e["credit"]) for e in line["entries"]), Decimal(0))
            assert Decimal(line["debit"]) - Decimal(line["credit"]) == debit - credit
            assert len(line["entries"]) == 5
        assert client.get("/v1/erp-summaries/SUM-H1-1999-01-01T00/entries").status_code == 404
        counts = client.get("/v1/erp-postings").json()["counts"]
        assert counts == {"pending": 1, "posted": 5, "failed": 0, "summarising": 0}
    with TestClient(mb.api(), headers={"X-API-Key": other}) as client:
        assert client.get("/v1/erp-summaries/SUM-H1-2026-11-20T10/entries").status_code == 403


def test_consumption_is_summarised_by_default_and_per_event_on_request(
    medbridge: MedBridge, settings: Settings
) -> None:
    submit(medbridge, movement(MovementKind.RECEIPT, 0, "10", hour=9))
    submit(medbridge, movement(MovementKind.DISPENSE, 5, "1"))
    with medbridge.engine.connect() as conn:  # the receipt per event, the dispense summarised
        assert erp_postings.counts(conn) == {
            PostingStatus.PENDING: 1,
            PostingStatus.SUMMARISING: 1,
            PostingStatus.POSTED: 0,
            PostingStatus.FAILED: 0,
        }
    per_event = MedBridge.build(settings.model_copy(update={"erp_gl_posting": "per_event"}))
    submit(per_event, movement(MovementKind.DISPENSE, 6, "1"))
    with per_event.engine.connect() as conn:
        counts = erp_postings.counts(conn)
    assert (counts[PostingStatus.PENDING], counts[PostingStatus.SUMMARISING]) == (2, 1)
    assert (
        dataclasses.replace(GL, mode=GlPostingMode.PER_EVENT).summarises(MovementKind.DISPENSE)
        is False
    )


def test_medbridge_run_demo_summarises_per_minute_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path
) -> None:
    monkeypatch.delenv("MEDBRIDGE_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MEDBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("MEDBRIDGE_VAR_DIR", str(tmp_path / "var"))
    built = []
    try:
        built.append(_build(demo=True))  # `medbridge run --demo`
        demo = gl_posting_policy(built[-1].settings)
        assert (demo.mode, demo.period, demo.grace, demo.interval) == (
            GlPostingMode.SUMMARISED,
            SummaryPeriod.MINUTE,
            10.0,
            5.0,
        )
        built.append(_build())  # `medbridge run`: an hour, 300 s after its end
        plain = gl_posting_policy(built[-1].settings)
        assert (plain.period, plain.grace) == (SummaryPeriod.HOUR, 300.0)
        monkeypatch.setenv("MEDBRIDGE_ERP_SUMMARY_PERIOD", "hour")
        built.append(_build(demo=True))  # what the operator set wins in the demo too
        assert gl_posting_policy(built[-1].settings).period is SummaryPeriod.HOUR
    finally:
        for mb in built:
            mb.engine.dispose()


def test_the_cli_drills_a_summary_down_to_its_entries(
    summarised: MedBridge, database_url: str
) -> None:
    mb = summarised
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, movement(MovementKind.DISPENSE, 10, "1"), movement(MovementKind.DISPENSE, 20, "2"))
    GlSummarizer(mb.engine, FakeErp(), GL, now=Clock(AT + timedelta(hours=2))).run_once()
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    shown = CliRunner().invoke(cli, ["erp", "summary", "SUM-H1-2026-11-20T10"], env=env)
    assert shown.exit_code == 0, shown.output
    with mb.engine.connect() as conn:
        entry_ids = {r.entry_id for r in gl_summaries.drill_down(conn, "SUM-H1-2026-11-20T10")}
    assert len(entry_ids) == 2
    assert all(entry_id in shown.output for entry_id in entry_ids)
    assert "20.55" in shown.output  # the net of each line: 3 vials at 6.85
    assert "2 entries" in shown.output
    unknown = CliRunner().invoke(cli, ["erp", "summary", "SUM-H1-1999-01-01T00"], env=env)
    assert isinstance(unknown.exception, UsageError)  # main() tells it in one line, exit 2
    assert str(unknown.exception) == "no summary SUM-H1-1999-01-01T00"


def test_a_refused_summary_is_a_dead_letter_until_requeued_and_holds_are_kept(
    summarised: MedBridge, database_url: str
) -> None:
    mb = summarised
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, movement(MovementKind.DISPENSE, 10, "1"), movement(MovementKind.DISPENSE, 20, "2"))
    fake = FakeErp(accounts={"1400-H1"})  # the drug expense account is missing in the ERP
    clock = Clock(AT + timedelta(hours=1, minutes=30))  # 11:30 UTC
    held = dataclasses.replace(GL, windows=PostingWindows.parse(["11:00-12:00"]))
    assert GlSummarizer(mb.engine, fake, held, now=clock).run_once() == (1, 0)  # held
    summarizer = GlSummarizer(mb.engine, fake, GL, now=clock)
    assert summarizer.post_due() == 1
    with mb.engine.connect() as conn:
        failed = gl_summaries.get(conn, "SUM-H1-2026-11-20T10")
        waiting = {p.status for p in erp_postings.postings(conn)}
    assert failed is not None
    assert failed.status is gl_summaries.SummaryStatus.FAILED
    assert "5100-H1" in (failed.last_error or "")
    assert PostingStatus.SUMMARISING in waiting  # its entries wait with it, not lost
    dashboard = Dashboard(mb.engine, mb.bus, list(mb.consumers))
    assert dashboard.erp_outbox().failed == 1  # a dead letter on the dashboard (and alerts)
    assert dashboard.erp_outbox(frozenset({"H2"})).failed == 0
    assert summarizer.post_due() == 0  # a dead letter is not retried by itself
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    listed = CliRunner().invoke(cli, ["erp", "postings"], env=env)
    assert "SUM-H1-2026-11-20T10 (summary): ErpRejected" in listed.output
    assert "summarising: 2" in listed.output
    fake.add_account("5100-H1")
    assert requeue(mb.engine, "SUM-H1-2026-11-20T10", actor="gl-test")
    assert not requeue(mb.engine, "SUM-H1-2026-11-20T10", actor="gl-test")  # pending now
    clock.at = datetime.now(UTC) + timedelta(minutes=1)  # requeue makes it due at the wall time
    assert summarizer.post_due() == 1
    assert len(fake.moves("SUM-H1-2026-11-20T10")) == 1
    assert dashboard.erp_outbox().failed == 0
    with mb.engine.connect() as conn:
        statuses = {p.status for p in erp_postings.postings(conn)}
    assert PostingStatus.SUMMARISING not in statuses


def test_the_console_lists_summaries_and_drills_one_down(summarised: MedBridge) -> None:
    mb = summarised
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, movement(MovementKind.DISPENSE, 10, "1"), movement(MovementKind.DISPENSE, 20, "2"))
    GlSummarizer(mb.engine, FakeErp(), GL, now=Clock(AT + timedelta(hours=2))).run_once()
    with mb.engine.connect() as conn:
        entry_ids = {r.entry_id for r in gl_summaries.drill_down(conn, "SUM-H1-2026-11-20T10")}
    for name, facilities, sees in (("finance-h1", ["H1"], True), ("finance-h2", ["H2"], False)):
        key = mb.clients.register(name, Role.FINANCE, facilities=facilities)
        with TestClient(mb.api(), base_url="http://127.0.0.1") as browser:
            token = CSRF.search(browser.get("/console/sign-in").text)
            assert token is not None
            signed = browser.post(
                "/console/sign-in",
                data={"client": name, "key": key, "csrf_token": token.group(1), "next": ""},
                follow_redirects=False,
            )
            assert signed.status_code == 303
            listed = browser.get("/console/erp-summaries")
            assert listed.status_code == 200
            assert ("SUM-H1-2026-11-20T10" in listed.text) is sees
            page = browser.get("/console/erp-summaries/SUM-H1-2026-11-20T10")
            assert page.status_code == (200 if sees else 403)
            if sees:
                assert all(entry_id in page.text for entry_id in entry_ids)
                assert "20.55" in page.text  # each line's net: 3 vials at 6.85
            assert browser.get("/console/erp-summaries/SUM-H1-1999-01-01T00").status_code == 404


def test_reconciliation_dates_a_late_entry_as_its_summary_across_a_month_end(
    summarised: MedBridge,
) -> None:
    mb = summarised
    last_hour = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)

    def at(minute: int, kind: MovementKind, quantity: str) -> StockMovement:
        return movement(kind, 0, quantity).model_copy(
            update={"occurred_at": last_hour + timedelta(minutes=minute)}
        )

    submit(mb, at(1, MovementKind.RECEIPT, "50"), at(10, MovementKind.DISPENSE, "1"))
    fake, clock = FakeErp(), Clock(last_hour + timedelta(hours=1, minutes=6))
    summarizer = GlSummarizer(mb.engine, fake, GL, now=clock)
    assert summarizer.run_once() == (1, 1)  # November's last hour
    submit(mb, at(55, MovementKind.DISPENSE, "2"))  # happened in November, arrives too late
    clock.at += timedelta(hours=1)
    assert summarizer.run_once() == (1, 1)  # ... into December's first hour
    [december] = fake.moves("SUM-H1-2026-12-01T00")
    assert december.posting_date == date(2026, 12, 1)
    ErpPosting(mb.engine, fake, ErpPostingPolicy(rate_limit=1000.0)).drain()
    for period in ("2026-11", "2026-12"):
        report = reconcile_period(mb.engine, fake, period)
        assert report.differences == (), period
        assert report.balanced, period


def test_the_summaries_share_the_destinations_rate_limit_and_circuit(
    summarised: MedBridge,
) -> None:
    """The summarizer runs in its destination's outbox worker with that worker's limiter and
    breaker: an open circuit holds the summary back untried; each call takes a token."""
    mb = summarised
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, movement(MovementKind.DISPENSE, 10, "2"))
    fake, clock = FakeErp(), Clock(AT + timedelta(hours=2))
    ticks, sleeps = [0.0], []  # the worker's monotonic clock, moved on only by its sleeps

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        ticks[0] += seconds

    policy = ErpPostingPolicy(failure_threshold=1, cool_down=3600, rate_limit=4.0)
    worker = ErpPosting(mb.engine, fake, policy, clock=lambda: ticks[0], sleep=sleep)
    summarizer = GlSummarizer(
        mb.engine, fake, GL, now=clock, limiter=worker.limiter, breaker=worker.breaker
    )
    worker.breaker.failure()  # the ERP is out: the circuit opens for an hour
    calls = len(fake.calls)
    assert summarizer.run_once() == (1, 0)  # the slice closes, its summary is not tried
    assert len(fake.calls) == calls
    with mb.engine.connect() as conn:
        summary = gl_summaries.get(conn, "SUM-H1-2026-11-20T10")
    assert summary is not None
    assert summary.status is gl_summaries.SummaryStatus.PENDING
    assert summary.last_error == "the ERP's circuit is open"

    worker.breaker.success()  # closed again
    clock.at += timedelta(hours=1)
    assert summarizer.run_once() == (0, 1)
    assert [m.reference for m in fake.moves()] == ["SUM-H1-2026-11-20T10"]
    assert sleeps == []  # the summary's call took the destination's one token ...
    worker.limiter.acquire()
    assert sleeps == [0.25]  # ... so the worker's next call waits its turn (4 calls/s)
