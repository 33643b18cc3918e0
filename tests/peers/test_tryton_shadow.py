"""The shadow run against two REAL Tryton ERPs (issue 17, Done-when 1 and 3): GL routed to
``legacy`` (Tryton 7.0) and shadowed to ``cloud`` (Tryton 8.0), each posted by its own
ErpPosting worker from MedBridge's outbox.

* a run of receipts and dispenses at two facilities lands once in each ERP;
* ``medbridge erp compare`` finds 0 differences between them;
* differences planted in the ERPs (a move booked by hand in cloud, an entry that reached
  legacy with another amount) are reported exactly: reference, account, both amounts;
* the ERP reconciliation, run per destination, finds each ERP's inventory and GRNI balances
  per facility equal to MedBridge's ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.cli import app as cli
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.domain.erp_compare import ComparisonKind, Side
from medbridge.domain.erp_routing import ErpDomain
from medbridge.domain.reconciliation import DifferenceKind
from medbridge.flows.erp_compare import ErpCompare
from medbridge.flows.erp_posting import ErpPosting
from medbridge.flows.intake import Submission
from medbridge.flows.reconciliation import reconcile_period
from medbridge.settings import ErpDestinationSettings, ErpRouteSettings, Settings
from medbridge.store import erp_postings
from medbridge.store import ledger as ledger_store
from peers.tryton import TrytonPeer

pytestmark = [pytest.mark.peer]

DAY = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
PERIOD = "2026-11"
DESTINATIONS = ("legacy", "cloud")


def movement(n: int, tag: str) -> Submission:
    """Receipts and dispenses in turns, at two facilities: every one makes a journal entry
    (a receipt: inventory against GRNI; a dispense: drug expense against inventory)."""
    facility = ("H1", "H2")[n % 4 // 2]
    if n % 2 == 0:
        m = StockMovement(
            kind=MovementKind.RECEIPT,
            item="VANCO-1G",
            location=f"{facility}-PHARM",
            quantity=Decimal(4),
            unit="VIAL",
            lot="V2611A",
            expiry=date(2028, 3, 31),
            unit_cost=Money(amount=Decimal("6.85")),
            occurred_at=DAY,
        )
    else:
        m = StockMovement(
            kind=MovementKind.DISPENSE,
            item="VANCO-1G",
            location=f"{facility}-PHARM",
            quantity=Decimal(1),
            unit="VIAL",
            occurred_at=DAY,
            encounter_ref=f"enc-{tag}-{n:06d}",
        )
    return Submission(m, f"shadow-{tag}-{n}")


def _destination(peer: TrytonPeer, series: str) -> dict[str, object]:
    return {
        "url": peer.url,
        "database": peer.database,
        "user": peer.login,
        "password": peer.password,
        "series": series,
        "gl_posting": "per_event",
    }


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


@pytest.fixture
def config_file(
    tmp_path: Path, settings: Settings, tryton: TrytonPeer, tryton_cloud: TrytonPeer
) -> Path:
    """The settings of the shadow run as a hospital writes them: two ``[erps.*]`` and the GL
    route."""
    lines = [f'database_url = "{settings.database_url}"', f'var_dir = "{settings.var_dir}"']
    for name, peer, series in (("legacy", tryton, "7.0"), ("cloud", tryton_cloud, "8.0")):
        lines.append(f"[erps.{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in _destination(peer, series).items()]
    lines += ["[erp_routes.gl]", 'record = "legacy"', 'shadow = ["cloud"]']
    path = tmp_path / "medbridge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def shadowed(
    engine: Engine, settings: Settings, tryton: TrytonPeer, tryton_cloud: TrytonPeer
) -> Iterator[MedBridge]:
    two = settings.model_copy(
        update={
            "erps": {
                "legacy": ErpDestinationSettings.model_validate(_destination(tryton, "7.0")),
                "cloud": ErpDestinationSettings.model_validate(_destination(tryton_cloud, "8.0")),
            },
            "erp_routes": {ErpDomain.GL: ErpRouteSettings(record="legacy", shadow=["cloud"])},
        }
    )
    mb = MedBridge.build(two)
    mb.seed_demo()
    yield mb
    mb.stop_workers()
    mb.engine.dispose()


def adapter(mb: MedBridge, name: str) -> TrytonErp:
    erp = mb.erp(name)
    assert isinstance(erp, TrytonErp)
    return erp


def record(mb: MedBridge, n: int, tag: str) -> list[str]:
    """``n`` movements through MedBridge's intake and ledger: their entry ids."""
    mb.intake.submit([movement(i, tag) for i in range(n)], source="shadow-test")
    mb.consumers["ledger"].drain()
    with mb.engine.connect() as conn:
        return sorted(e.entry_id for e in ledger_store.journal(conn, period=PERIOD, limit=1000))


