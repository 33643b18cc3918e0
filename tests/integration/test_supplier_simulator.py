"""MedBridge and the simulated supplier, over the real wire both ways: an order sent through
the outbox is read by the supplier off its 850 / OrderRequest, and every answer comes back
through MedBridge's own inbound path (X12 with its 997, cXML with its Response), recorded once
under the order's correlation id, faults included."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from medbridge.app import MedBridge
from medbridge.canonical.partners import TradingPartner, WireFormat
from medbridge.canonical.trade import (
    AcknowledgementDocument,
    InvoiceDocument,
    LineStatus,
    OrderDocument,
    OrderLine,
    PartnerItem,
)
from medbridge.demo.procurement import DemoProcurement
from medbridge.demo.supplier_behaviour import Fault, Faults
from medbridge.demo.supplier_simulator import SimulatedSupplier
from medbridge.flows.trade import Answer, TradeOutbox
from medbridge.store import trade as store

pytestmark = pytest.mark.db

ORDER = OrderDocument(
    order_number="PO-555",
    order_date=date(2026, 11, 20),
    lines=tuple(
        OrderLine(
            line_number=n,
            item=PartnerItem(supplier_part=part),
            quantity=Decimal(10),
            unit="BX",
            unit_price=Decimal("2.00"),
        )
        for n, part in enumerate(("GZ-10", "SYR-5", "GLV-M"), start=1)
    ),
)
FAULTS = Faults(
    force={"SYR-5": Fault.BACKORDER, "GLV-M": Fault.PRICE_CHANGE}, force_duplicate_invoice=True
)


def partner(wire: WireFormat) -> TradingPartner:
    return TradingPartner(
        code="SIM",
        wire_format=wire,
        x12_id="SIMSUPPLIER",
        cxml_identity="SIMSUPPLIER",
        cxml_shared_secret=SecretStr("sim-secret"),
    )


def build(medbridge: MedBridge, wire: WireFormat) -> tuple[MedBridge, TradingPartner]:
    sim_partner = partner(wire)
    settings = medbridge.settings.model_copy(update={"partners": {"SIM": sim_partner}})
    return MedBridge.build(settings), sim_partner


def in_process(mb: MedBridge) -> object:
    x12, cxml = mb.x12_exchange(), mb.cxml_exchange()

    def deliver(wire: str, body: bytes) -> Answer:
        return (x12 if wire == "x12" else cxml).receive(body)

    return deliver


@pytest.mark.parametrize("wire", [WireFormat.X12, WireFormat.CXML])
def test_an_order_is_answered_through_the_wire_under_its_correlation_id(
    medbridge: MedBridge, wire: WireFormat
) -> None:
    mb, sim_partner = build(medbridge, wire)
    sim = SimulatedSupplier(mb.settings.own_identity, in_process(mb), FAULTS)  # type: ignore[arg-type]
    outbox = TradeOutbox(mb.engine, lambda p: sim)
    correlation = uuid4()
    outbox.send(ORDER, partner=sim_partner, correlation_id=correlation)
    assert sim.orders == [ORDER], "the supplier read exactly the order off the wire"
    # ack, then per shipment (the backorder ships second) a notice and its invoice twice
    assert sim.pump(all_due=True) == 7
    assert [a.status for _, a in sim.answers] == [200] * 7
    if wire is WireFormat.X12:
        assert all(a.body.startswith("ISA") and "AK5*A" in a.body for _, a in sim.answers)
    with mb.engine.connect() as conn:
        rows = store.find_documents(conn, partner="SIM", direction="in")
    assert [r.kind for r in rows] == [
        "acknowledgement",
        "ship_notice",
        "invoice",
        "invoice",
        "ship_notice",
        "invoice",
        "invoice",
    ]
    assert {r.correlation_id for r in rows} == {str(correlation)}
    ack = AcknowledgementDocument.model_validate(rows[0].document)
    assert [line.status for line in ack.lines] == [
        LineStatus.ACCEPTED,
        LineStatus.BACKORDERED,
        LineStatus.PRICE_CHANGED,
    ]
    first, duplicate = (InvoiceDocument.model_validate(r.document) for r in rows[2:4])
    assert first == duplicate, "the duplicate invoice arrives as a second document"
    assert first.total == Decimal("41.00")  # 10 x 2.00 + 10 x 2.10


def test_the_simulator_answers_over_http(medbridge: MedBridge) -> None:
    mb, sim_partner = build(medbridge, WireFormat.X12)
    key = medbridge.ensure_admin_key()[0]
    with TestClient(mb.api()) as client:

        def deliver(wire: str, body: bytes) -> Answer:
            path = "/v1/edi/x12" if wire == "x12" else "/cxml"
            reply = client.post(path, content=body, headers={"X-API-Key": key})
            return Answer(reply.status_code, reply.text)

        sim = SimulatedSupplier(mb.settings.own_identity, deliver, Faults())
        TradeOutbox(mb.engine, lambda p: sim).send(ORDER, partner=sim_partner, correlation_id=None)
        assert sim.pump(all_due=True) == 3
        assert [a.status for _, a in sim.answers] == [200, 200, 200]
        items = client.get("/v1/trade-documents", headers={"X-API-Key": key}).json()["items"]
    assert [i["kind"] for i in items] == ["order", "acknowledgement", "ship_notice", "invoice"]
    assert len({i["correlation_id"] for i in items}) == 1


def test_the_demo_orders_from_both_simulated_suppliers(medbridge: MedBridge) -> None:
    medbridge.api(demo=True)  # the demo's partners join the configured ones
    assert set(medbridge.partners) >= {"MCK", "MEDSURG"}
    assert "MCK" not in medbridge.settings.partners  # the settings are not rewritten
    x12, cxml = medbridge.x12_exchange(), medbridge.cxml_exchange()
    demo = DemoProcurement(
        medbridge.engine,
        medbridge.settings.own_identity,
        lambda wire, body: (x12 if wire == "x12" else cxml).receive(body),
        seed=4,
    )
    for supplier in ("MCK", "MEDSURG"):
        order = demo.order(supplier)
        demo.outbox.send(order, partner=demo.partners[supplier], correlation_id=None)
    for sim in demo.simulators.values():
        sim.pump(all_due=True)
        assert sim.answers, "the supplier answered"
        assert {a.status for _, a in sim.answers} == {200}
    with medbridge.engine.connect() as conn:
        rows = store.find_documents(conn, direction="in", limit=1000)
    assert {r.partner for r in rows} == {"MCK", "MEDSURG"}
    assert {r.wire_format for r in rows} == {"x12", "cxml"}


def test_orders_in_flight_at_a_stop_are_answered_after_the_restart(medbridge: MedBridge) -> None:
    """Issue 16: the simulated suppliers held their pending answers in memory only, so
    orders sent before a stop stayed ``sent``/``confirmed`` after a restart. A supplier keeps
    its orders: the demo's suppliers take up the ones not answered in full, once."""
    medbridge.api(demo=True)
    x12, cxml = medbridge.x12_exchange(), medbridge.cxml_exchange()

    def deliver(wire: str, body: bytes) -> Answer:
        return (x12 if wire == "x12" else cxml).receive(body)

    before = DemoProcurement(medbridge.engine, medbridge.settings.own_identity, deliver, seed=4)
    sent = {}
    for supplier in ("MCK", "MEDSURG"):
        order = before.order(supplier)
        before.outbox.send(order, partner=before.partners[supplier], correlation_id=None)
        sent[supplier] = order.order_number
    mck = before.simulators["MCK"]
    mck._pending[1:] = []  # the ack answered, the rest lost with the process
    assert mck.pump(all_due=True) == 1
    # MEDSURG's answers: all lost (the process stopped before any was due)

    def kinds(supplier: str) -> list[str]:
        with medbridge.engine.connect() as conn:
            rows = store.find_documents(conn, partner=supplier, direction="in", limit=1000)
        return [r.kind for r in rows]

    assert kinds("MCK") == ["acknowledgement"]
    assert kinds("MEDSURG") == []

    after = DemoProcurement(medbridge.engine, medbridge.settings.own_identity, deliver, seed=9)
    assert after.resume() == 2
    for sim in after.simulators.values():
        sim.pump(all_due=True)
        assert {a.status for _, a in sim.answers} == {200}
    assert kinds("MCK")[0] == "acknowledgement"
    assert kinds("MCK").count("acknowledgement") == 1  # not sent twice
    assert "invoice" in kinds("MCK")
    assert kinds("MEDSURG")[:2] == ["acknowledgement", "ship_notice"]
    assert "invoice" in kinds("MEDSURG")
    # another restart: everything is answered, nothing is sent again
    again = DemoProcurement(medbridge.engine, medbridge.settings.own_identity, deliver)
    assert again.resume() == 0
    assert all(sim.pending == 0 for sim in again.simulators.values())
