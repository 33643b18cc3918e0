"""The dashboard (issue 16): every KPI computed on a small scenario written straight into the
tables, against figures worked out by hand below; and GET /v1/dashboard with facility scopes.

The demo network is seeded (H1: 3 stores, H2: 2 stores, 7 items: 21 and 14 replenishment
positions, every reorder point 150), with no stock at all before the scenario's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, update

from medbridge.app import MedBridge
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.governance.permissions import Role
from medbridge.observability.kpis import Dashboard, FacilityKpis
from medbridge.store import erp_circuits
from medbridge.store.tables import (
    bus_events,
    erp_postings,
    goods_receipts,
    invoice_matches,
    journal_entries,
    journal_lines,
    ledger_movements,
    purchase_orders,
    replenishment_policies,
    stock_lots,
    stock_valuations,
    work_items,
)

pytestmark = pytest.mark.db

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
D = Decimal


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def _stock(conn: Any) -> None:
    """H1: VANCO-1G 100 at the ICU (below 150), 200 at the pharmacy, -3 in the OR (a dispense
    beyond the ledger: below and out). H2: 7 at the pharmacy, whose policy leaves the reorder
    point to be computed (below). Every other position holds nothing."""
    conn.execute(
        update(replenishment_policies)
        .where(
            replenishment_policies.c.item == "VANCO-1G",
            replenishment_policies.c.location == "H2-PHARM",
        )
        .values(reorder_point=None)
    )
    for location, quantity, value in (
        ("H1-ICU", "100", "500.00"),
        ("H1-PHARM", "200", "1000.00"),
        ("H1-OR", "-3", "-15.00"),
        ("H2-PHARM", "7", "35.00"),
    ):
        conn.execute(
            insert(stock_lots).values(
                item="VANCO-1G", location=location, lot="L1", expiry=None, quantity=D(quantity)
            )
        )
        conn.execute(
            insert(stock_valuations).values(
                item="VANCO-1G",
                location=location,
                quantity=D(quantity),
                value=D(value),
                last_unit_cost=D(5),
            )
        )
    for n, (kind, location, quantity, amount, when) in enumerate(
        (
            ("dispense", "H1-ICU", "1", "120.00", ago(days=5)),
            ("clinical_consumption", "H1-PHARM", "1", "30.00", ago(days=2)),
            ("dispense", "H1-ICU", "1", "999.00", ago(days=40)),  # before the window
            ("wastage", "H1-ICU", "1", "50.00", ago(days=1)),  # not consumption
            ("dispense", "H2-PHARM", "10", "50.00", ago(days=1)),
            ("dispense", "H2-PHARM", "20", "100.00", ago(days=3)),
        )
    ):
        conn.execute(
            insert(ledger_movements).values(
                event_id=f"00000000-0000-0000-0000-00000000000{n}",
                kind=kind,
                item="VANCO-1G",
                location=location,
                to_location=None,
                quantity=D(quantity),
                amount=D(amount),
                correlation_id=f"c{n}",
                occurred_at=when,
                applied_at=when,
            )
        )


def _journal(conn: Any) -> None:
    """H1: a receipt of 1,500.00 (Dr inventory, Cr GRNI), an invoice clearing 1,000.00 of it
    (Dr GRNI, Cr AP). The first is pending in the outbox for 10 minutes, the second failed."""
    for n, (lines, status) in enumerate(
        (
            ([("1400-H1", "1500.00", "0"), ("2100-H1", "0", "1500.00")], "pending"),
            ([("2100-H1", "1000.00", "0"), ("2000-H1", "0", "1000.00")], "failed"),
        )
    ):
        entry = f"JE-{n}"
        conn.execute(
            insert(journal_entries).values(
                entry_id=entry,
                source_event_id=f"e{n}",
                correlation_id=f"c{n}",
                posting_date=date(2026, 11, 30),
                period="2026-11",
                currency="USD",
                description="test",
                created_at=ago(minutes=10),
            )
        )
        for no, (account, debit, credit) in enumerate(lines, 1):
            conn.execute(
                insert(journal_lines).values(
                    entry_id=entry,
                    line_no=no,
                    account=account,
                    facility="H1",
                    cost_center=None,
                    debit=D(debit),
                    credit=D(credit),
                    party=None,
                )
            )
        conn.execute(
            insert(erp_postings).values(
                document=entry,
                destination="tryton",
                kind="journal_entry",
                role="record",
                domain="gl",
                status=status,
                attempts=0,
                next_attempt_at=ago(minutes=10),
                created_at=ago(minutes=10 - n),
            )
        )


def _order(
    conn: Any,
    reference: str,
    facility: str,
    status: str,
    lines: list[tuple[int, str, str]],
    received: list[tuple[int, str]],
    created: datetime,
) -> None:
    """``lines``: (line, ordered, acknowledged as expected); ``received``: (line, quantity)."""
    conn.execute(
        insert(purchase_orders).values(
            reference=reference,
            supplier="MCK",
            facility=facility,
            urgency="routine",
            lines=[{"line": n, "quantity": q, "expected": e} for n, q, e in lines],
            correlation_id=reference,
            status=status,
            erp_id=None,
            workflow_started=1,
            note=None,
            created_at=created,
            updated_at=created,
        )
    )
    if received:
        conn.execute(
            insert(goods_receipts).values(
                reference=f"{reference}:SH1",
                order_reference=reference,
                shipment_id="SH1",
                lines=[{"line": n, "quantity": q} for n, q in received],
                status="received",
                received_by="dock",
                erp_id=None,
                correlation_id=reference,
                received_at=created,
            )
        )


def _invoice(
    conn: Any, number: str, order: str, exceptions: list[str], created: datetime = NOW
) -> None:
    conn.execute(
        insert(invoice_matches).values(
            reference=f"inv:{number}",
            supplier="MCK",
            number=number,
            total=D("10.00"),
            order_reference=order,
            status="exception" if exceptions else "matched",
            result={"exceptions": [{"kind": k, "reason": k} for k in exceptions], "lines": []},
            erp_id=None,
            correlation_id=order,
            created_at=created,
            updated_at=created,
        )
    )


def _procurement(conn: Any) -> None:
    """H1, in the window: A perfect; B acknowledged short (8 of 10), received 8, invoiced with
    a price variance; C received in full, not invoiced yet; D received in full, invoiced
    cleanly, but its acknowledgement was overdue (a task of its workflow); E cancelled; G
    before the window. H2: F half received (a noticed shipment does not count), invoiced
    cleanly, plus a credit memo (left out)."""
    both = [(1, "10", "10"), (2, "5", "5")]
    _order(conn, "PO-A", "H1", "received", both, [(1, "10"), (2, "5")], ago(days=3))
    _order(conn, "PO-B", "H1", "closed_short", [(1, "10", "8")], [(1, "8")], ago(days=3))
    _order(conn, "PO-C", "H1", "received", [(1, "4", "4")], [(1, "4")], ago(days=3))
    _order(conn, "PO-D", "H1", "received", [(1, "2", "2")], [(1, "2")], ago(days=3))
    _order(conn, "PO-E", "H1", "cancelled", [(1, "7", "7")], [], ago(days=3))
    _order(conn, "PO-G", "H1", "received", [(1, "1", "1")], [(1, "0")], ago(days=60))
    _order(conn, "PO-F", "H2", "received", [(1, "6", "6")], [(1, "3")], ago(days=3))
    conn.execute(
        insert(goods_receipts).values(
            reference="PO-F:SH2",
            order_reference="PO-F",
            shipment_id="SH2",
            lines=[{"line": 1, "quantity": "3"}],
            status="noticed",
            received_by="",
            erp_id=None,
            correlation_id="PO-F",
            received_at=NOW,
        )
    )
    _invoice(conn, "I-A", "PO-A", [])
    _invoice(conn, "I-B", "PO-B", ["price_variance"])
    _invoice(conn, "I-D", "PO-D", [])
    _invoice(conn, "I-G", "PO-G", ["quantity_over_received"], ago(days=60))
    _invoice(conn, "I-F", "PO-F", [])
    _invoice(conn, "I-F-CM", "PO-F", ["credit_memo"])


def _work_items(conn: Any) -> None:
    for key, queue, facility, status in (
        ("stock:1", "pharmacy", "H1", "open"),
        ("stock:2", "pharmacy", "H2", "open"),
        ("PO-C:ack_overdue", "procurement", "H1", "decided"),
        ("PO-D:ack_overdue", "procurement", "H1", "open"),
        ("invoice:I-B", "ap", "H1", "open"),
    ):
        conn.execute(
            insert(work_items).values(
                key=key,
                queue=queue,
                kind="k",
                subject=key,
                reason="r",
                context={},
                actions=[],
                status=status,
                correlation_id=None,
                workflow_id=key.split(":")[0] if key.startswith("PO-") else None,
                created_at=NOW,
                facility=facility,
            )
        )


def _events(mb: MedBridge) -> None:
    """Two events no consumer has applied, the older stored 90 s before NOW."""
    for n in range(2):
        movement = StockMovement(
            kind=MovementKind.DISPENSE,
            item="VANCO-1G",
            location="H1-ICU",
            quantity=D(1),
            unit="VIAL",
            occurred_at=NOW,
        )
        mb.bus.append(
            [
                EventEnvelope[StockMovement](
                    type=movement.event_type,
                    source="test/dashboard",
                    subject="VANCO-1G@H1-ICU",
                    idempotency_key=f"dashboard-{n}",
                    data=movement,
                )
            ]
        )
    with mb.engine.begin() as conn:
        conn.execute(
            update(bus_events).values(appended_at=ago(seconds=90)).where(bus_events.c.seq > 0)
        )


@pytest.fixture
def scenario(medbridge: MedBridge) -> MedBridge:
    with medbridge.engine.begin() as conn:
        _stock(conn)
        _journal(conn)
        _procurement(conn)
        _work_items(conn)
        erp_circuits.record(conn, "tryton", "open", ago(minutes=5))
    _events(medbridge)
    return medbridge


H1 = FacilityKpis(
    facility="H1",
    positions=21,
    below_reorder_point=20,  # 18 empty positions, the ICU's 100 and the OR's -3
    stock_outs=19,  # 18 empty, the OR's -3
    stock_value=D("1485.00"),  # 500 + 1000 - 15
    daily_consumption_value=D("5.00"),  # (120 + 30) / 30 days
    days_on_hand=D("297.00"),  # 1485 / 5
    order_lines=5,  # A 2, B 1, C 1, D 1
    order_lines_filled=4,  # all but B's (8 of 10)
    fill_rate=D("0.8000"),
    invoices=3,  # A, B, D (G's is older than the window)
    invoices_first_pass=2,  # A, D
    invoice_first_pass_rate=D("0.6667"),
    orders_complete=3,  # A, B, D (C has no invoice yet)
    orders_perfect=1,  # A (B: short and a price variance; D: a task)
    perfect_order_rate=D("0.3333"),
    grni_balance=D("500.00"),  # 1500 credited, 1000 cleared
    ledger_value=D("1485.00"),
    gl_inventory=D("1500.00"),
    ledger_gl_difference=D("-15.00"),
)
H2 = FacilityKpis(
    facility="H2",
    positions=14,
    # the pharmacy's VANCO-1G: 30 days of usage, 10 and 20 on two days, 0 on 28: mean 1,
    # sample stdev sqrt((28 * 1 + 9^2 + 19^2) / 29) = 4.0258; MCK's lead time 1 day; safety
    # stock ceil(1.65 * 4.0258 * 1) = 7; reorder point ceil(1 * 1 + 7) = 8 > 7 held
    below_reorder_point=14,
    stock_outs=13,
    stock_value=D("35.00"),
    daily_consumption_value=D("5.00"),  # (50 + 100) / 30
    days_on_hand=D("7.00"),  # 35 / 5
    order_lines=1,
    order_lines_filled=0,  # 3 of 6 received
    fill_rate=D("0.0000"),
    invoices=1,  # the credit memo left out
    invoices_first_pass=1,
    invoice_first_pass_rate=D("1.0000"),
    orders_complete=1,
    orders_perfect=0,
    perfect_order_rate=D("0.0000"),
    grni_balance=D(0),
    ledger_value=D("35.00"),
    gl_inventory=D(0),  # no journal in H2
    ledger_gl_difference=D("35.00"),
)


def dashboard(mb: MedBridge) -> Dashboard:
    return Dashboard(mb.engine, mb.bus, list(mb.consumers), now=lambda: NOW)


def test_business_kpis_per_facility(scenario: MedBridge) -> None:
    assert dashboard(scenario).facilities() == [H1, H2]
    assert dashboard(scenario).facilities(frozenset({"H2"})) == [H2]
    with scenario.engine.begin() as conn:  # at the computed reorder point (8): not below it
        conn.execute(
            update(stock_lots).where(stock_lots.c.location == "H2-PHARM").values(quantity=D(8))
        )
    [h2] = dashboard(scenario).facilities(frozenset({"H2"}))
    assert h2.below_reorder_point == 13


def test_consumer_lag_in_events_and_seconds(scenario: MedBridge) -> None:
    lags = dashboard(scenario).consumers()
    assert {lag.group for lag in lags} == set(scenario.consumers)
    assert {(lag.events, lag.seconds) for lag in lags} == {(2, D("90.000"))}
    scenario.consumers["ledger"].drain()
    [ledger] = [lag for lag in dashboard(scenario).consumers() if lag.group == "ledger"]
    assert (ledger.events, ledger.seconds, ledger.oldest_unconsumed_at) == (0, D(0), None)


def test_erp_outbox_and_circuit(scenario: MedBridge) -> None:
    outbox = dashboard(scenario).erp_outbox()
    assert (outbox.pending, outbox.failed, outbox.oldest_pending_seconds) == (1, 1, D("600.000"))
    [circuit] = outbox.circuits
    assert (circuit.erp, circuit.state, circuit.unhealthy_since) == (
        "tryton",
        "open",
        ago(minutes=5),
    )
    [tryton] = outbox.destinations  # the one ERP of the flat settings
    assert (tryton.erp, tryton.pending, tryton.failed) == ("tryton", 1, 1)
    h2 = dashboard(scenario).erp_outbox(frozenset({"H2"}))
    assert (h2.pending, h2.failed, h2.oldest_pending_at) == (0, 0, None)
    assert h2.destinations == []


def test_open_work_items_per_queue(scenario: MedBridge) -> None:
    counts = {q.queue: q.open for q in dashboard(scenario).work_queues()}
    assert counts == {"pharmacy": 2, "procurement": 1, "ap": 1}
    scoped = {q.queue: q.open for q in dashboard(scenario).work_queues(frozenset({"H2"}))}
    assert scoped == {"pharmacy": 1, "procurement": 0, "ap": 0}


@pytest.fixture
def api(scenario: MedBridge) -> Iterator[TestClient]:
    with TestClient(scenario.api()) as client:
        yield client


def test_get_dashboard_for_an_unbound_client(scenario: MedBridge, api: TestClient) -> None:
    admin = scenario.ensure_admin_key()[0]
    answer = api.get("/v1/dashboard", headers={"X-API-Key": admin})
    assert answer.status_code == 200
    body = answer.json()
    assert [f["facility"] for f in body["facilities"]] == ["H1", "H2"]
    h1 = body["facilities"][0]
    assert (h1["fill_rate"], h1["perfect_order_rate"], h1["grni_balance"]) == (
        "0.8000",
        "0.3333",
        "500.00",
    )
    assert {c["group"] for c in body["consumers"]} == set(scenario.consumers)
    assert (body["erp"]["pending"], body["erp"]["failed"]) == (1, 1)
    filtered = api.get("/v1/dashboard?facility=H2", headers={"X-API-Key": admin}).json()
    assert [f["facility"] for f in filtered["facilities"]] == ["H2"]
    assert filtered["consumers"] is not None  # a filter of an unbound client, not a scope


def test_a_client_bound_to_a_facility_sees_only_it(scenario: MedBridge, api: TestClient) -> None:
    key = scenario.clients.register("h2-finance", Role.FINANCE, facilities=["H2"])
    headers = {"X-API-Key": key}
    body = api.get("/v1/dashboard", headers=headers).json()
    assert [f["facility"] for f in body["facilities"]] == ["H2"]
    assert body["consumers"] is None  # the bus is every facility's
    assert (body["erp"]["pending"], body["erp"]["failed"]) == (0, 0)
    assert {q["queue"]: q["open"] for q in body["work_queues"]}["pharmacy"] == 1
    assert api.get("/v1/dashboard?facility=H1", headers=headers).status_code == 403
