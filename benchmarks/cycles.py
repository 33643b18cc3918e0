"""``make bench``: full procure-to-pay cycles per minute against a REAL Tryton ERP, next to the
same ERP documents written by calling the ERP directly in a loop.

Starts ``trytond`` on a copy of the Tryton peer's seeded template (as ``benchmarks.erp`` does)
and builds MedBridge on a temp SQLite database with the demo network, its durable workflows
launched in process (their own SQLite file) with the fast timers of the procure-to-pay tests
(consolidation window 0, auto-receive; but receipt grace 60 s, not 3: see ``FAST``), the
demo's two simulated suppliers (MCK over X12, MEDSURG over cXML; no faults) as the channels,
and one ``ErpPosting`` worker (rate limit 1000/s) that makes every ERP call (the workflows'
documents go through the outbox too). Everything but the workflows' DBOS threads
is pumped here: the bus consumers drain, the simulators send what is due, the worker drains
the posting backlog.

Not timed: N store x item positions (default 20: the demo's drugs, ordered from MCK, and its
med/surg supplies, from MEDSURG, over the five stores of both hospitals) are stocked to par
(200) and the journal entries of those receipts posted to Tryton.

Timed: rounds of ``--per-round`` positions (one per supplier x facility where it can: a
round's positions of one supplier and facility share an order), each a dispense of
``--dispense`` units that crosses the reorder point (150), then a planner round that releases
and starts the purchase orders; then everything is pumped until every order is ``received``,
every invoice ``posted`` and the ERP posting backlog is empty. One cycle = one purchase order:
created and confirmed in Tryton, sent, acknowledged, shipped, received (a Tryton shipment),
invoiced, three-way matched, the supplier invoice posted in Tryton and the journal entries
(dispense, receipt, invoice) posted to its ledger.

Baseline: the ERP work of a cycle done directly with ``TrytonErp`` in a loop, modelled on the
first ``--baseline`` orders of the run (same supplier and lines): create PO + confirm, goods
receipt, supplier invoice create + post, and as many journal entries as the run posted per
cycle. ``workflow overhead x`` is baseline cycles/min over the workflows' cycles/min.

Afterwards Tryton must hold every order received, every invoice posted and every journal
entry posted once (or the run fails), and trytond is stopped.

    python -m benchmarks.cycles --positions 20 --per-round 4 --baseline 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from pydantic import SecretStr

from benchmarks.erp import build_peer, fail, moves_by_description, trytond
from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import ItemCategory
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.partners import TradingPartner
from medbridge.canonical.procurement import (
    GoodsReceipt,
    InvoiceLine,
    OrderLine,
    PurchaseOrder,
    ReceiptLine,
    SupplierInvoice,
)
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.demo.network import (
    DEMO_PAR,
    DEMO_REORDER_POINT,
    ITEMS,
    STORES,
    UNIT_PRICES,
)
from medbridge.demo.procurement import demo_partners
from medbridge.demo.supplier_behaviour import Faults
from medbridge.demo.supplier_simulator import SimulatedSupplier
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.flows.intake import Submission
from medbridge.observability.logging import configure_logging
from medbridge.settings import Settings
from medbridge.store import erp_postings
from medbridge.store import procurement as store
from medbridge.store.erp_postings import DocumentKind, PostingStatus

SOURCE = "bench/cycles"
FAST = {  # the procure-to-pay tests' timers (tests/procurement_support.py) but receipt grace:
    "consolidation_window": 0.0,
    "ack_timeout": 30.0,
    "shipment_timeout": 60.0,
    # how long an invoice waits for the goods it bills (it goes on as soon as they are in):
    # the simulators send ship notice and invoice together and the workflows' ERP calls go
    # one at a time through the outbox worker, so with many cycles in flight the receipt
    # trails the invoice by more than the tests' 3 s, and the invoice would go to an AP
    # task (invoice_without_receipt)
    "receipt_grace": 60.0,
    "task_poll_interval": 0.3,
    "workflow_poll_interval": 0.05,
    "auto_receive": True,
}
UNITS = {i.code: i.base_unit for i in ITEMS}
Position = tuple[str, str]  # (item, store)


class CountingTransport(httpx.HTTPTransport):
    """Counts the JSON-RPC calls (by method) that go through it: one per HTTP request."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            method = str(json.loads(request.content)["method"])
        except (ValueError, KeyError, TypeError):
            method = "?"
        with self._lock:
            self.calls[method] += 1
        return super().handle_request(request)

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())


# --- the workload --------------------------------------------------------------------------


