"""One booking per business event in the REAL Tryton ERP's ledger.

A procure-to-pay run with a clean match (DRAPE-SM from MEDSURG over cXML), a price variance
whose credit is requested and then comes back as an approved credit memo (VANCO-1G from MCK),
and a quantity over-invoiced, adjusted to what was received (AMPI-250 from MCK, at H2). Then
Tryton's own ledger is read over JSON-RPC: AP is what the posted invoices less the credit memo
say, every payable line names its supplier, each goods receipt and each invoice is booked
once, and the ERP's inventory and GRNI balances per facility are MedBridge's.
``medbridge erp reconcile`` finds nothing; a move booked by hand in the ERP is found alone.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medbridge.cli import app as cli
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.demo.network import UNIT_PRICES
from medbridge.demo.supplier_behaviour import Fault, Faults
from medbridge.flows.gl_summary import GlSummarizer
from medbridge.flows.reconciliation import reconcile_erp
from medbridge.runtime.policies import gl_posting_policy
from medbridge.settings import Settings
from medbridge.store import erp_postings as erp_store
from medbridge.store import ledger as ledger_store
from peers.tryton import TrytonPeer
from procurement_support import Harness, cycle_settings

pytestmark = [pytest.mark.peer]

FAULTS = Faults(force={"MCK-VANCO-1G": Fault.PRICE_CHANGE, "MCK-AMPI-250": Fault.OVER_INVOICE})


def _decimal(value: Any) -> Decimal:
    if isinstance(value, dict):
        return Decimal(value["decimal"])
    return Decimal(str(value))


def _run(h: Harness) -> dict[str, str]:
    """The three cycles to their end; the invoice numbers by what they test."""
    h.order("DRAPE-SM", "H1-PHARM")
    h.cycle.run_until(lambda: any(i["status"] == "posted" for i in h.cycle.invoices()))

    h.order("VANCO-1G", "H1-PHARM")
    variance = h.task("ap", "price_variance")
    number = variance["context"]["invoice_number"]
    h.decide(variance, action="request_credit", note="5% over contract")
    h.until_invoice(number, "credit_requested")
    (ppv_entry,) = h.journal("ppv:")
    ppv = next(ln.debit for ln in ppv_entry.lines if ln.account == "5500-H1")
    (po,) = [o for o in h.cycle.orders() if o["lines"][0]["item"] == "VANCO-1G"]
    memo_number = h.send_credit_memo(number, po["reference"], ppv)
    h.decide(h.task("ap", "credit_memo"), action="approve")
    h.until_invoice(memo_number, "posted")

    h.order("AMPI-250", "H2-PHARM")
    over = h.task("ap", "quantity_over_received")
    (exception,) = over["context"]["exceptions"]
    h.decide(over, action="adjust_quantity", quantity=exception["expected"])
    h.until_invoice(over["context"]["invoice_number"], "posted")
    h.cycle.pump()
    return {"variance": number, "memo": memo_number, "over": over["context"]["invoice_number"]}


def _env(h: Harness, tryton: TrytonPeer) -> dict[str, str]:
    return {
        "MEDBRIDGE_DATABASE_URL": h.mb.settings.database_url,
        "MEDBRIDGE_ERP_URL": tryton.url,
        "MEDBRIDGE_ERP_DATABASE": tryton.database,
        "MEDBRIDGE_ERP_USER": tryton.login,
        "MEDBRIDGE_ERP_PASSWORD": tryton.password,
        "MEDBRIDGE_LOG_JSON": "false",
        "COLUMNS": "250",
    }


def _periods() -> list[str]:
    """This month through the month the invoices are dated in (the supplier's lead days)."""
    today = datetime.now(UTC).date()
    return [f"{today:%Y-%m}", f"{today + timedelta(days=10):%Y-%m}"]


def test_each_event_is_booked_once_and_the_erp_reconciles(
    engine: object, settings: Settings, tmp_path: Path, tryton: TrytonPeer
) -> None:
    config = tryton.config()
    h = Harness(
        cycle_settings(
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
        ),
        FAULTS,
    )
    try:
        numbers = _run(h)
        # the dispenses are summarised (the default): their slices closed and posted, as the
        # gl-summary loop does once their hour and its grace have passed
        erp_port = h.mb.erp()
        assert erp_port is not None
        later = datetime.now(UTC) + timedelta(hours=2)
        summarizer = GlSummarizer(
            h.mb.engine, erp_port, gl_posting_policy(h.mb.settings), now=lambda: later
        )
        closed, posted = summarizer.run_once()
        assert closed == posted >= 1
    finally:
        h.mb.stop_workers()
    erp = TrytonErp(tryton.config())
    rpc = erp.client

    # AP: posted supplier invoices less the credit memo, on payable accounts, per supplier
    invoices = rpc.search_read(
        "account.invoice",
        [("type", "=", "in"), ("state", "=", "posted")],
        ["id", "number", "reference", "description", "total_amount", "move", "party.code"],
    )
    by_number = {i["description"]: _decimal(i["total_amount"]) for i in invoices}
    assert by_number[numbers["memo"]] < 0  # a credit note
    billed = {
        i["number"]: Decimal(i["total"])
        for i in h.cycle.invoices()
        if i["status"] in ("posted", "credit_requested")
    }
    memo = billed.pop(numbers["memo"].upper())
    # as posted: the over-invoiced unit of AMPI-250 was adjusted away
    expected_ap = sum(billed.values()) - UNIT_PRICES["AMPI-250"] - memo
    assert sum(by_number.values()) == expected_ap
    payable = rpc.search_read(
        "account.move.line",
        [("account.type.payable", "=", True), ("move.state", "=", "posted")],
        ["debit", "credit", "party.code", "account.code"],
    )
    assert sum(_decimal(p["credit"]) - _decimal(p["debit"]) for p in payable) == expected_ap
    assert {(p["party."] or {}).get("code") for p in payable} == {"MCK", "MEDSURG"}
    assert {(p["account."] or {}).get("code") for p in payable} == {"2000-H1", "2000-H2"}

    # each invoice booked once (its own document's move), none by MedBridge's journal
    moves = rpc.search_read("account.move", [("state", "=", "posted")], ["origin", "journal.code"])
    origins = Counter(
        str(m["origin"]) for m in moves if str(m["origin"] or "").startswith("account.invoice,")
    )
    assert sorted(origins) == sorted(f"account.invoice,{i['id']}" for i in invoices)
    assert set(origins.values()) == {1}
    # no stock valuation moves of the ERP's own: the receipts are MedBridge's entries only
    assert not [m for m in moves if str(m["origin"] or "").startswith("stock.move,")]
    with h.mb.engine.connect() as conn:
        entries = ledger_store.journal(conn, limit=1000)
        journal = erp_store.postings(conn, kind=erp_store.DocumentKind.JOURNAL_ENTRY)
        postings = {p.entry_id: p for p in journal}
        documents = erp_store.postings(conn, kind=erp_store.DocumentKind.SUPPLIER_INVOICE)
        checks = ledger_store.facility_checks(conn, {"H1": "1400-H1", "H2": "1400-H2"})
    mirrors = [e for e in entries if e.entry_id.startswith("ap:")]
    assert len(mirrors) == 4  # three invoices and the credit memo
    assert not [e for e in mirrors if e.entry_id in postings]  # never sent
    # the ERP's own invoice documents that book them went through the outbox, once each
    assert sorted(p.document for p in documents) == sorted(e.erp_document for e in mirrors)
    assert {p.status for p in documents} == {erp_store.PostingStatus.POSTED}
    receipts = [e for e in entries if e.description.startswith("receipt")]
    assert receipts
    assert all(postings[e.entry_id].status is erp_store.PostingStatus.POSTED for e in receipts)
    assert {p.status for p in postings.values()} == {erp_store.PostingStatus.POSTED}
    mb_moves = Counter(str(m["origin"]) for m in moves if (m["journal."] or {}).get("code") == "MB")
    # a move per receipt entry, one per summary of the dispenses
    assert sum(mb_moves.values()) == len({p.erp_id for p in postings.values()}) < len(postings)

    # inventory and GRNI per facility: the ERP's balances are MedBridge's ledger
    start, end = date.fromisoformat(_periods()[0] + "-01"), date.today() + timedelta(days=40)
    report = reconcile_erp(h.mb.engine, erp, start, end)
    assert report.differences == ()
    for b in report.balances:
        assert b.medbridge == b.erp, b
    inventory = {b.facility: b.erp for b in report.balances if b.role == "inventory"}
    for check in checks:
        assert check.ledger_value == check.gl_inventory == inventory[check.facility]
    grni = {b.facility: b.erp for b in report.balances if b.role == "grni"}
    assert set(grni) == {"H1", "H2"}

    # the CLI: nothing to report; then exactly the move planted by hand in the ERP
    env = _env(h, tryton)
    first, last = _periods()
    clean = CliRunner().invoke(cli, ["erp", "reconcile", first, "--through", last], env=env)
    assert clean.exit_code == 0, clean.output
    assert " 0 difference(s)" in clean.output
    _plant_move(erp)
    dirty = CliRunner().invoke(cli, ["erp", "reconcile", first, "--through", last], env=env)
    assert dirty.exit_code == 1, dirty.output
    assert " 1 difference(s)" in dirty.output
    planted = reconcile_erp(h.mb.engine, erp, start, end)
    (difference,) = planted.differences
    assert (difference.kind.value, difference.reference) == ("unexpected_in_erp", "booked by hand")
    (h1_inventory,) = [b for b in planted.balances if b.account == "1400-H1"]
    assert h1_inventory.erp - h1_inventory.medbridge == Decimal("10.00")
    assert h1_inventory.documents == ("booked by hand",)


def _plant_move(erp: TrytonErp) -> None:
    """A move booked by hand in the ERP's miscellaneous journal: stock counted up by 10."""
    rpc = erp.client
    today = date.today()
    (journal,) = rpc.search_read("account.journal", [("code", "=", "MISC")], ["id"], limit=1)
    accounts = {
        a["code"]: a["id"]
        for a in rpc.search_read(
            "account.account", [("code", "in", ["1400-H1", "5400-H1"])], ["id", "code"]
        )
    }
    (period,) = rpc.search_read(
        "account.period",
        [("start_date", "<=", today), ("end_date", ">=", today), ("type", "=", "standard")],
        ["id"],
        limit=1,
    )
    (move_id,) = rpc.create(
        "account.move",
        [
            {
                "journal": journal["id"],
                "period": period["id"],
                "date": today,
                "description": "booked by hand",
                "lines": [
                    [
                        "create",
                        [
                            {
                                "account": accounts["1400-H1"],
                                "debit": Decimal("10.00"),
                                "credit": Decimal(0),
                            },
                            {
                                "account": accounts["5400-H1"],
                                "debit": Decimal(0),
                                "credit": Decimal("10.00"),
                            },
                        ],
                    ]
                ],
            }
        ],
    )
    rpc.button("account.move", "post", [move_id])
