"""Cutover and rollback of the GL's system of record for one facility in the middle of a
stream (issue 17, "Done when" 2), with two ERP destinations (``legacy`` and ``cloud``, each a
FakeErp with its own ErpPosting worker) and the ledger routing GL to ``legacy``: every entry
queued before the cutover stays in ``legacy`` (posted or still in flight), every entry after
it goes to ``cloud`` as system of record (``legacy`` a shadow), each exactly once; a rollback
the same way back; the other facility never moves. Then the command's checks and its
surfaces: CLI, API, console."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.ledger_support import record_entries
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.bus.port import RetryPolicy
from medbridge.canonical.base import Money
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.cli import UsageError
from medbridge.cli import app as cli
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.erp_routing import ErpDomain, Role, Route
from medbridge.domain.gl_summary import GlPostingMode
from medbridge.flows import erp_cutover
from medbridge.flows.erp_cutover import (
    CutoverInPast,
    InvalidMoment,
    NotRouted,
    UnfitDestination,
    UnknownDomain,
    UnknownFacility,
    cut_over,
)
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.flows.gl_summary import GlPostingPolicy, GlSummarizer
from medbridge.flows.intake import Submission
from medbridge.governance.clients import Role as ClientRole
from medbridge.settings import Settings
from medbridge.store import audit, gl_summaries
from medbridge.store import erp_postings as outbox
from medbridge.store.erp_postings import PostingStatus

pytestmark = pytest.mark.db

DAY = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
ERPS: dict[str, dict[str, Any]] = {
    "legacy": {"gl_posting": "per_event"},
    "cloud": {"gl_posting": "per_event", "capabilities": ["general_ledger"]},
}
ROUTES = {"gl": {"record": "legacy"}, "invoices": {"record": "legacy"}}


def build(database_url: str, var: Path, gl_posting: str = "per_event") -> MedBridge:
    """MedBridge with two ERP destinations and GL routed to ``legacy``; the demo network."""
    erps = {name: d | {"gl_posting": gl_posting} for name, d in ERPS.items()}
    settings = Settings(
        database_url=database_url,
        var_dir=var,
        sqlite_synchronous="NORMAL",
        retry_initial_backoff=0.001,
        retry_max_backoff=0.01,
        retry_max_attempts=3,
        erps=erps,
        erp_routes=ROUTES,
    )
    mb = MedBridge.build(settings)
    mb.seed_demo()
    return mb


@pytest.fixture
def two_erps(database_url: str, engine: Any, tmp_path: Path) -> Iterator[MedBridge]:
    mb = build(database_url, tmp_path / "var")
    yield mb
    mb.stop_workers()
    mb.engine.dispose()


@pytest.fixture
def summarised(database_url: str, engine: Any, tmp_path: Path) -> Iterator[MedBridge]:
    """The same, both destinations summarising consumption per hour."""
    mb = build(database_url, tmp_path / "var", "summarised")
    yield mb
    mb.stop_workers()
    mb.engine.dispose()


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    return {
        "MEDBRIDGE_DATABASE_URL": database_url,
        "MEDBRIDGE_LOG_JSON": "false",
        "MEDBRIDGE_ERPS": json.dumps(ERPS),
        "MEDBRIDGE_ERP_ROUTES": json.dumps(ROUTES),
        "COLUMNS": "250",
    }


def worker(mb: MedBridge, name: str, erp: FakeErp) -> ErpPosting:
    fast = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.01)
    policy = ErpPostingPolicy(erp_name=name, batch_size=4, rate_limit=1000.0, retry=fast)
    return ErpPosting(mb.engine, erp, policy)


_serial = iter(range(1_000_000))


def movements(facility: str, dispenses: int, receipt: bool = False) -> list[Submission]:
    found = []
    if receipt:
        m = StockMovement(
            kind=MovementKind.RECEIPT,
            item="VANCO-1G",
            location=f"{facility}-PHARM",
            quantity=Decimal(100),
            unit="VIAL",
            lot="V2611A",
            expiry=date(2028, 3, 31),
            unit_cost=Money(amount=Decimal("6.85")),
            occurred_at=DAY,
        )
        found.append(Submission(m, f"cutover-{next(_serial)}"))
    for _ in range(dispenses):
        n = next(_serial)
        m = StockMovement(
            kind=MovementKind.DISPENSE,
            item="VANCO-1G",
            location=f"{facility}-PHARM",
            quantity=Decimal(1),
            unit="VIAL",
            occurred_at=DAY,
            encounter_ref=f"enc-{n:06d}",
        )
        found.append(Submission(m, f"cutover-{n}"))
    return found


def phase(mb: MedBridge, h1: int, h2: int, receipts: bool = False) -> dict[str, set[str]]:
    """Movements at H1 and H2 through the ledger: the new journal entries by facility."""
    with mb.engine.connect() as conn:
        before = {p.entry_id for p in outbox.postings(conn, limit=100_000)}
    batch = movements("H1", h1, receipts) + movements("H2", h2, receipts)
    mb.intake.submit(batch, source="cutover-test")
    mb.consumers["ledger"].drain()
    found: dict[str, set[str]] = {"H1": set(), "H2": set()}
    with mb.engine.connect() as conn:
        for p in outbox.postings(conn, limit=100_000):
            if p.entry_id not in before:
                assert p.facility is not None
                found[p.facility].add(p.entry_id)
    assert [len(found["H1"]), len(found["H2"])] == [h1 + receipts, h2 + receipts]
    return found


def roles(mb: MedBridge) -> dict[str, dict[str, Role]]:
    """Each entry's destinations with their roles, every row posted."""
    found: dict[str, dict[str, Role]] = {}
    with mb.engine.connect() as conn:
        for p in outbox.postings(conn, limit=100_000):
            assert p.status is PostingStatus.POSTED, (p.entry_id, p.destination, p.status)
            found.setdefault(p.entry_id, {})[p.destination] = p.role
    return found


