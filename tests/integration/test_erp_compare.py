"""The shadow run against two ERP destinations (FakeErps; the same flow runs against two real
trytond servers in tests/peers/test_tryton_shadow.py): GL routed to ``legacy`` with ``cloud``
as shadow, each destination posted by its own ErpPosting worker; the comparison of the two
(flow, API, console) and the ERP reconciliation per destination."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.ledger_support import record_entries

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.cli import main
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.erp_compare import ComparisonKind, Side
from medbridge.domain.erp_routing import ErpDomain
from medbridge.domain.reconciliation import DifferenceKind
from medbridge.flows.erp_compare import CompareError, ErpCompare
from medbridge.flows.erp_posting import ErpPosting
from medbridge.flows.gl_summary import GlSummarizer
from medbridge.flows.intake import Submission
from medbridge.flows.reconciliation import reconcile_period
from medbridge.governance.clients import Role
from medbridge.runtime.policies import gl_posting_policy
from medbridge.settings import ErpDestinationSettings, ErpRouteSettings, Settings
from medbridge.store import erp_postings

pytestmark = pytest.mark.db

DAY = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
PERIOD = "2026-11"


def movement(n: int) -> Submission:
    """Receipts and dispenses in turns, at two facilities."""
    facility = ("H1", "H2")[n % 4 // 2]
    common = {"item": "VANCO-1G", "location": f"{facility}-PHARM", "unit": "VIAL"}
    if n % 2 == 0:
        m = StockMovement(
            kind=MovementKind.RECEIPT,
            quantity=Decimal(4),
            lot="V2611A",
            expiry=date(2028, 3, 31),
            unit_cost=Money(amount=Decimal("6.85")),
            occurred_at=DAY,
            **common,
        )
    else:
        m = StockMovement(
            kind=MovementKind.DISPENSE,
            quantity=Decimal(1),
            occurred_at=DAY,
            encounter_ref=f"enc-{n:06d}",
            **common,
        )
    return Submission(m, f"shadow-{n}")


def build(settings: Settings, gl_posting: Literal["per_event", "summarised"]) -> MedBridge:
    """MedBridge with two destinations, GL of every facility to ``legacy``, shadowed to
    ``cloud`` (no url: the test hands each worker its FakeErp)."""
    mode = ErpDestinationSettings(gl_posting=gl_posting)
    two = settings.model_copy(
        update={
            "erps": {"legacy": mode, "cloud": mode},
            "erp_routes": {ErpDomain.GL: ErpRouteSettings(record="legacy", shadow=["cloud"])},
        }
    )
    mb = MedBridge.build(two)
    mb.seed_demo()
    return mb


@pytest.fixture
def shadowed(engine: Engine, settings: Settings) -> Iterator[MedBridge]:
    """Both destinations post per event (on an empty database)."""
    mb = build(settings, "per_event")
    yield mb
    mb.stop_workers()
    mb.engine.dispose()


@pytest.fixture
def summarising(engine: Engine, settings: Settings) -> Iterator[MedBridge]:
    """Both destinations summarise consumption per hour (the default)."""
    mb = build(settings, "summarised")
    yield mb
    mb.stop_workers()
    mb.engine.dispose()


def hand_lines(
    debit: str, credit: str, amount: str
) -> list[tuple[str, str | None, Decimal, Decimal]]:
    """A move's lines as booked by hand in an ERP (``FakeErp.plant_move``)."""
    a = Decimal(amount)
    return [(debit, None, a, Decimal(0)), (credit, None, Decimal(0), a)]


def run(mb: MedBridge, n: int, legacy: FakeErp, cloud: FakeErp) -> None:
    mb.intake.submit([movement(i) for i in range(n)], source="shadow-test")
    mb.consumers["ledger"].drain()
    for name, fake in (("legacy", legacy), ("cloud", cloud)):
        ErpPosting(mb.engine, fake, mb.erp_posting_policy(name)).drain()


def comparer(mb: MedBridge, legacy: FakeErp, cloud: FakeErp) -> ErpCompare:
    return ErpCompare(mb.engine, mb.erp_router(), {"legacy": legacy, "cloud": cloud}.get)


def entry_ids(mb: MedBridge, destination: str) -> list[str]:
    with mb.engine.connect() as conn:
        rows = erp_postings.postings(conn, destination=destination)
    assert {p.status for p in rows} == {erp_postings.PostingStatus.POSTED}
    return sorted(p.document for p in rows)


