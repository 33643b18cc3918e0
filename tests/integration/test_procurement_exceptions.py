"""Every three-way match exception lands in its work queue with its reason, and the decision
taken through ``/v1/work-items`` carries the invoice workflow to its end (posted, credit
requested, rejected, closed); the compensations (an order the supplier refuses, a delivery the
dock refuses, a credit memo) unwind what was done, visibly. The ERP is the in-memory fake that
shares the real adapter's contract suite; the suppliers are simulated over the real wire."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOS
from sqlalchemy.exc import OperationalError

from medbridge.canonical.erp import ErpRejected
from medbridge.canonical.masterdata import Supplier
from medbridge.canonical.movements import MovementKind
from medbridge.canonical.trade import InvoiceDocument, InvoiceLine, PartnerItem
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.demo.procurement import demo_partners
from medbridge.demo.supplier_behaviour import Fault, Faults
from medbridge.settings import Settings
from medbridge.store import audit
from medbridge.store import erp_postings as erp_store
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as store
from procurement_support import Harness, cycle_settings, fake_erp

pytestmark = pytest.mark.db

MCK = demo_partners()["MCK"]


@pytest.fixture
def harness_for(engine: object, settings: Settings, tmp_path: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def make(faults: Faults | None = None, **overrides: Any) -> Harness:
        harness = Harness(
            cycle_settings(settings, tmp_path, **overrides), faults or Faults(), fake_erp()
        )
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.mb.stop_workers()


def test_price_variance_goes_to_ap_and_a_credit_request_then_a_credit_memo_unwinds(
    harness_for: Any,
) -> None:
    h = harness_for(Faults(force={"MCK-VANCO-1G": Fault.PRICE_CHANGE}))
    reference = h.order()
    task = h.task("ap", "price_variance")
    assert task["queue"] == "ap"
    assert "price per base unit" in task["reason"]
    assert reference in task["context"]["orders"]
    assert set(task["actions"]) == {"approve", "adjust_price", "request_credit", "reject"}
    number = task["context"]["invoice_number"]
    h.decide(task, action="request_credit", note="5% over contract")
    h.until_invoice(number, "credit_requested")
    # the invoice as billed (booked by the ERP's invoice document), the variance apart
    (posted,) = h.journal()
    (variance,) = h.journal("ppv:")
    lines = {ln.account: ln for ln in posted.lines}
    ap = lines["2000-H1"].credit
    assert lines["2000-H1"].party == "MCK"
    assert posted.booked_by.value == "erp_document"
    assert "5500-H1" not in lines
    billed = lines["2100-H1"].debit
    moved = {ln.account: ln for ln in variance.lines}
    ppv = moved["5500-H1"].debit
    assert moved["2100-H1"].credit == ppv
    assert billed - ppv == Decimal("6.85") * 60  # the GRNI the receipt booked is cleared
    assert ap == billed
    assert ppv > 0
    decided = h.get(f"/v1/work-items/{task['id']}")
    assert decided["decided_by"] == "admin"
    assert decided["decision"]["action"] == "request_credit"

    memo_number = h.send_credit_memo(number, reference, ppv)
    memo = h.task("ap", "credit_memo")
    h.decide(memo, action="approve")
    h.until_invoice(memo_number, "posted")
    reversal = next(e for e in h.journal() if e.entry_id != posted.entry_id)
    assert {(ln.account, ln.debit, ln.credit) for ln in reversal.lines} == {
        ("2000-H1", ppv, Decimal(0)),
        ("5500-H1", Decimal(0), ppv),
    }
    trace = h.get(f"/v1/trace/{posted.correlation_id}")["steps"]
    matches = [s["detail"]["status"] for s in trace if s["kind"] == "invoice_match"]
    assert sorted(matches) == ["credit_requested", "posted"]


def test_quantity_over_received_adjusted_is_posted_as_corrected(harness_for: Any) -> None:
    h = harness_for(Faults(force={"MCK-VANCO-1G": Fault.OVER_INVOICE}))
    h.order()
    task = h.task("ap", "quantity_over_received")
    (exception,) = task["context"]["exceptions"]
    assert Decimal(exception["expected"]) == 60
    assert Decimal(exception["actual"]) == 61
    h.decide(task, action="adjust_quantity", quantity="60")
    h.until_invoice(task["context"]["invoice_number"], "posted")
    (posted,) = h.journal()
    lines = {ln.account: ln for ln in posted.lines}
    assert lines["2000-H1"].credit == Decimal("6.85") * 60
    assert "5500-H1" not in lines  # as corrected, no variance
    assert any(c.method == "create_supplier_invoice" for c in h.erp.calls)


def test_duplicate_invoice_is_rejected_and_posts_nothing(harness_for: Any) -> None:
    h = harness_for(Faults(force_duplicate_invoice=True))
    h.order()
    task = h.task("ap", "duplicate_invoice")
    assert set(task["actions"]) == {"reject", "close"}
    assert h.post(f"/v1/work-items/{task['id']}/decision", {"action": "approve"}).status_code == 422
    h.decide(task, action="reject", note="sent twice")
    number = task["context"]["invoice_number"]
    h.cycle.run_until(
        lambda: (
            sorted(i["status"] for i in h.cycle.invoices() if i["number"] == number)
            == ["posted", "rejected"]
        )
    )
    assert len(h.journal()) == 1


def test_unknown_po_is_closed(harness_for: Any) -> None:
    h = harness_for()
    h.send_invoice(
        InvoiceDocument(
            invoice_number="INV-NOBODY",
            invoice_date=date.today(),
            lines=(
                InvoiceLine(
                    line_number=1,
                    item=PartnerItem(supplier_part="MCK-VANCO-1G"),
                    quantity=Decimal(5),
                    unit="EA",
                    unit_price=Decimal("6.85"),
                    order_number="PO99999999",
                ),
            ),
            total=Decimal("34.25"),
        )
    )
    task = h.task("ap", "unknown_po")
    assert "PO99999999" in task["reason"]
    h.decide(task, action="close")
    h.until_invoice("INV-NOBODY", "closed")
    assert h.journal() == []


def test_unit_mismatch_is_rejected(harness_for: Any) -> None:
    h = harness_for()
    reference = h.order()
    h.cycle.run_until(lambda: [i["status"] for i in h.cycle.invoices()] == ["posted"])
    h.send_invoice(
        InvoiceDocument(
            invoice_number="INV-CASES",
            invoice_date=date.today(),
            lines=(
                InvoiceLine(
                    line_number=1,
                    item=PartnerItem(supplier_part="MCK-VANCO-1G"),
                    quantity=Decimal(2),
                    unit="CA",
                    unit_price=Decimal("68.50"),
                    order_number=reference,
                    order_line=1,
                ),
            ),
            total=Decimal("137.00"),
        )
    )
    task = h.task("ap", "unit_mismatch")
    assert "no known pack factor" in task["reason"]
    h.decide(task, action="reject")
    h.until_invoice("INV-CASES", "rejected")
    assert len(h.journal()) == 1


def test_refused_delivery_unwinds_and_its_invoice_waits_for_ap(harness_for: Any) -> None:
    h = harness_for(auto_receive=False)
    reference = h.order()
    h.cycle.run_until(lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "shipped")
    (noticed,) = h.get(f"/v1/purchase-orders/{reference}")["receipts"]
    refused = h.post(
        f"/v1/purchase-orders/{reference}/receipts",
        {
            "shipment_id": noticed["shipment_id"],
            "lines": [{"line": 1, "quantity": "60"}],
            "rejected": True,
            "reason": "cold chain broken",
        },
    )
    assert refused.status_code == 202, refused.text
    h.cycle.run_until(
        lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "shipment_rejected"
    )
    po = h.get(f"/v1/purchase-orders/{reference}")
    assert "cold chain broken" in po["note"]
    assert h.erp.purchase_order_state(po["erp_id"]) != "cancelled"  # confirmed: lines closed
    with h.mb.engine.connect() as conn:
        assert store.on_order(conn) == {}  # released: the planner orders again
    task = h.task("ap", "invoice_without_receipt")
    h.decide(task, action="close")
    h.until_invoice(task["context"]["invoice_number"], "closed")
    again = h.post(
        f"/v1/purchase-orders/{reference}/receipts",
        {"shipment_id": noticed["shipment_id"], "lines": [{"line": 1, "quantity": "60"}]},
    )
    assert again.status_code == 409
    bad = h.post(
        f"/v1/purchase-orders/{reference}/receipts",
        {"shipment_id": "SH-X", "lines": [{"line": 7, "quantity": "1"}]},
    )
    assert bad.status_code == 422
    assert "lines" in bad.text
    assert (
        h.post(
            "/v1/purchase-orders/PO404/receipts",
            {"shipment_id": "S", "lines": [{"line": 1, "quantity": "1"}]},
        ).status_code
        == 404
    )


def test_supplier_refusing_the_order_cancels_it_and_replenishment_orders_again(
    harness_for: Any,
) -> None:
    h = harness_for(Faults(force={"MCK-VANCO-1G": Fault.REJECT}))
    reference = h.order()
    h.cycle.run_until(
        lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "rejected_by_supplier"
    )
    po = h.get(f"/v1/purchase-orders/{reference}")
    assert h.erp.purchase_order_state(po["erp_id"]) == "cancelled"
    (again,) = h.cycle.runtime.plan_and_start()
    assert again != reference


def test_a_substitute_is_not_received_as_the_ordered_item(harness_for: Any) -> None:
    h = harness_for(Faults(force={"MCK-VANCO-1G": Fault.SUBSTITUTE}))
    reference = h.order()
    task = h.task("pharmacy", "substitution")
    assert "MCK-VANCO-1G-ALT" in task["reason"]
    po = h.get(f"/v1/purchase-orders/{reference}")
    assert po["status"] == "shipped"
    assert [r["status"] for r in po["receipts"]] == ["noticed"]
    with h.mb.engine.connect() as conn:
        assert ledger_store.stock(conn, item="VANCO-1G")[0].quantity == 140  # nothing added
    refused = h.post(
        f"/v1/purchase-orders/{reference}/receipts",
        {
            "shipment_id": po["receipts"][0]["shipment_id"],
            "lines": [{"line": 1, "quantity": "60"}],
            "rejected": True,
            "reason": "substitute not approved by pharmacy",
        },
    )
    assert refused.status_code == 202
    h.cycle.run_until(
        lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "shipment_rejected"
    )


def test_an_order_that_cannot_be_sent_asks_procurement_and_closing_cancels_it(
    harness_for: Any,
) -> None:
    h = harness_for(partners={"MEDSURG": demo_partners()["MEDSURG"]})  # MCK: no channel
    reference = h.order()
    task = h.task("procurement", "send_refused")
    assert "MCK is not a trading partner" in task["reason"]
    h.decide(task, action="close")
    h.cycle.run_until(lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "closed")
    po = h.get(f"/v1/purchase-orders/{reference}")
    assert h.erp.purchase_order_state(po["erp_id"]) == "cancelled"


def test_a_receipt_for_an_order_received_in_full_is_refused_naming_the_line(
    harness_for: Any,
) -> None:
    h = harness_for(auto_receive=False)
    reference = h.order()
    h.cycle.run_until(lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "shipped")
    po = h.get(f"/v1/purchase-orders/{reference}")
    (noticed,) = po["receipts"]
    ordered = po["lines"][0]["quantity"]
    counted = h.post(
        f"/v1/purchase-orders/{reference}/receipts",
        {"shipment_id": noticed["shipment_id"], "lines": [{"line": 1, "quantity": ordered}]},
    )
    assert counted.status_code == 202, counted.text
    h.cycle.run_until(lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "received")

    more = h.post(
        f"/v1/purchase-orders/{reference}/receipts",
        {"shipment_id": "SH-AGAIN", "lines": [{"line": 1, "quantity": "5"}]},
    )
    assert more.status_code == 409, more.text
    [problem] = more.json()["detail"]
    assert problem["loc"] == ["body", "lines[0]", "line"]
    assert f"{reference} line 1 is received in full" in problem["msg"]
    with h.mb.engine.connect() as conn:
        assert [r["shipment_id"] for r in store.receipts(conn, reference)] == [
            noticed["shipment_id"]
        ]


def test_an_order_whose_erp_call_is_retried_at_a_stop_goes_on_after_the_restart(
    harness_for: Any,
) -> None:
    """Issue 16: stopping the process while a step retried an unreachable ERP (the demo's
    ERP stops with it) recorded the transient error as the step's outcome; on the next start
    DBOS replayed it and the order stayed where it was. The step (now waiting for its
    document in the ERP outbox while the worker retries) ends without an outcome and is run
    again after the restart."""
    h = harness_for()
    h.cycle.stock("VANCO-1G", "H1-PHARM", 200)
    h.cycle.pump()
    h.cycle.movement(MovementKind.DISPENSE, "VANCO-1G", "H1-PHARM", 60)
    h.cycle.pump()
    h.erp.go_down()
    (reference,) = h.cycle.runtime.plan_and_start()
    deadline = time.monotonic() + 30
    while not any(c.outcome == "down" for c in h.erp.calls) and time.monotonic() < deadline:
        assert h.cycle.poster is not None
        h.cycle.poster.poll_once()  # the outbox worker makes the workflow's ERP calls
        time.sleep(0.02)
    assert any(c.outcome == "down" for c in h.erp.calls), "the order's ERP call was tried"

    h.cycle.runtime.stopping.set()  # the process stops: the retries end at once
    status = "PENDING"
    settle = time.monotonic() + 3
    while time.monotonic() < settle and status == "PENDING":
        found = DBOS.get_workflow_status(reference)
        status = found.status if found is not None else "PENDING"
        time.sleep(0.05)
    assert status == "PENDING", "no outcome recorded for a step the stop interrupted"
    h.mb.stop_workers()

    h.erp.come_up()
    again = Harness(h.mb.settings, Faults(), h.erp)  # the next start, same databases
    try:
        again.cycle.run_until(
            lambda: again.get(f"/v1/purchase-orders/{reference}")["status"] == "received"
        )
    finally:
        again.mb.stop_workers()


def test_a_step_failing_on_a_busy_database_is_run_again_and_the_order_goes_on(
    harness_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step whose database write fails transiently (SQLite busy past its timeout: a CI run
    saw it end an order's workflow at ``shipped`` for good) is run again, not recorded as
    the step's outcome: the order is sent once more (same control number) and received."""
    h = harness_for()
    real = store.set_order
    failed: list[str] = []

    def busy_once(conn: Any, reference: str, **values: Any) -> None:
        if values.get("status") == "sent" and not failed:
            failed.append(reference)
            raise OperationalError(
                "UPDATE purchase_orders", {}, sqlite3.OperationalError("database is locked")
            )
        real(conn, reference, **values)

    monkeypatch.setattr(store, "set_order", busy_once)
    reference = h.order()
    h.cycle.run_until(lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "received")
    assert failed == [reference]
    assert DBOS.get_workflow_status(reference).status != "ERROR"  # type: ignore[union-attr]