def test_a_cutover_in_the_middle_of_a_stream_and_its_rollback_route_each_entry_once(
    two_erps: MedBridge,
) -> None:
    mb = two_erps
    legacy_erp, cloud_erp = FakeErp(), FakeErp()
    legacy, cloud = worker(mb, "legacy", legacy_erp), worker(mb, "cloud", cloud_erp)

    first = phase(mb, h1=6, h2=3, receipts=True)
    assert legacy.poll_once() == 4  # some posted, the rest still in flight at the cutover
    forth = cut_over(
        mb.engine, mb.erp_router(), "gl", "H1", "cloud", actor="finance", reason="go live"
    )
    assert forth.before == Route("legacy")
    assert forth.cutover.route == Route("cloud", ("legacy",))
    second = phase(mb, h1=6, h2=3)
    assert cloud.poll_once() == 4  # the cloud posts while legacy has some in flight
    back = cut_over(mb.engine, mb.erp_router(), ErpDomain.GL, "H1", "legacy", actor="finance")
    assert back.before == Route("cloud", ("legacy",))
    assert back.cutover.route == Route("legacy", ("cloud",))
    third = phase(mb, h1=6, h2=3)
    legacy.drain()
    cloud.drain()

    expected: dict[str, dict[str, Role]] = {}
    for entry in first["H1"] | first["H2"] | second["H2"] | third["H2"]:
        expected[entry] = {"legacy": Role.RECORD}
    for entry in second["H1"]:
        expected[entry] = {"cloud": Role.RECORD, "legacy": Role.SHADOW}
    for entry in third["H1"]:
        expected[entry] = {"legacy": Role.RECORD, "cloud": Role.SHADOW}
    assert roles(mb) == expected

    for name, erp in (("legacy", legacy_erp), ("cloud", cloud_erp)):
        wanted = {entry for entry, where in expected.items() if name in where}
        booked = [move.reference for move in erp.moves()]
        assert sorted(booked) == sorted(wanted), name  # each once, nothing else

    # the routing moments: before the cutover queued before it, after it queued after
    with mb.engine.connect() as conn:
        created = {
            (p.entry_id, p.destination): p.created_at for p in outbox.postings(conn, limit=1000)
        }
    assert max(created[(e, "legacy")] for e in first["H1"]) < forth.cutover.effective_at
    assert min(created[(e, "cloud")] for e in second["H1"]) >= forth.cutover.effective_at
    assert max(created[(e, "cloud")] for e in second["H1"]) < back.cutover.effective_at
    assert min(created[(e, "legacy")] for e in third["H1"]) >= back.cutover.effective_at

    with mb.engine.connect() as conn:
        logged = audit.entries(conn, action="erp.cutover")
        assert [(e.actor, e.target_id) for e in logged] == [("finance", "gl:H1")] * 2
        assert [(e.detail["from"], e.detail["to"]) for e in logged] == [
            ("legacy", "cloud"),
            ("cloud", "legacy"),
        ]
        assert logged[0].detail["reason"] == "go live"
        assert logged[1].detail["shadows"] == ["cloud"]
        assert [r.id for r in erp_cutover.history(conn)] == [forth.id, back.id]