def test_the_shadow_holds_what_the_record_holds_and_a_planted_difference_is_exact(
    shadowed: MedBridge,
) -> None:
    legacy, cloud = FakeErp(), FakeErp()
    run(shadowed, 8, legacy, cloud)
    ids = entry_ids(shadowed, "legacy")
    assert len(ids) == 8
    assert entry_ids(shadowed, "cloud") == ids

    [report] = comparer(shadowed, legacy, cloud).compare(PERIOD)
    assert (report.left, report.right) == ("legacy", "cloud")
    assert report.identical
    groups = {(g.domain, g.facility): g for g in report.groups}
    assert set(groups) == {("gl", "H1"), ("gl", "H2")}
    for g in groups.values():
        assert (g.left_documents, g.right_documents) == (4, 4)
        assert g.left_debit == g.right_debit > 0
        assert g.debit_difference == 0
        assert g.credit_difference == 0

    # a move booked by hand in cloud, and one entry of legacy with another amount
    cloud.plant_move(
        "HAND-8",
        DAY.date(),
        hand_lines("5100-H2", "1400-H2", "2.50"),
    )
    [move] = legacy.moves(ids[0])
    changed = [
        (ln.account, ln.cost_center, ln.debit + Decimal("0.01") if ln.debit else ln.debit,
         ln.credit + Decimal("0.01") if ln.credit else ln.credit)
        for ln in move.lines
    ]  # fmt: skip
    legacy.delete_move(move.move_id)
    legacy.plant_move(ids[0], move.posting_date, changed)
    [report] = comparer(shadowed, legacy, cloud).compare(PERIOD)
    found = [(d.kind, d.reference, d.domain, d.facility, d.account) for d in report.differences]
    accounts = sorted(ln.account for ln in move.lines)
    assert found == [
        *((ComparisonKind.AMOUNT_DIFFERS, ids[0], "gl", "H1", a) for a in accounts),
        (ComparisonKind.ONLY_RIGHT, "HAND-8", None, "H2", None),
    ]
    for d in report.differences[:2]:
        assert abs(d.difference) == Decimal("0.01")
    assert report.differences[2].right == Side(Decimal("2.50"), Decimal("2.50"))

    # each ERP reconciled with what MedBridge routed to it
    clean = reconcile_period(shadowed.engine, cloud, PERIOD, destination="cloud")
    assert [(d.kind, d.reference) for d in clean.differences] == [
        (DifferenceKind.UNEXPECTED_IN_ERP, "HAND-8")
    ]
    dirty = reconcile_period(shadowed.engine, legacy, PERIOD, destination="legacy")
    assert {(d.kind, d.reference) for d in dirty.differences} >= {
        (DifferenceKind.AMOUNT_DIFFERS, ids[0])
    }


def test_reconciliation_per_destination_shows_both_erps_balances_equal_medbridges(
    shadowed: MedBridge,
) -> None:
    legacy, cloud = FakeErp(), FakeErp()
    run(shadowed, 8, legacy, cloud)
    reports = {
        name: reconcile_period(shadowed.engine, fake, PERIOD, destination=name)
        for name, fake in (("legacy", legacy), ("cloud", cloud))
    }
    for name, report in reports.items():
        assert report.differences == (), name
        assert (report.entries, report.moves) == (8, 8)
        balances = {(b.facility, b.role): b for b in report.balances if b.party is None}
        assert balances[("H1", "inventory")].erp == balances[("H1", "inventory")].medbridge > 0
        assert balances[("H2", "grni")].erp == balances[("H2", "grni")].medbridge < 0
    # the default destination's outbox ('tryton') has none of it: nothing routed there
    assert reconcile_period(shadowed.engine, legacy, PERIOD).entries == 0


def test_pairs_and_arguments(shadowed: MedBridge) -> None:
    legacy, cloud = FakeErp(), FakeErp()
    compare = comparer(shadowed, legacy, cloud)
    [pair] = compare.pairs()
    assert (pair.left, pair.right, pair.domains) == ("legacy", "cloud", frozenset({"gl"}))
    assert [(p.left, p.right, p.domains) for p in compare.pairs("cloud", "legacy")] == [
        ("cloud", "legacy", None)
    ]
    for args, argument in (
        (("2026-13", None, None), "period"),
        ((PERIOD, "erp9", "cloud"), "left"),
        ((PERIOD, "legacy", "nowhere"), "right"),
        ((PERIOD, "legacy", None), "right"),
        ((PERIOD, "legacy", "legacy"), "right"),
    ):
        with pytest.raises(CompareError) as raised:
            compare.compare(*args)
        assert raised.value.argument == argument, args