def positions(n: int) -> list[Position]:
    """N positions taken in turns from the four supplier x facility groups (MCK or MEDSURG,
    H1 or H2), so consecutive positions go to different orders where they can."""
    groups: dict[tuple[str, str], list[Position]] = {}
    for item in ITEMS:
        supplier = "MEDSURG" if item.category is ItemCategory.SUPPLY else "MCK"
        for store_code, (facility, *_) in STORES.items():
            groups.setdefault((supplier, facility), []).append((item.code, store_code))
    queues = [list(g) for g in groups.values()]
    out: list[Position] = []
    while len(out) < n and any(queues):
        for queue in queues:
            if queue and len(out) < n:
                out.append(queue.pop(0))
    return out


def movement(kind: MovementKind, position: Position, quantity: Decimal) -> Submission:
    item, location = position
    extra: dict[str, Any] = {}
    if kind is MovementKind.RECEIPT:
        extra = {
            "unit_cost": Money(amount=UNIT_PRICES[item]),
            "lot": "BENCH-STOCK",
            "expiry": date.today() + timedelta(days=365),
        }
    return Submission(
        StockMovement(
            kind=kind,
            item=item,
            location=location,
            quantity=quantity,
            unit=UNITS[item],
            occurred_at=datetime.now(UTC),
            **extra,
        ),
        f"{kind.value}-{item}-{location}-{time.monotonic_ns()}",
    )


class Driver:
    """The MedBridge side: workflows, simulated suppliers, the ERP posting worker, pumped."""

    def __init__(self, mb: MedBridge, config: TrytonConfig) -> None:
        self.mb = mb
        own = mb.settings.own_identity
        self.simulators = {
            code: SimulatedSupplier(own, mb._deliver, Faults()) for code in demo_partners()
        }
        self.posting_calls = CountingTransport()
        self.posting_erp = TrytonErp(config, transport=self.posting_calls)
        self.runtime = mb.workflows(self.channel).runtime
        self.poster = ErpPosting(
            mb.engine, self.posting_erp, ErpPostingPolicy(rate_limit=1000, burst=100)
        )

    def channel(self, partner: TradingPartner) -> SimulatedSupplier:
        return self.simulators[partner.code]

    def submit(self, submissions: list[Submission]) -> None:
        self.mb.intake.submit(submissions, SOURCE)

    def pump(self) -> None:
        for consumer in list(self.mb.consumers.values()):
            consumer.drain()
        for simulator in self.simulators.values():
            simulator.pump(all_due=True)
        self.poster.drain(timeout=5.0)

    def run_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if done():
                return
            time.sleep(0.05)
        fail(f"not done in {timeout:g} s: {self.status()}")

    def postings(self) -> dict[PostingStatus, int]:
        with self.mb.engine.connect() as conn:
            return erp_postings.counts(conn)

    def entries_posted(self) -> int:
        """Journal entries posted (the outbox also holds the workflows' documents)."""
        with self.mb.engine.connect() as conn:
            return len(
                erp_postings.postings(
                    conn,
                    status=PostingStatus.POSTED,
                    kind=DocumentKind.JOURNAL_ENTRY,
                    limit=1_000_000,
                )
            )

    def orders(self) -> list[dict[str, Any]]:
        with self.mb.engine.connect() as conn:
            return store.orders(conn, limit=10_000)

    def invoices(self) -> list[dict[str, Any]]:
        with self.mb.engine.connect() as conn:
            return store.invoices(conn, limit=10_000)

    def status(self) -> dict[str, Any]:
        return {
            "orders": Counter(o["status"] for o in self.orders()),
            "invoices": Counter(i["status"] for i in self.invoices()),
            "postings": dict(self.postings()),
        }

    def settled(self, expected: int) -> bool:
        orders, invoices = self.orders(), self.invoices()
        postings = self.postings()
        return (
            len(orders) == expected
            and all(o["status"] == "received" for o in orders)
            and len(invoices) == expected
            and all(i["status"] == "posted" for i in invoices)
            and postings[PostingStatus.PENDING] == 0
        )

    def close(self) -> None:
        self.mb.stop_workers()
        self.posting_erp.close()
        self.mb.engine.dispose()


# --- the baseline: the same ERP documents, called directly ---------------------------------


def entry(k: int, run: str, facility: str, amount: Decimal, day: date) -> JournalEntry:
    """Dispense, receipt, invoice entries in turns (the accounts a cycle posts to)."""
    debit, credit, center = [
        (f"5100-{facility}", f"1400-{facility}", f"{facility}-CC-PHARM"),
        (f"1400-{facility}", f"2100-{facility}", None),
        (f"2100-{facility}", f"2000-{facility}", None),
    ][k % 3]
    return JournalEntry(
        entry_id=f"BASE-{run}-{k:04d}",
        posting_date=day,
        description=f"bench baseline {k}",
        source_event_id=f"bench-{run}-{k}",
        correlation_id=f"bench-{run}-{k}",
        lines=(
            JournalLine(account=debit, debit=amount, cost_center=center, facility=facility),
            JournalLine(account=credit, credit=amount, facility=facility),
        ),
    )