def test_with_summarised_posting_each_destinations_summary_holds_what_was_routed_to_it(
    summarised: MedBridge,
) -> None:
    mb = summarised
    legacy_erp, cloud_erp = FakeErp(), FakeErp()
    first = phase(mb, h1=3, h2=2, receipts=True)
    forth = cut_over(mb.engine, mb.erp_router(), "gl", "H1", "cloud", actor="finance")
    second = phase(mb, h1=3, h2=2)
    cut_over(mb.engine, mb.erp_router(), "gl", "H1", "legacy", actor="finance")
    third = phase(mb, h1=3, h2=2)
    assert forth.before == Route("legacy")

    after_the_day = datetime.now(UTC) + timedelta(days=3650)  # every slice closed
    for name, erp in (("legacy", legacy_erp), ("cloud", cloud_erp)):
        gl = GlPostingPolicy(mode=GlPostingMode.SUMMARISED, destination=name, grace=0.0)
        GlSummarizer(mb.engine, erp, gl, now=lambda: after_the_day).run_once()
        worker(mb, name, erp).drain()  # the receipts, per event

    slice_h1, slice_h2 = "SUM-H1-2026-11-20T09", "SUM-H2-2026-11-20T09"
    with mb.engine.connect() as conn:
        behind = {
            (name, s): {
                line.entry_id for line in gl_summaries.drill_down(conn, s, destination=name)
            }
            for name in ("legacy", "cloud")
            for s in (slice_h1, slice_h2)
        }
    summarised_ones = set().union(*behind.values())
    receipts = (first["H1"] | first["H2"]) - summarised_ones  # per event, never summarised
    assert len(receipts) == 2
    dispenses = {f: (first[f] | second[f] | third[f]) - receipts for f in ("H1", "H2")}
    assert behind[("legacy", slice_h1)] == dispenses["H1"]  # record, shadow, record
    assert behind[("cloud", slice_h1)] == second["H1"] | third["H1"]  # record, then shadow
    assert behind[("legacy", slice_h2)] == dispenses["H2"]
    assert behind[("cloud", slice_h2)] == set()
    assert sorted(m.reference for m in legacy_erp.moves()) == sorted(
        [*receipts, slice_h1, slice_h2]
    )
    assert [m.reference for m in cloud_erp.moves()] == [slice_h1]
    assert {e: set(d) for e, d in roles(mb).items()} == {
        e: ({"legacy", "cloud"} if e in second["H1"] | third["H1"] else {"legacy"})
        for e in dispenses["H1"] | dispenses["H2"] | receipts
    }


