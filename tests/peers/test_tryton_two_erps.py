"""Two REAL Tryton ERPs at once: the on-premise one (``tryton``, Tryton 7.0 LTS) and the one a
hospital migrates to (``tryton_cloud``, Tryton 8.0 LTS), each its own trytond process, port
and database, seeded alike. The ground the multi-ERP work (named destinations, shadow run,
cutover) stands on:

* the same ``TrytonErp`` adapter posts MedBridge's journal entries to both series, in one
  batch call and one by one, and finds each of them in each ERP by its entry id, exactly once;
* the ERP ledger reconciliation, run against each ERP separately, reports 0 differences (per
  entry, and the inventory, GRNI and AP balances per facility); a move booked by hand in one
  of them is reported there, and only there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.erp import ErpRef
from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.domain.reconciliation import DifferenceKind
from medbridge.flows.intake import Submission
from medbridge.flows.reconciliation import reconcile_period
from medbridge.store import ledger as ledger_store
from peers.tryton import TrytonPeer, TrytonServer

pytestmark = [pytest.mark.peer]

DAY = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
PERIOD = "2026-11"


def movement(n: int) -> Submission:
    """Receipts and dispenses in turns, at two facilities: every one makes a journal entry."""
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
            encounter_ref=f"enc-{n:06d}",
        )
    return Submission(m, f"two-erps-{n}")


def journal(medbridge: MedBridge, n: int) -> list[JournalEntry]:
    """``n`` movements through MedBridge's intake and ledger: their journal entries."""
    medbridge.intake.submit([movement(i) for i in range(n)], source="two-erps-test")
    medbridge.consumers["ledger"].drain()
    with medbridge.engine.connect() as conn:
        return ledger_store.journal(conn, period=PERIOD, limit=1000)


def moves(erp: TrytonErp) -> Counter[tuple[str, str]]:
    """(description, state) of every move in MedBridge's journal of this ERP."""
    [journal] = erp.client.search_read("account.journal", [("code", "=", "MB")], ["id"], limit=1)
    found = erp.client.search_read(
        "account.move", [("journal", "=", journal["id"])], ["description", "state"]
    )
    return Counter((str(m["description"]), str(m["state"])) for m in found)


@pytest.fixture
def legacy(tryton: TrytonPeer) -> Iterator[TrytonErp]:
    adapter = TrytonErp(tryton.config())
    yield adapter
    adapter.close()


@pytest.fixture
def cloud(tryton_cloud: TrytonPeer) -> Iterator[TrytonErp]:
    adapter = TrytonErp(tryton_cloud.config())
    yield adapter
    adapter.close()


def test_two_trytond_servers_of_two_series_run_side_by_side(
    tryton: TrytonPeer, tryton_cloud: TrytonPeer
) -> None:
    servers: list[TrytonServer] = [tryton.server, tryton_cloud.server]
    assert [s.series for s in servers] == ["7.0", "8.0"]
    assert servers[0].port != servers[1].port
    assert all(s.process.poll() is None for s in servers)
    # seeded alike: the same codes, so one MedBridge configuration fits both
    for key in ("journal", "accounts", "cost_centers", "suppliers", "products"):
        assert set(servers[0].template[key]) == set(servers[1].template[key]), key


def test_the_same_entries_land_once_in_each_erp_and_reconcile_clean_against_each(
    medbridge: MedBridge, legacy: TrytonErp, cloud: TrytonErp
) -> None:
    entries = journal(medbridge, 12)
    assert len(entries) == 12
    ids = [e.entry_id for e in entries]
    for erp in (legacy, cloud):
        assert reconcile_period(medbridge.engine, erp, PERIOD).moves == 0  # a clean template

    for erp in (legacy, cloud):
        *batch, last = entries
        posted = erp.post_journal_entries(batch)
        assert all(isinstance(r, ErpRef) and r.created for r in posted), posted
        single = erp.post_journal_entry(last)
        assert single.created
        again = erp.post_journal_entries(entries)  # a repeat finds every one, creates none
        assert all(isinstance(r, ErpRef) and not r.created for r in again), again
        assert [r.reference for r in again if isinstance(r, ErpRef)] == ids

        for entry_id in ids:
            ref = erp.find_journal_entry(entry_id)
            assert ref is not None, f"{erp.config.database}: {entry_id} not found"
        assert moves(erp) == Counter({(entry_id, "posted"): 1 for entry_id in ids})

    for erp in (legacy, cloud):
        report = reconcile_period(medbridge.engine, erp, PERIOD)
        assert report.differences == (), (erp.config.database, report.differences)
        assert (report.entries, report.moves) == (12, 12)


def plant_move(erp: TrytonErp, accounts: dict[str, int], amount: Decimal) -> int:
    """A move booked by hand in MedBridge's journal, straight over JSON-RPC: its id."""
    client = erp.client
    [journal] = client.search_read("account.journal", [("code", "=", "MB")], ["id"], limit=1)
    [period] = client.search_read(
        "account.period",
        [("start_date", "<=", DAY.date()), ("end_date", ">=", DAY.date())],
        ["id"],
        limit=1,
        order=[("start_date", "DESC")],
    )
    [planted] = client.create(
        "account.move",
        [
            {
                "journal": journal["id"],
                "period": period["id"],
                "date": DAY.date(),
                "description": "HAND-8",
                "lines": [
                    [
                        "create",
                        [
                            {"account": accounts["5100-H2"], "debit": amount, "credit": 0},
                            {"account": accounts["1400-H2"], "debit": 0, "credit": amount},
                        ],
                    ]
                ],
            }
        ],
    )
    client.button("account.move", "post", [planted])
    return planted


def test_a_move_planted_in_one_erp_is_reported_against_that_erp_only(
    medbridge: MedBridge, legacy: TrytonErp, cloud: TrytonErp, tryton_cloud: TrytonPeer
) -> None:
    entries = journal(medbridge, 4)
    for erp in (legacy, cloud):
        assert all(isinstance(r, ErpRef) for r in erp.post_journal_entries(entries))
    planted = plant_move(cloud, tryton_cloud.server.template["accounts"], Decimal("2.50"))

    assert reconcile_period(medbridge.engine, legacy, PERIOD).differences == ()
    report = reconcile_period(medbridge.engine, cloud, PERIOD)
    assert [(d.kind, d.reference, d.move_id, d.erp_amount) for d in report.differences] == [
        (DifferenceKind.UNEXPECTED_IN_ERP, "HAND-8", str(planted), Decimal("2.50"))
    ]
    assert report.moves == 5
