"""The whole cycle against a REAL Tryton ERP and the simulated supplier: dispenses cross the
reorder point -> one purchase order in Tryton and at the supplier (X12 850 read off the wire)
-> acknowledgement -> ship notice -> goods receipt -> invoice -> three-way matched -> the
supplier invoice posted in Tryton (its own document books AP), the receipt's journal entry
posted to its ledger; the trace of the dispense's correlation id shows every step."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medbridge.app import MedBridge
from medbridge.canonical.movements import MovementKind
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.settings import Settings
from peers.tryton import TrytonPeer
from procurement_support import Cycle, cycle_settings

pytestmark = [pytest.mark.peer]


@pytest.fixture
def erp_settings(settings: Settings, tmp_path: Path, tryton: TrytonPeer) -> Settings:
    config = tryton.config()
    return cycle_settings(
        settings,
        tmp_path,
        erp_url=config.url,
        erp_database=config.database,
        erp_user=config.user,
        erp_password=config.password,
        # the invoice waits for its goods, which go through the real ERP (confirmation,
        # receipt) behind the outbox: a grace of a few seconds races them (it ends as soon
        # as the goods are in, so a long one costs nothing)
        receipt_grace=60.0,
    )


def test_full_cycle_against_tryton(
    engine: object, erp_settings: Settings, tryton: TrytonPeer
) -> None:
    mb = MedBridge.build(erp_settings)
    mb.seed_demo()
    try:
        cycle = Cycle(mb)
        cycle.stock("VANCO-1G", "H1-PHARM", 200)
        cycle.pump()
        correlation = cycle.movement(MovementKind.DISPENSE, "VANCO-1G", "H1-PHARM", 30)
        cycle.pump()
        assert cycle.runtime.plan_and_start() == []  # 170 on hand: above the reorder point
        dispense = cycle.movement(MovementKind.DISPENSE, "VANCO-1G", "H1-PHARM", 25)
        cycle.pump()
        (reference,) = cycle.runtime.plan_and_start()  # 145 <= 150: order up to par
        assert cycle.runtime.plan_and_start() == []  # on order now: not proposed again

        cycle.run_until(
            lambda: (
                [o["status"] for o in cycle.orders()] == ["received"]
                and [i["status"] for i in cycle.invoices()] == ["posted"]
            )
        )
        cycle.pump()
        (po,) = cycle.orders()
        assert po["correlation_id"] == dispense != correlation
        assert po["lines"][0]["item"] == "VANCO-1G"
        assert Decimal(po["lines"][0]["quantity"]) == 55  # par 200 - 145

        erp = TrytonErp(tryton.config())
        purchases = erp.client.search_read(
            "purchase.purchase", [("reference", "=", reference)], ["state", "shipment_state"]
        )
        assert len(purchases) == 1
        assert purchases[0]["shipment_state"] == "received"
        shipments = erp.client.search_read(
            "stock.shipment.in", [("reference", "like", f"{reference}:%")], ["state"]
        )
        assert [s["state"] for s in shipments] == ["done"]
        invoices = erp.client.search_read(
            "account.invoice",
            [("type", "=", "in"), ("reference", "like", "x12:%")],
            ["state", "total_amount"],
        )
        assert [i["state"] for i in invoices] == ["posted"]
        assert str(invoices[0]["total_amount"]) == "376.75"  # 55 x 6.85

        sim = cycle.simulators["MCK"]
        assert [o.order_number for o in sim.orders] == [reference]

        client = TestClient(mb.api())
        key = mb.ensure_admin_key()[0]
        trace = client.get(f"/v1/trace/{dispense}", headers={"X-API-Key": key}).json()
        kinds = [(s["kind"], s["ref"].split(" ")[0]) for s in trace["steps"]]
        refs = " | ".join(s["ref"] for s in trace["steps"])
        assert ("event", "inventory.dispensed.v1") in kinds
        assert ("purchase_order", reference) in kinds, refs
        assert "MCK order " + reference in refs
        for received in ("acknowledgement", "ship_notice", "invoice"):
            assert any(
                s["kind"] == "document_received" and f" {received} " in s["ref"]
                for s in trace["steps"]
            ), refs
        assert ("event", "inventory.received.v1") in kinds
        assert any(s["kind"] == "goods_receipt" for s in trace["steps"]), refs
        assert any(
            s["kind"] == "invoice_match" and s["detail"]["status"] == "posted"
            for s in trace["steps"]
        ), refs
        entries = [s for s in trace["steps"] if s["kind"] == "journal_entry"]
        assert len(entries) == 3  # the dispense, the receipt, the invoice
        # one booking per event: the invoice is booked in the ERP by its own document
        booked = sorted(e["detail"]["booked_by"] for e in entries)
        assert booked == ["erp_document", "medbridge", "medbridge"]
        postings = [s for s in trace["steps"] if s["kind"] == "erp_posting"]
        # the receipt posted per event; the dispense summarised (the default), waiting for
        # its hour's summary
        statuses = sorted(p["detail"]["status"] for p in postings)
        assert statuses == ["posted", "summarising"]
    finally:
        mb.stop_workers()