def test_a_cutover_waits_for_every_transaction_that_routed_by_the_table_before_it(
    two_erps: MedBridge, backend: str
) -> None:
    """A transaction that queued documents by the old table commits before the cutover's
    moment is taken: no document queued after the moment was routed the old way."""
    mb = two_erps
    line = {"facility": "H1", "cost_center": "H1-CC-PHARM"}
    entry = JournalEntry(
        entry_id="JE-RACE",
        posting_date=DAY.date(),
        description="routed while a cutover is made",
        source_event_id="event-race",
        correlation_id="corr-race",
        lines=(
            JournalLine(account="5100-H1", debit=Decimal("1.00"), **line),
            JournalLine(account="1300-H1", credit=Decimal("1.00"), facility="H1"),
        ),
    )
    made: list[erp_cutover.CutoverMade] = []
    started = threading.Event()

    def make() -> None:
        started.set()
        made.append(cut_over(mb.engine, mb.erp_router(), "gl", "H1", "cloud", actor="finance"))

    with mb.engine.begin() as conn:
        [delivery] = mb.erp_router().journal(conn, [entry], datetime.now(UTC))
        assert delivery.destination == "legacy"
        record_entries(conn, [entry], mb.erp_router())
        thread = threading.Thread(target=make, name="cutover")
        thread.start()
        started.wait(10)
        if backend == "postgresql":  # the cutover waits for this transaction's lock
            wait_until_a_lock_is_awaited(mb)
        else:  # SQLite: this transaction holds the one write lock (BEGIN IMMEDIATE)
            thread.join(0.3)
        assert made == []
        committing = datetime.now(UTC)
    thread.join(30)
    [cutover] = made
    assert cutover.cutover.effective_at >= committing


def wait_until_a_lock_is_awaited(mb: MedBridge) -> None:
    for _ in range(3000):
        with mb.engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                    "'erp_routes'::regclass"
                )
            ).scalar_one()
        if waiting:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the cutover never waited for the transaction routing by the table")


def test_a_cutover_stated_for_later_routes_nothing_until_its_moment(two_erps: MedBridge) -> None:
    mb = two_erps
    later = datetime.now(UTC) + timedelta(hours=1)
    made = cut_over(
        mb.engine, mb.erp_router(), "gl", "*", "cloud", later, actor="finance", keep_shadow=False
    )
    assert made.cutover.effective_at == later
    assert made.cutover.route == Route("cloud")  # no shadow kept
    entries = phase(mb, h1=2, h2=2, receipts=True)
    with mb.engine.connect() as conn:
        routed = {(p.entry_id, p.destination) for p in outbox.postings(conn)}
        table = mb.erp_router().current(conn)
    assert routed == {(e, "legacy") for e in entries["H1"] | entries["H2"]}
    assert table.route(ErpDomain.GL, "H2", later) == Route("cloud")
    assert table.route(ErpDomain.GL, "H2", later - timedelta(seconds=1)) == Route("legacy")


def test_a_cutover_is_refused_naming_the_field_at_fault(two_erps: MedBridge) -> None:
    mb = two_erps
    router = mb.erp_router()
    now = datetime.now(UTC)
    refused: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (UnknownDomain, "domain", {"domain": "payroll"}),
        (UnknownFacility, "facility", {"facility": "H9"}),
        (UnknownFacility, "facility", {"facility": "H1-PHARM"}),  # a store, not a facility
        (UnfitDestination, "to", {"to": "nowhere"}),
        (UnfitDestination, "to", {"to": "legacy"}),  # the system of record already
        (UnfitDestination, "to", {"domain": "invoices", "to": "cloud"}),  # no payables
        (CutoverInPast, "at", {"at": now - timedelta(hours=1)}),
        (InvalidMoment, "at", {"at": datetime(2027, 1, 1)}),  # no time zone
        (InvalidMoment, "at", {"at": datetime.max.replace(tzinfo=timezone(-timedelta(hours=2)))}),
    ]
    for error, field, given in refused:
        args: dict[str, Any] = {"domain": "gl", "facility": "H1", "to": "cloud"} | given
        with pytest.raises(error) as raised:
            cut_over(mb.engine, router, actor="finance", **args)
        assert isinstance(raised.value, erp_cutover.CutoverError)
        assert isinstance(raised.value, ValueError)
        assert raised.value.field == field
        assert str(raised.value).startswith(f"{field}: ")
    # a domain no destination receives (only GL and invoices are routed here)
    with pytest.raises(NotRouted):
        cut_over(mb.engine, router, "receipts", "H1", "legacy", actor="finance")
    # within the clock skew: effective now, never before
    made = cut_over(mb.engine, router, "gl", "H1", "cloud", now - timedelta(seconds=5), actor="a")
    assert made.cutover.effective_at >= now
    with mb.engine.connect() as conn:
        assert len(audit.entries(conn, action="erp.cutover")) == 1  # the refused left nothing