def direct_cycle(
    erp: TrytonErp, po: dict[str, Any], n: int, run: str, entries: int, first: int
) -> None:
    day = date.today()
    reference = f"BASE-{run}-{n:03d}"
    lines = [
        (ln["item"], Decimal(ln["quantity"]), ln["unit"], Money(amount=Decimal(ln["unit_price"])))
        for ln in po["lines"]
    ]
    order = PurchaseOrder(
        reference=reference,
        supplier=po["supplier"],
        order_date=day,
        lines=tuple(OrderLine(item=i, quantity=q, unit=u, unit_price=p) for i, q, u, p in lines),
    )
    ref = erp.create_purchase_order(order)
    erp.confirm_purchase_order(ref.erp_id)
    erp.record_goods_receipt(
        GoodsReceipt(
            reference=f"{reference}:1",
            supplier=po["supplier"],
            purchase_order=reference,
            received_on=day,
            lines=tuple(
                ReceiptLine(
                    item=i,
                    quantity=q,
                    unit=u,
                    lot=f"L-{run}",
                    expiry=day + timedelta(days=365),
                    unit_price=p,
                )
                for i, q, u, p in lines
            ),
        )
    )
    invoice = erp.create_supplier_invoice(
        SupplierInvoice(
            reference=f"bench:{reference}",
            supplier=po["supplier"],
            invoice_number=f"INV-{reference}",
            invoice_date=day,
            purchase_order=reference,
            lines=tuple(
                InvoiceLine(item=i, quantity=q, unit=u, unit_price=p) for i, q, u, p in lines
            ),
        )
    )
    erp.post_supplier_invoice(invoice.erp_id)
    total = sum((q * p.amount for _, q, _, p in lines), Decimal(0)).quantize(Decimal("0.01"))
    for k in range(first, first + entries):
        erp.post_journal_entry(entry(k, run, po["facility"], total, day))