def test_an_order_the_erp_refuses_asks_procurement_and_approving_requeues_it(
    engine: object, settings: Settings, tmp_path: Path
) -> None:
    """The outbox worker posts the order and the ERP refuses it (a supplier it does not
    know): the row is a dead letter, the step's task says why; approved once the supplier
    is in the ERP, the step requeues the row (audited) and the order goes on."""
    known = fake_erp()
    erp = FakeErp(  # MCK not in the ERP yet
        products=known.products(), suppliers=[s for s in known.suppliers() if s.code != "MCK"]
    )
    h = Harness(cycle_settings(settings, tmp_path), Faults(), erp)
    try:
        reference = h.order()
        task = h.task("procurement", "erp_rejected")
        assert "unknown supplier 'MCK'" in task["reason"]
        with h.mb.engine.connect() as conn:
            refused = erp_store.get(conn, reference)
        assert refused is not None
        assert refused.status is erp_store.PostingStatus.FAILED
        assert "unknown supplier" in (refused.last_error or "")

        erp.upsert_supplier(Supplier(code="MCK", name="MCK"))  # the supplier created there
        h.decide(task, action="approve")
        h.until_invoice(f"INV-{reference}-1", "posted")
    finally:
        h.mb.stop_workers()
    with h.mb.engine.connect() as conn:
        posted = erp_store.get(conn, reference)
        requeued = audit.entries(conn, action="erp_posting.requeue")
    assert posted is not None
    assert posted.status is erp_store.PostingStatus.POSTED
    assert [(a.actor, a.target_id) for a in requeued] == [("system:workflow", reference)]
    tries = [c.outcome for c in erp.calls if c.method == "create_purchase_order"]
    assert tries == ["rejected", "ok"]