def test_the_cli_cuts_over_and_back_and_shows_the_routes_and_the_history(
    two_erps: MedBridge, cli_env: dict[str, str]
) -> None:
    runner = CliRunner()
    args = ["erp", "cutover", "--domain", "gl", "--facility", "H1", "--to", "cloud"]
    done = runner.invoke(cli, [*args, "--no-shadow", "--reason", "go live"], env=cli_env)
    assert done.exit_code == 0, done.output
    assert "gl of H1 from legacy to cloud" in done.output
    assert "shadow: none" in done.output
    back = ["erp", "cutover", "--domain", "gl", "--facility", "H1", "--to", "legacy"]
    assert runner.invoke(cli, back, env=cli_env).exit_code == 0

    shown = runner.invoke(cli, ["erp", "routes"], env=cli_env)
    assert shown.exit_code == 0, shown.output
    rows = [line.split("│")[1:-1] for line in shown.output.splitlines() if "│" in line]
    cells = [[c.strip() for c in row] for row in rows]
    assert ["gl", "H2", "legacy", "", "(settings)"] in cells
    assert any(c[:4] == ["gl", "H1", "legacy", "cloud"] and c[4] != "(settings)" for c in cells)
    assert "2 cutover(s)" in shown.output
    assert "go live" in shown.output

    for extra, option in (
        (["--to", "nowhere"], "--to"),
        (["--facility", "H9"], "--facility"),
        (["--domain", "payroll"], "--domain"),
        (["--at", "2020-01-01T00:00:00Z"], "--at"),
        (["--at", "yesterday"], "--at"),
        (["--at", "2030-01-01T00:00:00"], "--at"),
    ):
        wrong = runner.invoke(cli, [*args, *extra], env=cli_env)
        assert isinstance(wrong.exception, UsageError), (extra, wrong.output)
        assert str(wrong.exception).startswith(f"{option}: "), str(wrong.exception)
        assert "\n" not in str(wrong.exception)


@pytest.fixture
def api(two_erps: MedBridge) -> Iterator[TestClient]:
    with TestClient(two_erps.api(), base_url="http://127.0.0.1") as client:
        yield client