# --- the run -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cycles",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    most = len(ITEMS) * len(STORES)
    parser.add_argument(
        "--positions", type=int, default=20, help=f"store x item positions (20, at most {most})"
    )
    parser.add_argument("--per-round", type=int, default=4, help="positions per planner round (4)")
    parser.add_argument(
        "--dispense", type=int, default=55, help="units dispensed per position (55: 200 -> 145)"
    )
    parser.add_argument("--baseline", type=int, default=5, help="direct ERP cycles timed (5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to settle (300)")
    args = parser.parse_args(argv)
    if not 1 <= args.positions <= most or args.per_round < 1 or args.baseline < 1:
        parser.error(f"--positions 1..{most}; --per-round and --baseline positive")
    if not DEMO_PAR - DEMO_REORDER_POINT <= args.dispense <= DEMO_PAR:
        parser.error(f"--dispense must cross the reorder point: {DEMO_PAR - DEMO_REORDER_POINT}+")
    configure_logging(level="WARNING", json=False)
    started = time.perf_counter()
    run = uuid4().hex[:8]
    chosen = positions(args.positions)
    rounds = [chosen[k : k + args.per_round] for k in range(0, len(chosen), args.per_round)]

    template = build_peer()
    with tempfile.TemporaryDirectory(prefix="medbridge-bench-cycles-") as tmp:
        folder = Path(tmp)
        with trytond(folder, "bench") as url:
            config = TrytonConfig(
                url=url,
                database="bench",
                user=str(template["admin_login"]),
                password=SecretStr(str(template["admin_password"])),
                journal=str(template["journal"]),
                timeout=30.0,
            )
            settings = Settings(  # per event: every dispense's entry posted within the cycle
                database_url=f"sqlite:///{folder / 'medbridge.db'}",
                var_dir=folder / "var",
                erp_gl_posting="per_event",
            ).model_copy(
                update={
                    **FAST,
                    "partners": demo_partners(),
                    "workflow_database_url": f"sqlite:///{folder / 'dbos.sqlite'}",
                }
            )
            mb = MedBridge.build(settings)
            mb.upgrade_database()
            mb.seed_demo()
            driver = Driver(mb, config)
            direct_calls = CountingTransport()
            direct = TrytonErp(config, transport=direct_calls)
            try:
                # not timed: stock to par, its journal entries posted; both adapters logged in
                driver.posting_erp.find_journal_entry("warm-up")
                driver.submit([movement(MovementKind.RECEIPT, p, DEMO_PAR) for p in chosen])
                driver.run_until(lambda: driver.postings()[PostingStatus.PENDING] == 0, 120)
                stocked = driver.entries_posted()
                calls_before = driver.posting_calls.total()

                t0 = time.perf_counter()
                started_orders: list[str] = []
                for batch in rounds:
                    dispense = Decimal(args.dispense)
                    driver.submit([movement(MovementKind.DISPENSE, p, dispense) for p in batch])
                    driver.pump()
                    released = driver.runtime.plan_and_start()
                    if not released:
                        fail(f"a planner round released no order for {batch}")
                    started_orders += released
                cycles = len(started_orders)
                driver.run_until(lambda: driver.settled(cycles), args.timeout)
                seconds = time.perf_counter() - t0

                orders, invoices = driver.orders(), driver.invoices()
                after = driver.postings()
                if after[PostingStatus.FAILED]:
                    fail(f"{after[PostingStatus.FAILED]} ERP postings failed")
                entries = driver.entries_posted() - stocked
                total_calls = driver.posting_calls.total() - calls_before
                lines = sum(len(o["lines"]) for o in orders)

                # the baseline: the same documents for the first orders, straight to Tryton
                per_cycle = max(1, round(entries / cycles))
                direct.find_journal_entry("warm-up")
                direct_before = direct_calls.total()
                replay = sorted(orders, key=lambda o: str(o["reference"]))
                samples = []
                for n in range(args.baseline):
                    t = time.perf_counter()
                    po = replay[n % len(replay)]
                    direct_cycle(direct, po, n, run, per_cycle, n * per_cycle)
                    samples.append(time.perf_counter() - t)
                base_calls = (direct_calls.total() - direct_before) / args.baseline

                # Tryton holds what MedBridge says it does
                purchases = direct.client.search_read(
                    "purchase.purchase",
                    [("reference", "in", started_orders)],
                    ["shipment_state", "state"],
                )
                if len(purchases) != cycles or any(
                    p["shipment_state"] != "received" for p in purchases
                ):
                    fail(f"Tryton: {len(purchases)} of {cycles} orders, {purchases[:5]}")
                posted_invoices = direct.client.search_read(
                    "account.invoice", [("type", "=", "in"), ("state", "=", "posted")], ["id"]
                )
                if len(posted_invoices) != len(invoices) + args.baseline:
                    fail(f"Tryton: {len(posted_invoices)} posted supplier invoices")
                moves = moves_by_description(direct, config.journal)
                if set(moves.values()) != {1} or sum(moves.values()) != (
                    stocked + entries + args.baseline * per_cycle
                ):
                    fail(f"Tryton: {sum(moves.values())} journal moves, some twice: {moves}")
            finally:
                direct.close()
                driver.close()

    rate = cycles / seconds * 60
    base_seconds = statistics.median(samples)
    base_rate = 60 / base_seconds
    mck = sum(1 for o in orders if o["supplier"] == "MCK")
    print(
        f"procure-to-pay against Tryton: {rate:,.1f} cycles/min"
        f" ({cycles} purchase orders received, {len(invoices)} invoices posted,"
        f" {entries} journal entries posted in {seconds:.1f} s)"
    )
    print(
        f"  workload: {len(chosen)} positions ({lines} order lines; {mck} orders to MCK,"
        f" {cycles - mck} to MEDSURG) in {len(rounds)} rounds of <= {args.per_round};"
        f" {args.dispense} dispensed at each from par {DEMO_PAR} (reorder point"
        f" {DEMO_REORDER_POINT}); wall per cycle {seconds / cycles:.2f} s"
    )
    print(
        f"  ERP calls: {total_calls:,} ({total_calls / cycles:.1f}/cycle), all by the outbox"
        " worker (the workflows' documents too)"
    )
    print(
        f"  baseline (TrytonErp directly, median of {args.baseline}: PO create + confirm,"
        f" goods receipt, invoice create + post, {per_cycle} journal entries):"
        f" {base_seconds:.2f} s/cycle, {base_rate:,.1f} cycles/min, {base_calls:.1f} calls/cycle"
    )
    print(
        f"  workflow overhead x{base_rate / rate:.2f} (baseline cycles/min over the workflows';"
        f" timers: receipt grace {FAST['receipt_grace']:g} s, workflow poll"
        f" {FAST['workflow_poll_interval']:g} s, window {FAST['consolidation_window']:g} s)"
    )
    print(
        f"  trytond={template['versions']['trytond']} storage=SQLite(all) cores={os.cpu_count()}"
        f" python={sys.version.split()[0]} wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