def test_the_api_and_the_console_compare_and_reconcile_per_destination(
    shadowed: MedBridge,
) -> None:
    legacy, cloud = FakeErp(), FakeErp()
    run(shadowed, 8, legacy, cloud)
    cloud.plant_move(
        "HAND-8",
        DAY.date(),
        hand_lines("5100-H2", "1400-H2", "2.50"),
    )
    finance = shadowed.clients.register("finance", Role.FINANCE)
    h1 = shadowed.clients.register("finance-h1", Role.FINANCE, facilities=["H1"])
    api = shadowed.api()
    with TestClient(api, headers={"X-API-Key": finance}, base_url="http://127.0.0.1") as client:
        svc = api.state.services
        assert svc.erp_name == "legacy"
        api.state.services = dataclasses.replace(svc, erp=legacy, erps={"cloud": cloud})

        body = client.get("/v1/erp/compare", params={"period": PERIOD}).json()
        assert body["identical"] is False
        [comparison] = body["comparisons"]
        assert (comparison["left"], comparison["right"]) == ("legacy", "cloud")
        groups = {(g["domain"], g["facility"]): g for g in comparison["groups"]}
        assert groups[("gl", "H1")]["differences"] == []
        assert Decimal(groups[("gl", "H1")]["debit_difference"]) == 0
        [planted] = groups[(None, "H2")]["differences"]
        assert planted == {
            "kind": "only_right",
            "reference": "HAND-8",
            "account": None,
            "left": {"debit": "0", "credit": "0"},
            "right": {"debit": "2.50", "credit": "2.50"},
            "difference": "0.00",  # net: the move balances
        }
        scoped = client.get(
            "/v1/erp/compare", params={"period": PERIOD}, headers={"X-API-Key": h1}
        ).json()
        assert {g["facility"] for c in scoped["comparisons"] for g in c["groups"]} == {"H1"}
        assert scoped["identical"] is True
        for params, name in (
            ({"period": "2026-13"}, "period"),
            ({"period": PERIOD, "left": "erp9", "right": "cloud"}, "left"),
            ({"period": PERIOD, "left": "legacy", "right": "erp9"}, "right"),
        ):
            answer = client.get("/v1/erp/compare", params=params)
            assert answer.status_code == 422, params
            assert answer.json()["detail"][0]["loc"] == ["query", name]

        for name, balanced in (("legacy", True), ("cloud", False)):
            report = client.get(
                "/v1/reconciliation/erp", params={"period": PERIOD, "erp": name}
            ).json()
            assert (report["erp"], report["balanced"]) == (name, balanced)
            assert all(
                Decimal(b["difference"]) == 0 for b in report["balances"] if b["facility"] == "H1"
            )
        wrong = client.get("/v1/reconciliation/erp", params={"period": PERIOD, "erp": "erp9"})
        assert wrong.status_code == 422
        assert wrong.json()["detail"][0]["loc"] == ["query", "erp"]

        token = client.get("/console/sign-in").text.split('name="csrf_token" value="')[1]
        client.post(
            "/console/sign-in",
            data={"client": "finance", "key": finance, "csrf_token": token.split('"')[0]},
        )
        page = client.get("/console/erp-compare", params={"period": PERIOD}).text
        assert "legacy vs cloud" in page
        assert "HAND-8" in page
        assert "1 difference(s)" in page
        page = client.get("/console/reconciliation", params={"period": PERIOD, "erp": "cloud"})
        assert "ERP cloud:" in page.text
        assert "HAND-8" in page.text