def _refusing_invoices(erp: FakeErp, times: int) -> list[str]:
    """The fake ERP refuses its next ``times`` supplier invoices (an expense account not
    open, say); returns the references it refused."""
    create, refused = erp.create_supplier_invoice, []

    def refuse(invoice: Any) -> Any:
        if len(refused) < times:
            refused.append(invoice.reference)
            raise ErpRejected("account 5100-H1 is not open for posting", "account")
        return create(invoice)

    erp.create_supplier_invoice = refuse  # type: ignore[method-assign]
    return refused


def test_an_invoice_the_erp_refuses_goes_to_ap_and_approving_posts_it_once(
    harness_for: Any,
) -> None:
    """The ERP refusing a matched invoice used to end its workflow in error, the invoice
    never posted; now AP is asked (``erp_rejected``), and approving once the ERP is fixed
    posts it, once."""
    h = harness_for()
    refused = _refusing_invoices(h.erp, 1)
    reference = h.order()
    task = h.task("ap", "erp_rejected")
    assert "account 5100-H1 is not open for posting (field account)" in task["reason"]
    assert task["actions"] == ["approve", "close"]
    assert h.invoice_status(f"INV-{reference}-1") == "matched"  # not posted, not ended

    h.decide(task, action="approve")  # the account opened in the ERP meanwhile
    h.until_invoice(f"INV-{reference}-1", "posted")
    assert len(refused) == 1
    posted = [c for c in h.erp.calls if c.method == "post_supplier_invoice"]
    assert [c.outcome for c in posted] == ["ok"]