def post(mb: MedBridge) -> None:
    """Each destination's ErpPosting worker drains its outbox rows."""
    for name in DESTINATIONS:
        erp = adapter(mb, name)
        try:
            ErpPosting(mb.engine, erp, mb.erp_posting_policy(name)).drain(timeout=120)
        finally:
            erp.close()
    with mb.engine.connect() as conn:
        rows = erp_postings.postings(conn)
    assert {(p.status, p.last_error) for p in rows} == {(erp_postings.PostingStatus.POSTED, None)}


def compare(mb: MedBridge) -> ErpCompare:
    return ErpCompare(mb.engine, mb.erp_router(), mb.erp)


def plant_move(
    erp: TrytonErp, accounts: dict[str, int], amount: Decimal, on: date = DAY.date()
) -> None:
    """A move booked by hand in MedBridge's journal of the ERP on ``on``, straight over
    JSON-RPC."""
    client = erp.client
    [journal] = client.search_read("account.journal", [("code", "=", "MB")], ["id"], limit=1)
    [period] = client.search_read(
        "account.period",
        [("start_date", "<=", on), ("end_date", ">=", on)],
        ["id"],
        limit=1,
        order=[("start_date", "DESC")],
    )
    lines = [
        {"account": accounts["5100-H2"], "debit": amount, "credit": 0},
        {"account": accounts["1400-H2"], "debit": 0, "credit": amount},
    ]
    [planted] = client.create(
        "account.move",
        [
            {
                "journal": journal["id"],
                "period": period["id"],
                "date": on,
                "description": "HAND-8",
                "lines": [["create", lines]],
            }
        ],
    )
    client.button("account.move", "post", [planted])


def other_amount(entry: JournalEntry, delta: Decimal) -> JournalEntry:
    """``entry`` as another system would have posted it: every line ``delta`` more."""
    lines = tuple(
        JournalLine.model_validate(
            {
                **ln.model_dump(),
                "debit": ln.debit + delta if ln.debit else ln.debit,
                "credit": ln.credit + delta if ln.credit else ln.credit,
            }
        )
        for ln in entry.lines
    )
    return entry.model_copy(update={"lines": lines})