def test_a_journal_entry_routed_to_the_record_only_is_no_difference_of_a_shadowed_domain(
    shadowed: MedBridge,
) -> None:
    """A document of a domain the pair was not routed for is left out of the default pair's
    report (an invoice booked by legacy alone while only GL is shadowed)."""
    legacy, cloud = FakeErp(), FakeErp()
    run(shadowed, 2, legacy, cloud)
    entry = JournalEntry(
        entry_id="JE-INV-MIRROR",
        posting_date=DAY.date(),
        description="an invoice's mirror",
        source_event_id="inv-1",
        correlation_id="inv-1",
        booked_by="erp_document",
        erp_document="INV-1",
        lines=(
            JournalLine(account="2100-H1", debit=Decimal("5.00"), facility="H1"),
            JournalLine(account="2000-H1", credit=Decimal("5.00"), facility="H1", party="MEDSURG"),
        ),
    )
    with shadowed.engine.begin() as conn:
        record_entries(conn, [entry], shadowed.erp_router())
    legacy.plant_move(
        "INV-1",
        DAY.date(),
        hand_lines("2100-H1", "2000-H1", "5.00"),
    )
    [default] = comparer(shadowed, legacy, cloud).compare(PERIOD)
    assert default.identical
    [named] = comparer(shadowed, legacy, cloud).compare(PERIOD, "legacy", "cloud")
    assert [(d.kind, d.reference, d.domain) for d in named.differences] == [
        (ComparisonKind.ONLY_LEFT, "INV-1", "invoices")
    ]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["compare", "--period", "2026-13"],
            "medbridge: --period: period '2026-13' is not YYYY-MM",
        ),
        (
            ["compare", "--period", PERIOD, "--left", "erp9", "--right", "cloud"],
            "medbridge: --left: no ERP destination 'erp9' (known: legacy, cloud)",
        ),
        (["compare", "--period", PERIOD, "--left", "legacy"], "medbridge: --right: name both"),
        (["compare", "--period", PERIOD], "medbridge: --right: ERP destination 'cloud' has no"),
        (["reconcile", PERIOD, "--erp", "erp9"], "medbridge: --erp: no ERP destination 'erp9'"),
    ],
)
def test_the_cli_names_the_argument_at_fault_in_one_line(
    shadowed: MedBridge,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    config = tmp_path / "medbridge.toml"
    config.write_text(
        '[erps.legacy]\n[erps.cloud]\n[erp_routes.gl]\nrecord = "legacy"\nshadow = ["cloud"]\n'
    )
    monkeypatch.setenv("MEDBRIDGE_CONFIG_FILE", str(config))
    monkeypatch.setenv("MEDBRIDGE_DATABASE_URL", shadowed.settings.database_url)
    monkeypatch.setenv("MEDBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MEDBRIDGE_LOG_JSON", "false")
    monkeypatch.setattr(sys, "argv", ["medbridge", "erp", *argv])
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(says), err
    assert "\n" not in err


def test_summaries_compare_per_summary_under_the_gl_domain(summarising: MedBridge) -> None:
    legacy, cloud = FakeErp(), FakeErp()
    run(summarising, 8, legacy, cloud)  # the receipts, per event
    for name, fake in (("legacy", legacy), ("cloud", cloud)):
        policy = gl_posting_policy(summarising.settings, name)
        GlSummarizer(
            summarising.engine, fake, policy, now=lambda: DAY + timedelta(hours=2)
        ).run_once()
    summaries = sorted({m.reference for m in legacy.moves() if m.reference.startswith("SUM-")})
    assert len(summaries) == 2  # one slice per facility
    assert summaries == sorted(
        {m.reference for m in cloud.moves() if m.reference.startswith("SUM-")}
    )

    [report] = comparer(summarising, legacy, cloud).compare(PERIOD)
    assert report.identical
    for g in report.groups:  # 2 receipts and 1 summary of 2 dispenses per facility
        assert ((g.domain), g.left_documents, g.right_documents) == ("gl", 3, 3)
    # the summary of H2 posted with another amount in cloud
    [move] = cloud.moves(summaries[1])
    cloud.delete_move(move.move_id)
    cloud.plant_move(
        move.reference,
        move.posting_date,
        [(ln.account, ln.cost_center, ln.debit * 2, ln.credit * 2) for ln in move.lines],
    )
    [report] = comparer(summarising, legacy, cloud).compare(PERIOD)
    assert {(d.kind, d.reference, d.domain, d.facility) for d in report.differences} == {
        (ComparisonKind.AMOUNT_DIFFERS, summaries[1], "gl", "H2")
    }
    for name, fake in (("legacy", legacy), ("cloud", cloud)):
        reconciled = reconcile_period(summarising.engine, fake, PERIOD, destination=name)
        assert (reconciled.entries, reconciled.moves) == (6, 6), name
        assert reconciled.balanced is (name == "legacy")
