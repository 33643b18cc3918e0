"""The pipeline through the API: POST a movement -> stock and a balanced journal entry."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from medbridge.app import MedBridge
from medbridge.governance.clients import Role
from medbridge.store.tables import bus_events, journal_entries, ledger_movements

pytestmark = pytest.mark.db

NOW = "2026-11-20T09:30:00+00:00"


@pytest.fixture
def keys(medbridge: MedBridge) -> dict[str, str]:
    return {
        "admin": medbridge.ensure_admin_key()[0],
        "integration": medbridge.clients.register("pharmacy-cabinets", Role.INTEGRATION),
        "reader": medbridge.clients.register("analytics", Role.READER),
    }


@pytest.fixture
def client(medbridge: MedBridge, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as test_client:
        test_client.headers["X-API-Key"] = keys["integration"]
        yield test_client


def receipt(key: str, quantity: str = "100", **overrides: Any) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "kind": "receipt",
        "item": "VANCO-1G",
        "location": "H1-PHARM",
        "quantity": quantity,
        "unit": "VIAL",
        "lot": "V2611A",
        "expiry": "2028-03-31",
        "unit_cost": {"amount": "6.85", "currency": "USD"},
        "occurred_at": NOW,
        **overrides,
    }


def dispense(key: str, quantity: str = "2", **overrides: Any) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "kind": "dispense",
        "item": "VANCO-1G",
        "location": "H1-PHARM",
        "quantity": quantity,
        "unit": "VIAL",
        "occurred_at": NOW,
        **overrides,
    }


def drain(mb: MedBridge) -> None:
    mb.consumers["ledger"].drain()


def count(mb: MedBridge, table: Any) -> int:
    with mb.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def on_hand(client: TestClient, **filters: str) -> Decimal:
    rows = client.get("/v1/stock", params=filters).json()["items"]
    return sum((Decimal(r["quantity"]) for r in rows), Decimal(0))


def test_posted_movement_shows_in_stock_and_as_a_balanced_journal_entry(
    client: TestClient, medbridge: MedBridge
) -> None:
    answer = client.post("/v1/stock-movements", json=receipt("r-1"))
    assert answer.status_code == 202
    assert answer.json()["results"][0]["status"] == "accepted"
    answer = client.post("/v1/stock-movements", json=dispense("d-1", "3"))
    correlation = answer.json()["results"][0]["correlation_id"]
    drain(medbridge)

    assert on_hand(client, item="VANCO-1G", location="H1-PHARM") == Decimal(97)
    stock = client.get("/v1/stock", params={"lot": "V2611A"}).json()["items"]
    assert stock == [
        {
            "item": "VANCO-1G",
            "location": "H1-PHARM",
            "lot": "V2611A",
            "expiry": "2028-03-31",
            "quantity": "97",
            "discrepancy": False,
        }
    ]
    entries = client.get("/v1/journal-entries", params={"correlation_id": correlation}).json()
    [entry] = entries["items"]
    debits = sum(Decimal(line["debit"]) for line in entry["lines"])
    credits = sum(Decimal(line["credit"]) for line in entry["lines"])
    assert debits == credits == Decimal("20.55")
    assert {
        (ln["account"], ln["cost_center"]) for ln in entry["lines"] if Decimal(ln["debit"])
    } == {("5100-H1", "H1-CC-PHARM")}
    by_account = client.get("/v1/journal-entries", params={"account": "2100-H1"}).json()["items"]
    assert [e["description"] for e in by_account] == ["receipt VANCO-1G x100 @ H1-PHARM"]
    assert client.get("/v1/journal-entries", params={"period": "2026-10"}).json()["items"] == []
    recon = client.get("/v1/ledger/reconciliation").json()
    assert recon["balanced"] is True


def test_resubmitted_movement_has_no_second_effect(
    client: TestClient, medbridge: MedBridge
) -> None:
    client.post("/v1/stock-movements", json=receipt("r-1"))
    first = client.post("/v1/stock-movements", json=dispense("d-1", "5")).json()["results"][0]
    drain(medbridge)
    again = client.post("/v1/stock-movements", json=dispense("d-1", "5"))
    drain(medbridge)

    assert again.status_code == 202
    result = again.json()
    assert result["duplicates"] == 1
    assert result["accepted"] == 0
    assert result["results"][0]["status"] == "duplicate"
    assert result["results"][0]["event_id"] == first["event_id"]
    assert on_hand(client, item="VANCO-1G") == Decimal(95)
    assert count(medbridge, journal_entries) == 2
    assert count(medbridge, bus_events) == 2


def test_batch_with_a_duplicate_inside_is_applied_once(
    client: TestClient, medbridge: MedBridge
) -> None:
    batch = [receipt("r-1"), dispense("d-1"), dispense("d-1"), dispense("d-2", "1")]
    answer = client.post("/v1/stock-movements", json=batch).json()
    drain(medbridge)
    assert [r["status"] for r in answer["results"]] == [
        "accepted",
        "accepted",
        "duplicate",
        "accepted",
    ]
    assert on_hand(client) == Decimal(97)


@pytest.mark.parametrize(
    ("movement", "field"),
    [
        (dispense("x", item="NO-SUCH-ITEM"), "item"),
        (dispense("x", location="H9-NOWHERE"), "location"),
        (dispense("x", unit="PALLET"), "unit"),
        (dispense("x", location="H1"), "location"),  # a facility holds no stock itself
        (dispense("x", cost_center="CC-404"), "cost_center"),
    ],
)
def test_unknown_master_data_is_refused_naming_the_field_and_nothing_is_stored(
    client: TestClient, medbridge: MedBridge, movement: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/stock-movements", json=movement)
    assert answer.status_code == 422
    assert [d["loc"] for d in answer.json()["detail"]] == [["body", field]]
    assert count(medbridge, bus_events) == 0


def test_one_bad_movement_refuses_the_whole_batch(client: TestClient, medbridge: MedBridge) -> None:
    batch = [receipt("r-1"), dispense("d-1", item="NOPE"), dispense("d-2", quantity="-1")]
    answer = client.post("/v1/stock-movements", json=batch)
    assert answer.status_code == 422
    locations = [d["loc"] for d in answer.json()["detail"]]
    assert ["body", 2, "quantity"] in [loc[:3] for loc in locations] or any(
        loc[:2] == ["body", 2] for loc in locations
    )
    assert count(medbridge, bus_events) == 0
    # the schema-valid part still names the unknown item once the shape is right
    answer = client.post("/v1/stock-movements", json=[receipt("r-1"), dispense("d-1", item="NOPE")])
    assert [d["loc"] for d in answer.json()["detail"]] == [["body", 1, "item"]]
    assert count(medbridge, bus_events) == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "json_invalid"),
        (b"[]", "batch_size"),
        (b"5", "batch_size"),  # neither a movement nor a list of them
    ],
)
def test_malformed_bodies_are_refused(client: TestClient, body: bytes, expected: str) -> None:
    answer = client.post(
        "/v1/stock-movements", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == expected


def test_schema_errors_name_the_field(client: TestClient) -> None:
    transfer = dispense("t-1", kind="transfer")  # no to_location
    receipt_without_cost = receipt("r-9")
    del receipt_without_cost["unit_cost"]
    for movement in (transfer, receipt_without_cost, {**dispense("z"), "colour": "red"}):
        answer = client.post("/v1/stock-movements", json=movement)
        assert answer.status_code == 422, movement
        assert answer.json()["detail"], movement


def test_transfer_moves_stock_lot_and_value_between_facilities(
    client: TestClient, medbridge: MedBridge
) -> None:
    client.post("/v1/stock-movements", json=receipt("r-1"))
    client.post(
        "/v1/stock-movements",
        json=dispense("t-1", "10", kind="transfer", to_location="H2-PHARM"),
    )
    drain(medbridge)
    assert on_hand(client, location="H2-PHARM", lot="V2611A") == Decimal(10)
    recon = {f["facility"]: f for f in client.get("/v1/ledger/reconciliation").json()["facilities"]}
    assert recon["H2"]["ledger_value"] == recon["H2"]["gl_inventory"] == "68.50"
    assert recon["H1"]["difference"] == "0.00"


def test_pack_units_convert_to_the_base_unit(client: TestClient, medbridge: MedBridge) -> None:
    client.post(
        "/v1/stock-movements", json=receipt("r-1", "3", unit="BX", unit_cost={"amount": "68.50"})
    )
    drain(medbridge)
    assert on_hand(client, item="VANCO-1G") == Decimal(30)


def test_no_key_or_a_wrong_key_is_401_and_roles_are_enforced(
    client: TestClient, keys: dict[str, str], medbridge: MedBridge
) -> None:
    assert client.get("/v1/stock", headers={"X-API-Key": ""}).status_code == 401
    assert client.get("/v1/stock", headers={"X-API-Key": "wrong"}).status_code == 401
    answer = client.post(
        "/v1/stock-movements", json=receipt("r-1"), headers={"X-API-Key": keys["reader"]}
    )
    assert answer.status_code == 403
    assert client.get("/v1/stock", headers={"X-API-Key": keys["reader"]}).status_code == 200
    replay = client.post("/v1/dead-letters/replay", json={"group": "ledger"})
    assert replay.status_code == 403
    medbridge.clients.revoke("pharmacy-cabinets")
    assert client.get("/v1/stock").status_code == 401
    assert count(medbridge, bus_events) == 0


def test_every_v1_route_requires_a_key(client: TestClient, medbridge: MedBridge) -> None:
    paths = medbridge.api().openapi()["paths"]
    routes = [
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    ]
    assert len(routes) >= 6
    for method, path in routes:
        answer = client.request(method, path, headers={"X-API-Key": ""})
        assert answer.status_code == 401, (method, path)
    assert client.get("/health", headers={"X-API-Key": ""}).json()["status"] == "ok"
    assert client.get("/metrics", headers={"X-API-Key": ""}).status_code == 200


def test_metrics_show_stage_counters_lag_and_dead_letters(
    client: TestClient, medbridge: MedBridge
) -> None:
    client.post("/v1/stock-movements", json=[receipt("r-1"), dispense("d-1")])
    text = client.get("/metrics").text
    assert 'medbridge_consumer_lag{group="ledger"} 2.0' in text
    drain(medbridge)
    text = client.get("/metrics").text
    assert 'medbridge_consumer_lag{group="ledger"} 0.0' in text
    assert 'medbridge_dead_letters{group="ledger"} 0.0' in text
    assert 'medbridge_stage_messages_total{outcome="applied",stage="ledger"}' in text


def test_ledger_record_matches_each_applied_movement(
    client: TestClient, medbridge: MedBridge
) -> None:
    client.post("/v1/stock-movements", json=[receipt("r-1"), dispense("d-1"), dispense("d-2")])
    drain(medbridge)
    assert count(medbridge, ledger_movements) == 3
    assert count(medbridge, journal_entries) == 3
