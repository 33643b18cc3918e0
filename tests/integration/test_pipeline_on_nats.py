"""The pipeline with NATS JetStream as the event backbone (``MEDBRIDGE_BUS_URL``): a movement
POSTed to the API goes through the stream to the ledger consumer; a resubmission is answered
as a duplicate of the original and has no second effect."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from hl7_support import ack_code, map_hl7_sources, rds, running_listener
from medbridge.app import MedBridge
from medbridge.bus.jetstream import JetStreamBus, JetStreamConfig
from medbridge.canonical.messages import MessageFilter
from medbridge.connectors.hl7v2 import MllpClient
from medbridge.flows.messages import MessageBrowser
from medbridge.governance.clients import Role
from medbridge.settings import Settings

pytestmark = [pytest.mark.db, pytest.mark.nats]

NOW = "2026-11-20T09:30:00+00:00"


@pytest.fixture
def on_nats(
    engine: Engine, settings: Settings, nats_stream: JetStreamConfig
) -> Iterator[MedBridge]:
    mb = MedBridge.build(
        settings.model_copy(
            update={
                "bus_url": nats_stream.url,
                "bus_stream": nats_stream.stream,
                "bus_subject_prefix": nats_stream.subject_prefix,
            }
        )
    )
    mb.seed_demo()
    yield mb
    mb.stop_workers()
    assert isinstance(mb.bus, JetStreamBus)
    mb.bus.delete_stream()
    mb.bus.close()
    mb.engine.dispose()


def movement(key: str, kind: str, quantity: str) -> dict[str, object]:
    body: dict[str, object] = {
        "idempotency_key": key,
        "kind": kind,
        "item": "VANCO-1G",
        "location": "H1-PHARM",
        "quantity": quantity,
        "unit": "VIAL",
        "occurred_at": NOW,
    }
    if kind == "receipt":
        body |= {
            "lot": "V2611A",
            "expiry": "2028-03-31",
            "unit_cost": {"amount": "6.85", "currency": "USD"},
        }
    return body


def test_movements_flow_through_jetstream_once(on_nats: MedBridge) -> None:
    assert isinstance(on_nats.bus, JetStreamBus)
    key = on_nats.clients.register("pharmacy-cabinets", Role.INTEGRATION)
    with TestClient(on_nats.api()) as client:
        client.headers["X-API-Key"] = key
        received = client.post("/v1/stock-movements", json=movement("r-1", "receipt", "100"))
        assert received.status_code == 202
        first = client.post("/v1/stock-movements", json=movement("d-1", "dispense", "3")).json()
        on_nats.consumers["ledger"].drain()
        again = client.post("/v1/stock-movements", json=movement("d-1", "dispense", "3")).json()
        on_nats.consumers["ledger"].drain()

        rows = client.get("/v1/stock", params={"item": "VANCO-1G"}).json()["items"]
        correlation = first["results"][0]["correlation_id"]
        entries = client.get("/v1/journal-entries", params={"correlation_id": correlation})

    assert sum(Decimal(r["quantity"]) for r in rows) == Decimal(97)
    assert again["results"][0]["status"] == "duplicate"
    assert again["results"][0]["event_id"] == first["results"][0]["event_id"]
    assert len(entries.json()["items"]) == 1
    assert on_nats.bus.lag("ledger") == 0


def test_hl7_messages_are_recorded_on_jetstream_too(on_nats: MedBridge) -> None:
    """The log is not in the database: the rows are written right after the server stored
    the batch, before the ACK (``GroupCommit``'s recorder)."""
    map_hl7_sources(on_nats)
    with running_listener(on_nats) as listener, MllpClient("127.0.0.1", listener.port) as c:
        acks = [ack_code(c.send(rds(n).encode()))[0] for n in ("J-1", "J-1", "J-2")]
    assert acks == ["AA", "AA", "AA"]
    found = MessageBrowser(on_nats.engine).search(MessageFilter(protocol="hl7v2")).items
    assert [(m.control_id, m.status) for m in found] == [
        ("J-2", "applied"),
        ("J-1", "duplicate"),
        ("J-1", "applied"),
    ]
    assert found[1].correlation_id == found[2].correlation_id
