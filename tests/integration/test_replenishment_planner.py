"""The replenishment planner on the ledger: routine lines consolidated per supplier x facility
in the window, STAT released at once, a surplus elsewhere proposed as a transfer to the
pharmacy queue first (approved: the stock moves), nobody to supply it: a pharmacy task."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_procurement_exceptions import fake_erp
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.canonical.masterdata import Supplier, SupplierStatus
from medbridge.canonical.movements import MovementKind
from medbridge.cli import app as cli
from medbridge.flows.replenishment import PlannerPolicy, ReplenishmentPlanner
from medbridge.settings import Settings
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as store
from procurement_support import Cycle, cycle_settings

pytestmark = pytest.mark.db


@pytest.fixture
def cycle(engine: object, settings: Settings, tmp_path: Path) -> Iterator[Cycle]:
    mb = MedBridge.build(cycle_settings(settings, tmp_path))
    mb.seed_demo()
    yield Cycle(mb, erp=fake_erp())
    mb.stop_workers()


def planner(cycle: Cycle, window: float) -> ReplenishmentPlanner:
    return ReplenishmentPlanner(
        cycle.mb.engine,
        cycle.mb.masterdata,
        cycle.mb.work_queues(),
        PlannerPolicy(window=timedelta(seconds=window)),
    )


def use(cycle: Cycle, item: str, where: str, stock: int, used: int) -> None:
    cycle.stock(item, where, stock)
    cycle.pump()
    cycle.movement(MovementKind.DISPENSE, item, where, used)
    cycle.pump()


def test_routine_lines_wait_for_the_window_and_go_out_in_one_order(cycle: Cycle) -> None:
    use(cycle, "VANCO-1G", "H1-PHARM", 200, 60)
    use(cycle, "AMPI-250", "H1-ICU", 200, 70)
    plan = planner(cycle, window=600)
    now = datetime.now(UTC)
    first = plan.plan(now)
    assert (first.proposed, first.released) == (2, ())
    assert plan.plan(now + timedelta(seconds=60)).released == ()  # still in the window
    (reference,) = plan.plan(now + timedelta(seconds=601)).released
    with cycle.mb.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    assert (po["supplier"], po["facility"], po["urgency"]) == ("MCK", "H1", "routine")
    assert {(ln["item"], ln["location"], Decimal(ln["quantity"])) for ln in po["lines"]} == {
        ("VANCO-1G", "H1-PHARM", Decimal(60)),
        ("AMPI-250", "H1-ICU", Decimal(70)),
    }


def test_a_stockout_is_ordered_at_once(cycle: Cycle) -> None:
    use(cycle, "VANCO-1G", "H2-PHARM", 30, 30)  # nothing left: STAT
    (reference,) = planner(cycle, window=3600).plan().released
    with cycle.mb.engine.connect() as conn:
        po = store.order(conn, reference)
    assert po is not None
    assert po["urgency"] == "stat"
    assert Decimal(po["lines"][0]["quantity"]) == 200


def test_surplus_elsewhere_is_proposed_as_a_transfer_first(cycle: Cycle) -> None:
    cycle.stock("VANCO-1G", "H1-ICU", 500)  # 300 over par
    use(cycle, "VANCO-1G", "H1-PHARM", 200, 60)
    report = planner(cycle, window=3600).plan()
    assert report.proposed == 0
    assert report.tasks == 1
    client = TestClient(cycle.mb.api())
    key = cycle.mb.ensure_admin_key()[0]
    (task,) = client.get(
        "/v1/work-items", params={"queue": "pharmacy"}, headers={"X-API-Key": key}
    ).json()["items"]
    assert task["kind"] == "transfer_proposed"
    (transfer,) = task["context"]["transfers"]
    assert (transfer["item"], transfer["from"], transfer["to"]) == (
        "VANCO-1G",
        "H1-ICU",
        "H1-PHARM",
    )
    assert Decimal(transfer["quantity"]) == 60
    answer = client.post(
        f"/v1/work-items/{task['id']}/decision",
        json={"action": "approve"},
        headers={"X-API-Key": key},
    )
    assert answer.status_code == 200, answer.text
    cycle.pump()
    with cycle.mb.engine.connect() as conn:
        held = {r.location: r.quantity for r in ledger_store.stock(conn, item="VANCO-1G")}
    assert held["H1-PHARM"] == 200
    assert held["H1-ICU"] == 440


def test_nobody_to_supply_it_is_a_pharmacy_task(cycle: Cycle) -> None:
    with cycle.mb.engine.begin() as conn:
        cycle.mb.masterdata.save_supplier(
            conn, Supplier(code="MCK", name="MCK", status=SupplierStatus.ON_HOLD, lead_time_days=1)
        )
    use(cycle, "VANCO-1G", "H1-PHARM", 200, 60)
    report = planner(cycle, window=0).plan()
    assert (report.proposed, report.released, report.tasks) == (0, (), 1)
    items: list[Any] = [i.as_dict() for i in cycle.mb.work_queues().listing()]
    assert [(i["kind"], i["queue"]) for i in items] == [("no_source", "pharmacy")]
    assert "all_on_hold" in items[0]["reason"]


def test_a_transfer_approved_from_the_cli_moves_the_stock(cycle: Cycle, database_url: str) -> None:
    cycle.stock("VANCO-1G", "H1-ICU", 500)
    use(cycle, "VANCO-1G", "H1-PHARM", 200, 60)
    planner(cycle, window=3600).plan()
    (task,) = cycle.mb.work_queues().listing()
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false"}
    done = CliRunner().invoke(
        cli, ["tasks", "decide", str(task.id), "approve", "--by", "pharmacist"], env=env
    )
    assert done.exit_code == 0, done.output
    cycle.pump()
    with cycle.mb.engine.connect() as conn:
        held = {r.location: r.quantity for r in ledger_store.stock(conn, item="VANCO-1G")}
    assert held["H1-PHARM"] == 200
    assert held["H1-ICU"] == 440