def test_the_api_makes_cutovers_with_its_permission_and_scope_and_lists_the_routes(
    two_erps: MedBridge, api: TestClient
) -> None:
    mb = two_erps
    finance = {"X-API-Key": mb.clients.register("controller", ClientRole.FINANCE)}
    reader = {"X-API-Key": mb.clients.register("analyst", ClientRole.READER)}
    h2 = {"X-API-Key": mb.clients.register("h2-admin", ClientRole.ADMIN, facilities=["H2"])}
    body = {"domain": "gl", "facility": "H1", "to": "cloud", "reason": "go live"}

    assert api.post("/v1/erp/cutovers", json=body, headers=reader).status_code == 403
    assert api.post("/v1/erp/cutovers", json=body, headers=h2).status_code == 403
    everywhere = body | {"facility": "*"}
    assert api.post("/v1/erp/cutovers", json=everywhere, headers=h2).status_code == 403
    for wrong, field in (
        ({"to": "nowhere"}, "to"),
        ({"facility": "H9"}, "facility"),
        ({"domain": "payroll"}, "domain"),
        ({"at": "2020-01-01T00:00:00Z"}, "at"),
        ({"at": "2030-01-01T00:00:00"}, "at"),  # no time zone
        ({"at": "9999-12-31T23:59:59-23:00"}, "at"),  # past the year 9999 in UTC
        ({"reason": "go\x00live"}, "reason"),
    ):
        answer = api.post("/v1/erp/cutovers", json=body | wrong, headers=finance)
        assert answer.status_code == 422, (wrong, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["body", field], answer.json()

    made = api.post("/v1/erp/cutovers", json=body, headers=finance)
    assert made.status_code == 201, made.text
    assert made.json() | {"id": 0, "effective_at": ""} == {
        "id": 0,
        "effective_at": "",
        "domain": "gl",
        "facility": "H1",
        "record": "cloud",
        "shadows": ["legacy"],
        "before": {"record": "legacy", "shadows": []},
    }
    mine = api.post("/v1/erp/cutovers", json=body | {"facility": "H2"}, headers=h2)
    assert mine.status_code == 201, mine.text

    listed = api.get("/v1/erp/routes", headers=reader).json()
    gl = {r["facility"]: r for r in listed["routes"] if r["domain"] == "gl"}
    assert set(gl) == {"*", "H1", "H2"}
    assert (gl["*"]["record"], gl["*"]["since"]) == ("legacy", None)
    assert (gl["H1"]["record"], gl["H1"]["shadows"]) == ("cloud", ["legacy"])
    assert [(c["facility"], c["actor"]) for c in listed["cutovers"]] == [
        ("H1", "controller"),
        ("H2", "h2-admin"),
    ]
    scoped = api.get("/v1/erp/routes", headers=h2).json()
    assert {r["facility"] for r in scoped["routes"]} == {"*", "H2"}
    assert [c["facility"] for c in scoped["cutovers"]] == ["H2"]


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(browser: TestClient, client: str, key: str) -> None:
    page = browser.get("/console/sign-in").text
    token = CSRF.search(page)
    assert token
    answer = browser.post(
        "/console/sign-in",
        data={"client": client, "key": key, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def test_the_console_shows_the_routes_and_makes_a_cutover_with_csrf_and_permission(
    two_erps: MedBridge, api: TestClient
) -> None:
    mb = two_erps
    sign_in(api, "analyst", mb.clients.register("analyst", ClientRole.READER))
    page = api.get("/console/erp-routes")
    assert page.status_code == 200
    assert "legacy" in page.text
    assert "Cut over" not in page.text  # a reader sees no cutover form
    token = CSRF.search(page.text)
    assert token
    form = {"domain": "gl", "facility": "H1", "to": "cloud", "csrf_token": token.group(1)}
    assert api.post("/console/erp-routes/cutover", data=form).status_code == 403

    api.cookies.clear()
    sign_in(api, "controller", mb.clients.register("controller", ClientRole.FINANCE))
    page = api.get("/console/erp-routes")
    assert "Cut over" in page.text
    token = CSRF.search(page.text)
    assert token
    stale = form | {"csrf_token": "stale"}
    assert api.post("/console/erp-routes/cutover", data=stale).status_code == 403
    wrong = form | {"csrf_token": token.group(1), "to": "nowhere"}
    refused = api.post("/console/erp-routes/cutover", data=wrong, follow_redirects=False)
    assert refused.status_code == 303
    shown = api.get("/console/erp-routes").text
    assert re.search(r"not cut over: to: .*no ERP destination &#39;nowhere&#39;", shown)
    good = form | {"csrf_token": token.group(1), "reason": "go live"}
    done = api.post("/console/erp-routes/cutover", data=good, follow_redirects=False)
    assert done.status_code == 303, done.text
    shown = api.get("/console/erp-routes").text
    assert "go live" in shown
    assert "gl of H1 from legacy to cloud" in shown  # the flash
    with mb.engine.connect() as conn:
        [logged] = audit.entries(conn, action="erp.cutover")
    assert logged.actor == "controller"

    api.cookies.clear()
    key = mb.clients.register("h2-finance", ClientRole.FINANCE, facilities=["H2"])
    sign_in(api, "h2-finance", key)
    page = api.get("/console/erp-routes").text
    assert "go live" not in page  # H1's cutover is not shown to a client of H2
    token = CSRF.search(page)
    assert token
    theirs = form | {"csrf_token": token.group(1)}
    assert api.post("/console/erp-routes/cutover", data=theirs).status_code == 403
