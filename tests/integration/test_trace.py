"""``GET /v1/trace/{correlation_id}``: everything recorded under one correlation id, in order:
a dispense's event, journal entry and ERP posting row; an order sent to a supplier and every
document that answered it."""

from __future__ import annotations

from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from test_pipeline_api import dispense, receipt
from test_supplier_simulator import ORDER, build, in_process

from medbridge.app import MedBridge
from medbridge.canonical.partners import WireFormat
from medbridge.demo.supplier_behaviour import Faults
from medbridge.demo.supplier_simulator import SimulatedSupplier
from medbridge.flows.trade import TradeOutbox

pytestmark = pytest.mark.db


def test_a_dispense_traces_to_its_journal_entry(medbridge: MedBridge) -> None:
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        client.post("/v1/stock-movements", json=receipt("t-r1"))
        answer = client.post("/v1/stock-movements", json=dispense("t-d1", "3"))
        correlation = answer.json()["results"][0]["correlation_id"]
        medbridge.consumers["ledger"].drain()
        steps = client.get(f"/v1/trace/{correlation}").json()["steps"]
        missing = client.get(f"/v1/trace/{uuid4()}")
    kinds = [s["kind"] for s in steps]
    assert kinds[0] == "event"
    assert steps[0]["ref"].startswith("inventory.dispensed")
    assert "journal_entry" in kinds
    assert kinds.index("event") < kinds.index("journal_entry")
    assert missing.status_code == 404


def test_an_order_traces_through_every_answer(medbridge: MedBridge) -> None:
    mb, partner = build(medbridge, WireFormat.X12)
    sim = SimulatedSupplier(mb.settings.own_identity, in_process(mb), Faults())  # type: ignore[arg-type]
    correlation = uuid4()
    TradeOutbox(mb.engine, lambda p: sim).send(ORDER, partner=partner, correlation_id=correlation)
    sim.pump(all_due=True)
    with TestClient(mb.api()) as client:
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        steps = client.get(f"/v1/trace/{correlation}").json()["steps"]
    documents = [(s["kind"], s["ref"]) for s in steps if s["kind"].startswith("document")]
    assert documents == [
        ("document_sent", "SIM order PO-555"),
        ("document_received", "SIM acknowledgement ACK-PO-555"),
        ("document_received", "SIM ship_notice SH-PO-555-1"),
        ("document_received", "SIM invoice INV-PO-555-1"),
    ]
    events = [s["ref"].split()[0] for s in steps if s["kind"] == "event"]
    assert events == [
        "trade.acknowledgement_received.v1",
        "trade.ship_notice_received.v1",
        "trade.invoice_received.v1",
    ]