def test_an_invoice_the_erp_refuses_can_be_closed_posting_nothing(harness_for: Any) -> None:
    h = harness_for()
    _refusing_invoices(h.erp, 1)
    reference = h.order()
    h.decide(h.task("ap", "erp_rejected"), action="close")
    h.until_invoice(f"INV-{reference}-1", "closed")
    assert not [c for c in h.erp.calls if c.method == "post_supplier_invoice"]
    with h.mb.engine.connect() as conn:
        entries = ledger_store.journal(
            conn, correlation_id=h.get(f"/v1/purchase-orders/{reference}")["correlation_id"]
        )
    assert not [e for e in entries if "INV-" in (e.description or "")]


def test_an_order_its_erp_refuses_and_procurement_closes_is_cancelled_in_the_shadow_erp(
    engine: object, settings: Settings, tmp_path: Path
) -> None:
    """The system of record (``tryton``, the fake) refuses the order; the shadow ERP
    (``cloud``, no worker here: its rows wait in the outbox) was sent a copy. Procurement
    closes the order: the shadow's copy gets its cancellation (it used to keep an open order
    the record never had), the record's refusal stays as it was."""
    known = fake_erp()
    erp = FakeErp(
        products=known.products(), suppliers=[s for s in known.suppliers() if s.code != "MCK"]
    )
    routes = {
        "gl": {"record": "tryton"},
        "purchase_orders": {"record": "tryton", "shadow": ["cloud"]},
        "receipts": {"record": "tryton"},
        "invoices": {"record": "tryton"},
    }
    erps = {"tryton": {}, "cloud": {"capabilities": ["procurement"]}}
    base = cycle_settings(settings, tmp_path).model_dump()
    shadowed = Settings.model_validate(base | {"erps": erps, "erp_routes": routes})
    h = Harness(shadowed, Faults(), erp)
    try:
        reference = h.order()
        h.decide(h.task("procurement", "erp_rejected"), action="close")
        h.cycle.run_until(lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "closed")
        with h.mb.engine.connect() as conn:
            cancel = erp_store.get(conn, f"{reference}:cancel", "cloud")
            record = erp_store.get(conn, reference)
            recorded_cancel = erp_store.get(conn, f"{reference}:cancel")
        assert cancel is not None
        assert (cancel.kind, cancel.after) == (
            erp_store.DocumentKind.ORDER_CANCELLATION,
            reference,
        )
        assert record is not None
        assert record.status is erp_store.PostingStatus.FAILED
        assert recorded_cancel is None  # nothing to cancel where it never was
    finally:
        h.mb.stop_workers()
