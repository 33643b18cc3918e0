"""The exception queue and cross-references through the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hl7_support import running_listener
from medbridge.app import MedBridge
from medbridge.canonical.inbound import ExternalItem, InboundMovement, ItemCodeKind
from medbridge.canonical.movements import MovementKind
from medbridge.cli import app as cli
from medbridge.connectors.hl7v2 import MllpClient, parse
from medbridge.demo.cabinets import DemoCabinets
from medbridge.demo.traffic import DemoTraffic
from medbridge.governance.clients import Role
from medbridge.masterdata.repository import CrossReferences

pytestmark = pytest.mark.db

SOURCE = "ehr:north"


def draft(code: str = "99999-0001-01", location: str = "WARD-7") -> InboundMovement:
    return InboundMovement(
        source_system=SOURCE,
        kind=MovementKind.DISPENSE,
        item=ExternalItem(kind=ItemCodeKind.NDC, code=code, text="Mystery drug"),
        location=location,
        quantity=Decimal(1),
        occurred_at=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
    )


@pytest.fixture
def admin(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        yield client


def test_list_map_and_replay_an_exception_through_the_api(
    admin: TestClient, medbridge: MedBridge
) -> None:
    parked = medbridge.inbound.receive([draft()], source="ehr", idempotency_key="ehr:msg-1")
    assert parked.outcome.value == "exception"
    [listed] = admin.get("/v1/exceptions").json()["items"]
    assert {p["field"] for p in listed["problems"]} == {"item", "location"}

    still = admin.post(f"/v1/exceptions/{listed['id']}/replay").json()
    assert still["outcome"] == "exception"

    answer = admin.post(
        "/v1/cross-references/items",
        json={"system": "ndc", "code": "99999-0001-01", "item": "VANCO-1G"},
    )
    assert answer.status_code == 201
    assert answer.json()["code"] == "99999000101"
    answer = admin.post(
        "/v1/cross-references/locations",
        json={"source_system": SOURCE, "code": "WARD-7", "target": "H1-ICU"},
    )
    assert answer.status_code == 201

    applied = admin.post(f"/v1/exceptions/{listed['id']}/replay").json()
    assert applied["outcome"] == "accepted"
    assert len(applied["event_ids"]) == 1
    assert admin.post(f"/v1/exceptions/{listed['id']}/replay").status_code == 409
    assert admin.get("/v1/exceptions").json()["items"] == []
    [done] = admin.get("/v1/exceptions", params={"status": "applied"}).json()["items"]
    assert done["resolution"] == "1 movement(s) appended"
    # the source resends the same message: no second movement
    again = medbridge.inbound.receive([draft()], source="ehr", idempotency_key="ehr:msg-1")
    assert again.outcome.value == "duplicate"


def test_bad_cross_references_are_refused_naming_the_field(admin: TestClient) -> None:
    answer = admin.post(
        "/v1/cross-references/locations",
        json={"source_system": SOURCE, "code": "X", "target": "NOWHERE"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "target"]
    # a unit longer than any unit code (the schema fuzz found a 500 on PostgreSQL)
    answer = admin.post(
        "/v1/cross-references/units",
        json={"source_system": SOURCE, "code": "X", "target": "its body was pruned"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "target"]
    answer = admin.post(
        "/v1/cross-references/items", json={"system": "gtin", "code": "50387698433528", "item": "X"}
    )
    assert answer.status_code == 422
    assert "check digit" in answer.json()["detail"][0]["msg"]
    answer = admin.post(
        "/v1/cross-references/items", json={"system": "ndc", "code": "0069-2587-10", "item": "NOPE"}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "item"]


def test_roles_guard_the_queue(admin: TestClient, medbridge: MedBridge) -> None:
    reader = medbridge.clients.register("auditor", Role.READER)
    parked = medbridge.inbound.receive([draft()], source="ehr", idempotency_key="ehr:msg-2")
    headers = {"X-API-Key": reader}
    assert admin.get("/v1/exceptions", headers=headers).status_code == 200
    assert (
        admin.post(f"/v1/exceptions/{parked.exception_id}/replay", headers=headers).status_code
        == 403
    )
    answer = admin.post(
        f"/v1/exceptions/{parked.exception_id}/discard", json={"reason": "test message"}
    )
    assert answer.json()["status"] == "discarded"
    assert admin.get("/v1/exceptions").json()["items"] == []


def test_cli_lists_maps_and_replays(medbridge: MedBridge, database_url: str) -> None:
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    parked = medbridge.inbound.receive([draft()], source="ehr", idempotency_key="ehr:msg-3")
    runner = CliRunner()
    listed = runner.invoke(cli, ["exceptions", "list"], env=env)
    assert "unknown NDC" in listed.output
    assert "1 exception(s)" in listed.output
    assert (
        runner.invoke(cli, ["exceptions", "replay", str(parked.exception_id)], env=env).exit_code
        == 1
    )
    for args in (
        ["xref", "item", "VANCO-1G", "--system", "ndc", "--code", "99999-0001-01"],
        ["xref", "location", SOURCE, "WARD-7", "H1-ICU"],
    ):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
    replay = runner.invoke(cli, ["exceptions", "replay", str(parked.exception_id)], env=env)
    assert replay.exit_code == 0, replay.output
    assert "accepted" in replay.output


def test_cli_fills_in_the_place_a_message_leaves_out(
    medbridge: MedBridge, database_url: str
) -> None:
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    with medbridge.engine.begin() as conn:
        CrossReferences.map_location(conn, SOURCE, "WARD-7", "H1-ICU")
        CrossReferences.map_location(conn, SOURCE, "MAIN", "H1-PHARM")
    gap = draft(code="0069-2587-10").model_copy(
        update={"kind": MovementKind.TRANSFER, "location": None, "to_location": "WARD-7"}
    )
    parked = medbridge.inbound.receive([gap], source="ehr", idempotency_key="ehr:msg-4")
    assert [p.field for p in parked.problems] == ["location"]
    runner = CliRunner()
    number = str(parked.exception_id)
    wrong = runner.invoke(
        cli, ["exceptions", "fill", number, "--location", "X", "--index", "3"], env=env
    )
    assert wrong.exit_code == 1
    assert "index: the message has 1 movement(s)" in wrong.output
    filled = runner.invoke(cli, ["exceptions", "fill", number, "--location", "MAIN"], env=env)
    assert filled.exit_code == 0, filled.output
    assert f"{number}: accepted" in filled.output
    again = runner.invoke(cli, ["exceptions", "fill", number, "--location", "MAIN"], env=env)
    assert again.exit_code == 1
    assert "is not open" in again.output


def test_the_demo_cabinet_speaks_hl7_the_listener_accepts(medbridge: MedBridge) -> None:
    DemoTraffic(medbridge.intake, rate=1, seed=3).open_stock()
    medbridge.consumers["ledger"].drain()
    cabinets = DemoCabinets(medbridge.engine, "127.0.0.1", 0, rate=1, seed=3)
    with running_listener(medbridge) as listener, MllpClient("127.0.0.1", listener.port) as client:
        for source in ("hl7:PYXIS@H1", "hl7:PYXIS@H2", "hl7:PYXIS@H1"):
            message = cabinets.message(source)
            assert message is not None
            if "12345-6789-01" in message:
                continue
            ack = parse(client.send(message))
            assert ack.first("MSA").get(1) == "AA", ack.first("MSA").raw(3)  # type: ignore[union-attr]
    medbridge.consumers["ledger"].drain()
    assert medbridge.bus.dead_letter_count("ledger") == 0
