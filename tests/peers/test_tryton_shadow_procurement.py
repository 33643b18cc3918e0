"""The shadow run of a whole procure-to-pay, against two REAL Tryton ERPs (issue 17, Done-when
1 and 3): every domain (GL postings, purchase orders, goods receipts, supplier invoices) has
``legacy`` (Tryton 7.0) as its system of record and ``cloud`` (Tryton 8.0) as a shadow.

A run of dispenses, receipts and invoices (a clean cXML match at H1, a price variance approved
as billed, an over-invoiced quantity adjusted at H2) lands in both ERPs, each document once:
orders, receipts and invoices are documents of each ERP, the journal entries and the price
variance moves of each ERP's ledger. ``erp compare`` finds 0 differences over the run's
periods; the ERP reconciliation of each destination finds its inventory, GRNI and AP (per
supplier) balances per facility equal to MedBridge's ledger; a move booked by hand in one ERP
is then reported exactly, against that ERP only.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.demo.supplier_behaviour import Fault, Faults
from medbridge.domain.erp_compare import ComparisonKind, Side
from medbridge.domain.erp_routing import ErpDomain
from medbridge.domain.reconciliation import DifferenceKind
from medbridge.flows.erp_compare import ErpCompare
from medbridge.flows.reconciliation import reconcile_period
from medbridge.settings import ErpDestinationSettings, ErpRouteSettings, Settings
from medbridge.store import erp_postings
from medbridge.store.erp_postings import DocumentKind, PostingStatus
from peers.test_tryton_shadow import plant_move
from peers.tryton import TrytonPeer
from procurement_support import Harness, cycle_settings

pytestmark = [pytest.mark.peer]

DESTINATIONS = ("legacy", "cloud")
FAULTS = Faults(force={"MCK-VANCO-1G": Fault.PRICE_CHANGE, "MCK-AMPI-250": Fault.OVER_INVOICE})
SHADOWED = (ErpDomain.GL, ErpDomain.PURCHASE_ORDERS, ErpDomain.RECEIPTS, ErpDomain.INVOICES)


def _destination(peer: TrytonPeer, series: str) -> ErpDestinationSettings:
    return ErpDestinationSettings.model_validate(
        {
            "url": peer.url,
            "database": peer.database,
            "user": peer.login,
            "password": peer.password,
            "series": series,
            "gl_posting": "per_event",
        }
    )


def _periods() -> tuple[str, str]:
    """This month through the month the invoices are dated in (the suppliers' lead days)."""
    today = datetime.now(UTC).date()
    return f"{today:%Y-%m}", f"{today + timedelta(days=10):%Y-%m}"


def _run(h: Harness) -> None:
    h.order("DRAPE-SM", "H1-PHARM")
    h.cycle.run_until(lambda: any(i["status"] == "posted" for i in h.cycle.invoices()))
    h.order("VANCO-1G", "H1-PHARM")
    variance = h.task("ap", "price_variance")
    h.decide(variance, action="approve", note="the new list price stands")
    h.until_invoice(variance["context"]["invoice_number"], "posted")
    h.order("AMPI-250", "H2-PHARM")
    over = h.task("ap", "quantity_over_received")
    (exception,) = over["context"]["exceptions"]
    h.decide(over, action="adjust_quantity", quantity=exception["expected"])
    h.until_invoice(over["context"]["invoice_number"], "posted")
    h.cycle.pump()


def adapter(h: Harness, name: str) -> TrytonErp:
    erp = h.mb.erp(name)
    assert isinstance(erp, TrytonErp)
    return erp


def test_a_procure_to_pay_shadow_run_lands_in_both_erps_and_compares_clean(
    engine: object,
    settings: Settings,
    tmp_path: Path,
    tryton: TrytonPeer,
    tryton_cloud: TrytonPeer,
) -> None:
    routes = {d: ErpRouteSettings(record="legacy", shadow=["cloud"]) for d in SHADOWED}
    h = Harness(
        cycle_settings(
            settings,
            tmp_path,
            receipt_grace=60.0,  # an invoice waits for its goods (two ERPs behind the outbox)
            erps={
                "legacy": _destination(tryton, "7.0"),
                "cloud": _destination(tryton_cloud, "8.0"),
            },
            erp_routes=routes,
        ),
        FAULTS,
    )
    try:
        _run(h)
    finally:
        h.mb.stop_workers()
    assert len(h.cycle.posters) == 2

    # every document once per destination, posted in both, the same documents in each
    with h.mb.engine.connect() as conn:
        rows = erp_postings.postings(conn, limit=100_000)
    assert {(r.status, r.last_error) for r in rows} == {(PostingStatus.POSTED, None)}
    by_destination = {
        name: Counter((r.kind, r.document) for r in rows if r.destination == name)
        for name in DESTINATIONS
    }
    assert by_destination["legacy"] == by_destination["cloud"]
    assert max(by_destination["legacy"].values()) == 1
    kinds = Counter(kind for kind, _ in by_destination["cloud"])
    assert kinds[DocumentKind.PURCHASE_ORDER] == 3
    assert kinds[DocumentKind.ORDER_CONFIRMATION] == 3
    assert kinds[DocumentKind.GOODS_RECEIPT] >= 3
    assert kinds[DocumentKind.SUPPLIER_INVOICE] == 3
    assert kinds[DocumentKind.JOURNAL_ENTRY] > 6  # stock, dispenses, receipts, the variance
    assert {r.role.value for r in rows if r.destination == "cloud"} == {"shadow"}
    assert {r.role.value for r in rows if r.destination == "legacy"} == {"record"}

    # the documents are each ERP's own: three purchases and three posted supplier invoices
    for name in DESTINATIONS:
        erp = adapter(h, name)
        purchases = erp.client.search_read("purchase.purchase", [], ["reference", "state"])
        invoices = erp.client.search_read(
            "account.invoice", [("type", "=", "in"), ("state", "=", "posted")], ["reference"]
        )
        erp.close()
        assert len(purchases) == 3, (name, purchases)
        assert len(invoices) == 3, (name, invoices)

    # Done-when 1: the comparison finds nothing, in every period of the run
    first, last = _periods()
    compare = ErpCompare(h.mb.engine, h.mb.erp_router(), h.mb.erp)
    for period in sorted({first, last}):
        reports = compare.compare(period)
        assert reports, period
        for report in reports:
            assert (report.left, report.right) == ("legacy", "cloud")
            assert report.differences == (), (period, report.differences)
    [report] = compare.compare(first)
    domains = {g.domain for g in report.groups}
    assert {"gl", "invoices"} <= domains
    assert all(g.left_documents == g.right_documents for g in report.groups)

    # Done-when 3: each ERP's balances per facility (inventory, GRNI, AP by party) are
    # MedBridge's ledger's
    for name in DESTINATIONS:
        erp = adapter(h, name)
        reconciled = reconcile_period(h.mb.engine, erp, first, last, destination=name)
        erp.close()
        assert reconciled.differences == (), (name, reconciled.differences)
        roles = {(b.facility, b.role) for b in reconciled.balances}
        assert {("H1", "inventory"), ("H1", "grni"), ("H2", "inventory")} <= roles
        assert all(b.difference == 0 for b in reconciled.balances), name
        payables = [b for b in reconciled.balances if b.party is not None]
        assert {b.party for b in payables} == {"MCK", "MEDSURG"}
        assert all(b.erp == b.medbridge != 0 for b in payables), (name, payables)

    # a move booked by hand in cloud: reported exactly, and by cloud's reconciliation only
    cloud = adapter(h, "cloud")
    today = datetime.now(UTC).date()
    plant_move(cloud, tryton_cloud.server.template["accounts"], Decimal("2.50"), today)
    cloud.close()
    [report] = compare.compare(first)
    [planted] = report.differences
    assert (planted.kind, planted.reference, planted.facility) == (
        ComparisonKind.ONLY_RIGHT,
        "HAND-8",
        "H2",
    )
    assert planted.right == Side(Decimal("2.50"), Decimal("2.50"))
    for name, expected in (("legacy", []), ("cloud", [DifferenceKind.UNEXPECTED_IN_ERP])):
        erp = adapter(h, name)
        reconciled = reconcile_period(h.mb.engine, erp, first, last, destination=name)
        erp.close()
        assert [d.kind for d in reconciled.differences] == expected, name