def test_the_shadow_run_compares_clean_and_a_planted_difference_is_reported_exactly(
    shadowed: MedBridge, tryton_cloud: TrytonPeer, config_file: Path
) -> None:
    ids = record(shadowed, 12, "a")
    assert len(ids) == 12
    post(shadowed)
    for name in DESTINATIONS:
        erp = adapter(shadowed, name)
        assert sorted(ln.reference for ln in erp.ledger_lines(DAY.date(), DAY.date())) == sorted(
            ids * 2
        ), name  # every entry once, two lines each
        erp.close()

    [report] = compare(shadowed).compare(PERIOD)
    assert (report.left, report.right) == ("legacy", "cloud")
    assert report.differences == ()
    groups = {(g.domain, g.facility): g for g in report.groups}
    assert set(groups) == {("gl", "H1"), ("gl", "H2")}
    for g in groups.values():
        assert (g.left_documents, g.right_documents) == (6, 6)
        assert g.left_debit == g.right_debit > 0
        assert g.debit_difference == 0

    env = {"MEDBRIDGE_CONFIG_FILE": str(config_file), "MEDBRIDGE_LOG_JSON": "false"}
    env |= {"COLUMNS": "250", "MEDBRIDGE_DATABASE_URL": shadowed.settings.database_url}
    clean = CliRunner().invoke(cli, ["erp", "compare", "--period", PERIOD], env=env)
    assert clean.exit_code == 0, clean.output
    assert "legacy vs cloud: 0 difference(s)" in clean.output

    # Done-when 3: each ERP's balances per facility equal MedBridge's ledger
    for name in DESTINATIONS:
        erp = adapter(shadowed, name)
        reconciled = reconcile_period(shadowed.engine, erp, PERIOD, destination=name)
        erp.close()
        assert reconciled.differences == (), name
        assert (reconciled.entries, reconciled.moves) == (12, 12)
        balances = {(b.facility, b.role): b for b in reconciled.balances if b.party is None}
        for facility in ("H1", "H2"):
            inventory, grni = balances[(facility, "inventory")], balances[(facility, "grni")]
            assert inventory.erp == inventory.medbridge > 0, (name, inventory)
            assert grni.erp == grni.medbridge < 0, (name, grni)
            assert balances[(facility, "accounts_payable")].difference == 0
    per_destination = CliRunner().invoke(cli, ["erp", "reconcile", PERIOD], env=env)
    assert per_destination.exit_code == 0, per_destination.output
    assert per_destination.output.count("12 entries, 12 ERP moves, 0 difference(s)") == 2

    # planted: a move booked by hand in cloud; an entry that reached legacy with 0.01 more
    cloud = adapter(shadowed, "cloud")
    plant_move(cloud, tryton_cloud.server.template["accounts"], Decimal("2.50"))
    cloud.close()
    later = [i for i in record(shadowed, 2, "b") if i not in ids]
    assert len(later) == 2
    with shadowed.engine.connect() as conn:
        [changed] = ledger_store.journal(conn, entry_ids=[later[0]])
    legacy = adapter(shadowed, "legacy")
    legacy.post_journal_entry(other_amount(changed, Decimal("0.01")))
    legacy.close()
    post(shadowed)  # legacy's worker finds the entry there already (by its id)

    [report] = compare(shadowed).compare(PERIOD)
    accounts = sorted(ln.account for ln in changed.lines)
    found = [(d.kind, d.reference, d.domain, d.account) for d in report.differences]
    assert found == [
        *((ComparisonKind.AMOUNT_DIFFERS, changed.entry_id, "gl", a) for a in accounts),
        (ComparisonKind.ONLY_RIGHT, "HAND-8", None, None),
    ]
    for d in report.differences[:2]:
        [line] = [ln for ln in changed.lines if ln.account == d.account]
        assert d.right == Side(line.debit, line.credit)
        assert d.left == Side(
            line.debit + Decimal("0.01") if line.debit else Decimal(0),
            line.credit + Decimal("0.01") if line.credit else Decimal(0),
        )
    assert report.differences[2].facility == "H2"
    assert report.differences[2].right == Side(Decimal("2.50"), Decimal("2.50"))

    dirty = CliRunner().invoke(
        cli, ["erp", "compare", "--period", PERIOD, "--left", "legacy", "--right", "cloud"], env=env
    )
    assert dirty.exit_code == 1, dirty.output
    assert "legacy vs cloud: 3 difference(s)" in dirty.output
    assert "HAND-8" in dirty.output
    assert changed.entry_id in dirty.output

    # each ERP's reconciliation finds its own planted difference, and only it
    legacy = adapter(shadowed, "legacy")
    mine = reconcile_period(shadowed.engine, legacy, PERIOD, destination="legacy")
    legacy.close()
    assert {(d.kind, d.reference) for d in mine.differences} == {
        (DifferenceKind.AMOUNT_DIFFERS, changed.entry_id)
    }
    cloud = adapter(shadowed, "cloud")
    theirs = reconcile_period(shadowed.engine, cloud, PERIOD, destination="cloud")
    cloud.close()
    assert [(d.kind, d.reference) for d in theirs.differences] == [
        (DifferenceKind.UNEXPECTED_IN_ERP, "HAND-8")
    ]
    wrong = CliRunner().invoke(cli, ["erp", "compare", "--period", "2026-13"], env=env)
    assert wrong.exit_code != 0
