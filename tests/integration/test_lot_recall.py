"""Lot recall (issue 18, "Done when" 3): one lot followed from its receipt on a purchase order
(the procure-to-pay cycle with the simulated supplier and the fake ERP) through two transfers
to dispenses on three units; a quarantine opens an URGENT pharmacy task on the next dispense,
holds the lot's transfers and receipts and applies them, once, on release; encounter
pseudonyms only for a client that may see them."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from hl7_support import ack_code, rds, send
from medbridge.app import MedBridge
from medbridge.canonical.tasks import WorkQueue
from medbridge.cli import app as cli
from medbridge.demo.supplier_behaviour import Faults
from medbridge.flows.ledger_posting import HELD_REFUSED, QUARANTINED_DISPENSE
from medbridge.governance.permissions import Role
from medbridge.settings import Settings
from medbridge.store import audit, work_items
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as store
from medbridge.store.tables import ledger_movement_lots, ledger_movements
from procurement_support import Harness, cycle_settings, fake_erp

pytestmark = pytest.mark.db

DAY1, DAY2 = "2026-11-20T09:30:00+00:00", "2026-11-21T14:00:00+00:00"
DRAPE_BOX_GTIN = "30387698433527"  # a pack GTIN of DRAPE-SM in the demo network


def movement(key: str, kind: str, location: str, quantity: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": key,
        "kind": kind,
        "item": extra.pop("item", "VANCO-1G"),
        "location": location,
        "quantity": quantity,
        "unit": extra.pop("unit", "VIAL"),
        "occurred_at": extra.pop("at", DAY1),
    }
    if kind == "receipt":
        body |= {"unit_cost": {"amount": "6.85", "currency": "USD"}}
    return body | extra


class Api:
    def __init__(self, mb: MedBridge, client: TestClient) -> None:
        self.mb, self.client = mb, client
        self.admin = mb.ensure_admin_key()[0]

    def post(self, path: str, body: Any, key: str | None = None) -> Any:
        return self.client.post(path, json=body, headers={"X-API-Key": key or self.admin})

    def get(self, path: str, key: str | None = None, **params: Any) -> Any:
        return self.client.get(path, params=params, headers={"X-API-Key": key or self.admin})

    def move(self, *movements: dict[str, Any]) -> None:
        answer = self.post("/v1/stock-movements", list(movements))
        assert answer.status_code == 202, answer.text
        self.mb.consumers["ledger"].drain()

    def trace(self, code: str, lot: str, key: str | None = None) -> dict[str, Any]:
        answer = self.get(f"/v1/lots/{code}/{lot}/trace", key)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


@pytest.fixture
def api(medbridge: MedBridge) -> Iterator[Api]:
    with TestClient(medbridge.api()) as client:
        yield Api(medbridge, client)


def pharmacy_tasks(mb: MedBridge, kind: str) -> list[work_items.WorkItem]:
    with mb.engine.connect() as conn:
        found = work_items.listing(conn, queue=WorkQueue.PHARMACY, status=None)
    return [t for t in found if t.kind == kind]


def on_hand(trace: dict[str, Any]) -> dict[str, str]:
    return {r["location"]: r["quantity"] for r in trace["on_hand"]}


# --- the recall scenario ---------------------------------------------------------------------


@pytest.fixture
def harness(engine: object, settings: Settings, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(cycle_settings(settings, tmp_path), Faults(), fake_erp())
    yield h
    h.mb.stop_workers()


def test_a_lot_is_traced_from_its_purchase_order_through_transfers_to_three_units(
    harness: Harness,
) -> None:
    h = harness
    reference = h.order()  # VANCO-1G for H1-PHARM from MCK

    def received() -> bool:
        with h.mb.engine.connect() as conn:
            return any(r["status"] == "received" for r in store.receipts(conn, reference))

    h.cycle.run_until(received, timeout=60)
    h.cycle.pump()
    with h.mb.engine.connect() as conn:
        (receipt,) = store.receipts(conn, reference)
    lot = receipt["lines"][0]["lot"]
    assert lot  # the supplier's ship notice names the lot
    api = Api(h.mb, h.client)
    assert api.trace("VANCO-1G", lot)["came_from"], "the receipt movement is applied"
    api.move(
        movement("t1", "transfer", "H1-PHARM", "20", lot=lot, to_location="H1-ICU"),
        movement("t2", "transfer", "H1-PHARM", "10", lot=lot, to_location="H1-OR"),
    )
    api.move(  # after: the bus orders per item@location, not across them
        movement("d1", "dispense", "H1-ICU", "3", lot=lot, encounter_ref="enc-7f3a"),
        # no lot named: FEFO draws the only lot the ICU holds, and the history says so
        movement("d2", "dispense", "H1-ICU", "2", encounter_ref="enc-9b1c"),
        movement("d3", "dispense", "H1-OR", "4", lot=lot, cost_center="H1-CC-OR"),
        movement("d4", "dispense", "H1-PHARM", "5", lot=lot, at=DAY2),
    )
    assert h.mb.bus.dead_letter_count("ledger") == 0

    trace = api.trace("VANCO-1G", lot)
    assert trace["item"] == "VANCO-1G"
    assert trace["quarantine"] is None
    (origin,) = trace["came_from"]
    assert origin["supplier"] == "MCK"
    assert origin["location"] == "H1-PHARM"
    assert origin["purchase_order"]["reference"] == reference
    assert [g["reference"] for g in origin["goods_receipts"]] == [receipt["reference"]]
    assert [n["partner"] for n in origin["ship_notices"]] == ["MCK"]
    assert origin["expiry"] is not None
    received_qty = Decimal(origin["quantity"])

    assert [(t["from_location"], t["to_location"], t["quantity"]) for t in trace["transfers"]] == [
        ("H1-PHARM", "H1-ICU", "20"),
        ("H1-PHARM", "H1-OR", "10"),
    ]
    day1, day2 = DAY1[:10], DAY2[:10]
    groups = {
        (g["location"], g["cost_center"], g["day"]): (g["quantity"], g["events"])
        for g in trace["dispensed"]
    }
    assert groups == {
        ("H1-ICU", "H1-CC-ICU", day1): ("5", 2),
        ("H1-OR", "H1-CC-OR", day1): ("4", 1),
        ("H1-PHARM", "H1-CC-PHARM", day2): ("5", 1),
    }
    icu = next(g for g in trace["dispensed"] if g["location"] == "H1-ICU")
    assert sorted(icu["encounter_ref"]) == ["enc-7f3a", "enc-9b1c"]  # admin may see them
    assert on_hand(trace) == {
        "H1-PHARM": f"{(received_qty - 35).normalize():f}",
        "H1-ICU": "15",
        "H1-OR": "6",
    }
    # the same by the GTIN of nothing: 404; the lot history sums to what each event moved
    assert api.get(f"/v1/lots/00000000000000/{lot}/trace").status_code == 404
    with h.mb.engine.connect() as conn:
        per_event = dict(
            conn.execute(
                select(ledger_movement_lots.c.event_id, func.count()).group_by(
                    ledger_movement_lots.c.event_id
                )
            ).all()
        )
        movements = conn.execute(select(func.count()).select_from(ledger_movements)).scalar()
    assert len(per_event) == movements  # every movement applied has its lots recorded

    # a reader may trace the lot, never see a pseudonym; neither does the minimised answer
    reader = h.mb.clients.register("analyst", Role.READER)
    answer = api.get(f"/v1/lots/VANCO-1G/{lot}/trace", reader)
    assert answer.status_code == 200
    assert "enc-" not in answer.text
    assert "encounter_ref" not in answer.text
    assert answer.json()["dispensed"] == [
        {k: v for k, v in g.items() if k != "encounter_ref"} for g in trace["dispensed"]
    ]


# --- quarantine ------------------------------------------------------------------------------


def test_a_quarantine_holds_transfers_and_receipts_flags_dispenses_and_release_applies_once(
    api: Api,
) -> None:
    mb = api.mb
    api.move(
        movement("r1", "receipt", "H1-PHARM", "50", lot="Q1", expiry="2027-01-31"),
        movement("r2", "receipt", "H1-PHARM", "50", lot="OK2", expiry="2028-06-30"),
    )
    api.move(movement("t0", "transfer", "H1-PHARM", "10", lot="Q1", to_location="H1-ICU"))
    quarantined = api.post(
        "/v1/lots/VANCO-1G/Q1/quarantine", {"reason": "MCK recall notice RC-2026-114"}
    )
    assert quarantined.status_code == 200, quarantined.text
    assert quarantined.json()["changed"] is True
    again = api.post("/v1/lots/VANCO-1G/Q1/quarantine", {"reason": "again"})
    assert again.json()["changed"] is False
    listed = api.get("/v1/lots/quarantined").json()["items"]
    assert [(q["item"], q["lot"]) for q in listed] == [("VANCO-1G", "Q1")]

    api.move(
        # a dispense of the quarantined lot applies (it was handed out): an URGENT task
        movement("d1", "dispense", "H1-ICU", "2", lot="Q1", encounter_ref="enc-1"),
        # without a lot, FEFO passes over Q1 (it expires first) while OK2 has stock
        movement("d2", "dispense", "H1-PHARM", "3"),
        # a transfer and a receipt of Q1 are held, not applied
        movement("t1", "transfer", "H1-PHARM", "5", lot="Q1", to_location="H1-OR"),
        movement("r3", "receipt", "H1-OR", "7", lot="Q1", expiry="2027-01-31"),
        # returning recalled stock to the supplier applies as usual
        movement("w1", "return_to_supplier", "H1-PHARM", "1", lot="Q1"),
    )
    assert mb.bus.dead_letter_count("ledger") == 0
    trace = api.trace("VANCO-1G", "Q1")
    assert trace["quarantine"]["status"] == "quarantined"
    assert trace["quarantine"]["reason"] == "MCK recall notice RC-2026-114"
    assert on_hand(trace) == {"H1-PHARM": "39", "H1-ICU": "8"}
    assert on_hand(api.trace("VANCO-1G", "OK2")) == {"H1-PHARM": "47"}
    held = {h["kind"]: h for h in trace["held_movements"]}
    assert set(held) == {"transfer", "receipt"}
    assert {h["status"] for h in held.values()} == {"held"}

    (task,) = pharmacy_tasks(mb, QUARANTINED_DISPENSE)
    assert task.subject.startswith("URGENT")
    assert task.context["urgency"] == "urgent"
    assert task.context["lots"] == {"Q1": "2"}
    assert task.facility == "H1"
    assert "quarantine" in task.reason
    # a redelivery of the dispense changes nothing and opens no second task
    mb.consumers["ledger"].drain()
    assert len(pharmacy_tasks(mb, QUARANTINED_DISPENSE)) == 1
    # no pseudonym in the task (every work:read sees it): the trace names it, to those allowed
    assert "enc-1" not in str(task.context)
    assert task.context["cost_center"] == "H1-CC-ICU"
    (icu,) = [g for g in api.trace("VANCO-1G", "Q1")["dispensed"] if g["location"] == "H1-ICU"]
    assert icu["encounter_ref"] == ["enc-1"]

    released = api.post("/v1/lots/VANCO-1G/Q1/release", {"note": "supplier withdrew the recall"})
    assert released.status_code == 200, released.text
    assert len(released.json()["applied"]) == 2
    assert released.json()["refused"] == []
    trace = api.trace("VANCO-1G", "Q1")
    assert trace["quarantine"]["status"] == "released"
    assert on_hand(trace) == {"H1-PHARM": "34", "H1-ICU": "8", "H1-OR": "12"}
    assert {h["status"] for h in trace["held_movements"]} == {"applied"}
    assert [(t["from_location"], t["to_location"]) for t in trace["transfers"]] == [
        ("H1-PHARM", "H1-ICU"),
        ("H1-PHARM", "H1-OR"),
    ]
    # exactly once: a second release is refused and changes nothing
    assert api.post("/v1/lots/VANCO-1G/Q1/release", {}).status_code == 409
    mb.consumers["ledger"].drain()
    assert on_hand(api.trace("VANCO-1G", "Q1")) == {"H1-PHARM": "34", "H1-ICU": "8", "H1-OR": "12"}
    # the ledger still equals the GL, held movements included once released
    with mb.engine.connect() as conn:
        accounts = mb.masterdata.account_map(conn)
        inventory = {f: a for (f, role), a in accounts.items() if role.value == "inventory"}
        checks = ledger_store.facility_checks(conn, inventory)
        actions = [e.action for e in audit.entries(conn, target_type="lot")]
    assert {c.facility: c.difference for c in checks} == {c.facility: 0 for c in checks}
    assert actions == ["lot.quarantine", "lot.release"]
    # after the release, a dispense of the lot opens no task
    api.move(movement("d3", "dispense", "H1-ICU", "1", lot="Q1"))
    assert len(pharmacy_tasks(mb, QUARANTINED_DISPENSE)) == 1


def test_a_held_transfer_the_ledger_refuses_on_release_opens_a_task_instead(api: Api) -> None:
    api.move(movement("r1", "receipt", "H2-PHARM", "4", lot="Q9"))
    assert api.post("/v1/lots/VANCO-1G/Q9/quarantine", {"reason": "recall"}).status_code == 200
    api.move(movement("t1", "transfer", "H2-PHARM", "4", lot="Q9", to_location="H2-ED"))
    api.move(movement("w1", "wastage", "H2-PHARM", "3", lot="Q9"))  # recalled stock destroyed
    released = api.post("/v1/lots/VANCO-1G/Q9/release", {}).json()
    assert released["applied"] == []
    assert len(released["refused"]) == 1
    (task,) = pharmacy_tasks(api.mb, HELD_REFUSED)
    assert "could not apply" in task.reason
    trace = api.trace("VANCO-1G", "Q9")
    assert on_hand(trace) == {"H2-PHARM": "1"}
    assert [h["status"] for h in trace["held_movements"]] == ["refused"]


def test_a_gtin_resolves_a_lot_a_facility_client_sees_its_own_and_may_not_quarantine(
    api: Api,
) -> None:
    drape = {"item": "DRAPE-SM", "unit": "EA"}
    api.move(
        movement("r1", "receipt", "H1-OR", "10", lot="D1", **drape),
        movement("r2", "receipt", "H2-ED", "10", lot="D1", **drape),
        movement("c1", "clinical_consumption", "H2-ED", "2", lot="D1", **drape),
    )
    by_gtin = api.trace(DRAPE_BOX_GTIN, "D1")
    assert by_gtin["item"] == "DRAPE-SM"
    assert on_hand(by_gtin) == {"H1-OR": "10", "H2-ED": "8"}
    assert [g["kind"] for g in by_gtin["dispensed"]] == ["clinical_consumption"]
    h1 = api.mb.clients.register("h1-pharmacy", Role.PHARMACY, facilities=["H1"])
    mine = api.trace("DRAPE-SM", "D1", h1)
    assert on_hand(mine) == {"H1-OR": "10"}
    assert mine["dispensed"] == []
    refused = api.post("/v1/lots/DRAPE-SM/D1/quarantine", {"reason": "recall"}, h1)
    assert refused.status_code == 403
    bad = api.post("/v1/lots/DRAPE-SM/D1/quarantine", {"reason": ""})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][-1] == "reason"
    assert api.get("/v1/lots/NOPE-ITEM/D1/trace").status_code == 404


def test_the_recall_command_prints_the_trace_and_quarantines(api: Api, database_url: str) -> None:
    api.move(movement("r1", "receipt", "H1-PHARM", "12", lot="C7"))
    api.move(movement("t1", "transfer", "H1-PHARM", "4", lot="C7", to_location="H1-ICU"))
    api.move(movement("d1", "dispense", "H1-ICU", "1", lot="C7", encounter_ref="enc-cli"))
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    runner = CliRunner()
    shown = runner.invoke(cli, ["recall", "C7"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "H1-PHARM" in shown.output
    assert "H1-ICU" in shown.output
    assert "H1-CC-ICU" in shown.output
    assert "enc-cli" not in shown.output
    assert "enc-cli" in runner.invoke(cli, ["recall", "C7", "--encounters"], env=env).output
    no_reason = runner.invoke(cli, ["recall", "C7", "--quarantine"], env=env)
    assert no_reason.exit_code == 1
    assert "--reason" in no_reason.output
    done = runner.invoke(
        cli, ["recall", "C7", "--item", "VANCO-1G", "--quarantine", "--reason", "RC-9"], env=env
    )
    assert done.exit_code == 0, done.output
    assert "quarantined" in done.output
    released = runner.invoke(cli, ["recall", "C7", "--release", "--note", "cleared"], env=env)
    assert released.exit_code == 0, released.output
    assert "released; 0 held movement(s) applied" in released.output
    again = runner.invoke(cli, ["recall", "C7", "--release"], env=env)
    assert again.exit_code == 1
    assert "not in quarantine" in again.output
    with api.mb.engine.connect() as conn:
        entries = audit.entries(conn, target_type="lot")
    assert [e.action for e in entries] == ["lot.quarantine", "lot.release"]
    assert all(e.actor.startswith("cli:") for e in entries)
    unknown = runner.invoke(cli, ["recall", "NOPE"], env=env)
    assert unknown.exit_code == 1
    assert "known for no item" in unknown.output


def test_an_hl7_dispense_naming_a_quarantined_lot_is_acknowledged_and_opens_the_task(
    api: Api,
) -> None:
    api.move(movement("r1", "receipt", "H1-ICU", "6", lot="H7"))
    assert api.post("/v1/lots/VANCO-1G/H7/quarantine", {"reason": "recall"}).status_code == 200
    fields = rds("LOT-1").split("\r")[2].split("|")
    fields[18] = "H7"  # RXD-18: the lot the cabinet gave out
    message = "\r".join([*rds("LOT-1").split("\r")[:2], "|".join(fields), ""])
    (ack,) = send(api.mb, message)
    assert ack_code(ack.decode())[0] == "AA"
    api.mb.consumers["ledger"].drain()
    (task,) = pharmacy_tasks(api.mb, QUARANTINED_DISPENSE)
    assert task.context["lots"] == {"H7": "1"}
    assert task.context["cost_center"] == "H1-CC-ICU"
    trace = api.trace("VANCO-1G", "H7")
    assert on_hand(trace) == {"H1-ICU": "5"}
    (group,) = trace["dispensed"]
    assert (group["location"], group["day"]) == ("H1-ICU", "2026-11-21")
