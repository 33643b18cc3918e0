"""Data minimisation per consumer (issue 15): an analytics client never sees encounter
pseudonyms, wherever they appear in an answer; a client's own policy removes the fields it
must not receive; both in one place (``api.minimise``), for every GET."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medbridge.app import MedBridge
from medbridge.canonical.inbound import ExternalItem, InboundMovement, ItemCodeKind
from medbridge.canonical.movements import MovementKind
from medbridge.governance.permissions import Role
from medbridge.settings import Settings

pytestmark = pytest.mark.db

PSEUDONYM = "enc-5f2a9c01d7e3"


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_anywhere(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_anywhere(v)}
    return set()


@pytest.fixture
def policed(medbridge: MedBridge) -> Iterator[MedBridge]:
    settings = medbridge.settings.model_copy(
        update={
            "client_data_policies": {
                "bi-warehouse": {"*": ["correlation_id"], "/v1/stock": ["lot", "expiry"]}
            }
        }
    )
    mb = MedBridge.build(Settings.model_validate(settings.model_dump()))
    parked = mb.inbound.receive(  # an unknown NDC: parked, with the encounter's pseudonym
        [
            InboundMovement(
                source_system="hl7:PYXIS@H1",
                kind=MovementKind.DISPENSE,
                item=ExternalItem(kind=ItemCodeKind.NDC, code="99999-9999-99"),
                location="ICU-CAB-1",
                quantity=Decimal(1),
                unit="VL",
                occurred_at=datetime(2026, 11, 21, 8, 25, tzinfo=UTC),
                encounter_ref=PSEUDONYM,
            )
        ],
        source="hl7v2/PYXIS@H1",
        idempotency_key="hl7:PYXIS^H1:MIN-1",
    )
    assert parked.exception_id is not None
    yield mb
    mb.engine.dispose()


def test_an_analytics_reader_never_sees_encounter_pseudonyms(policed: MedBridge) -> None:
    reader = policed.clients.register("analytics", Role.READER)
    auditor = policed.clients.register("auditor", Role.AUDITOR)
    admin = policed.ensure_admin_key()[0]
    with TestClient(policed.api()) as api:
        seen_by_admin = api.get("/v1/exceptions", headers={"X-API-Key": admin}).json()
        assert seen_by_admin["items"][0]["movements"][0]["encounter_ref"] == PSEUDONYM
        for key in (reader, auditor):
            answer = api.get("/v1/exceptions", headers={"X-API-Key": key})
            assert answer.status_code == 200
            body = answer.json()
            assert body["items"][0]["movements"][0]["item"]["code"] == "99999-9999-99"
            assert "encounter_ref" not in keys_anywhere(body)
            assert PSEUDONYM not in answer.text
            assert int(answer.headers["content-length"]) == len(answer.content)


def test_a_clients_own_policy_removes_its_fields_from_every_route_it_names(
    policed: MedBridge,
) -> None:
    warehouse = policed.clients.register("bi-warehouse", Role.READER)
    admin = policed.ensure_admin_key()[0]
    receipt = {
        "idempotency_key": "r1",
        "kind": "receipt",
        "item": "VANCO-1G",
        "location": "H1-PHARM",
        "quantity": "10",
        "unit": "VIAL",
        "lot": "V1",
        "expiry": "2028-03-31",
        "unit_cost": {"amount": "6.85", "currency": "USD"},
        "occurred_at": "2026-11-20T09:30:00+00:00",
    }
    with TestClient(policed.api()) as api:
        written = api.post("/v1/stock-movements", json=receipt, headers={"X-API-Key": warehouse})
        assert written.status_code == 403  # (a reader) and writes are never reshaped anyway
        assert (
            api.post("/v1/stock-movements", json=receipt, headers={"X-API-Key": admin}).status_code
            == 202
        )
        policed.consumers["ledger"].drain()
        stock = api.get("/v1/stock", headers={"X-API-Key": warehouse}).json()["items"]
        assert stock
        assert {"lot", "expiry"}.isdisjoint(stock[0])
        assert stock[0]["quantity"] == "10"
        journal = api.get("/v1/journal-entries", headers={"X-API-Key": warehouse}).json()
        assert journal["items"]
        assert "correlation_id" not in keys_anywhere(journal)
        full = api.get("/v1/journal-entries", headers={"X-API-Key": admin}).json()
        assert "correlation_id" in keys_anywhere(full)
        assert "lot" in api.get("/v1/stock", headers={"X-API-Key": admin}).json()["items"][0]
