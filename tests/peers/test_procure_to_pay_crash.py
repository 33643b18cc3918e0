"""Crash recovery of the whole procure-to-pay cycle against a REAL Tryton ERP.

MedBridge runs as a child process (``medbridge run``) configured by environment, with one
failpoint armed (``MEDBRIDGE_FAILPOINT``): right after that step's side effect, before DBOS
records the step, the process SIGKILLs itself (once: the marker file disarms it). The
simulated supplier lives in this (the parent) process, so it survives the kill: it reads the
850s MedBridge writes into the partner's outbound folder and POSTs its answers to
``/v1/edi/x12``, retrying while MedBridge is down. When the child dies it is restarted with
the same environment; the recovered workflows carry on from their last recorded step.

Done: the purchase order received, its one invoice posted, the ERP posting backlog empty.
Then, never a duplicate: one purchase, one goods receipt (shipment), one supplier invoice
and one move per journal entry in Tryton; one goods receipt and journal entries unique by
source in MedBridge; one order at the supplier (a resend reuses the control number)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from medbridge.app import MedBridge
from medbridge.canonical.partners import TradingPartner
from medbridge.canonical.trade import OrderDocument
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.connectors.x12 import parse_interchange
from medbridge.demo.supplier_simulator import SimulatedSupplier
from medbridge.flows.trade import Answer
from medbridge.settings import Settings
from medbridge.store import erp_postings as erp_store
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as store
from medbridge.store.db import create_db_engine
from medbridge.store.erp_postings import DocumentKind
from medbridge.store.tables import goods_receipts, journal_entries
from peers.tryton import TrytonPeer
from rest_movements import movement

pytestmark = [pytest.mark.peer]

FAILPOINTS = [
    "erp_order",
    "send_order",
    "erp_confirm",
    "erp_receipt",
    "receipt_movements",
    "match",
    "erp_invoice",
    "post",
]
ADMIN_KEY = "crash-test-admin-key-0123456789"
DEADLINE = 120.0
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    """``medbridge run`` in a child process, restarted when it dies (SIGKILL expected)."""

    env: dict[str, str]
    log: Path
    marker: Path
    failpoint: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)
    _started_at: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._started_at = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "medbridge.cli", "run"],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                started = self.log.read_bytes()[self._started_at :]
                if self.proc.returncode != -signal.SIGKILL and b"address already in use" in started:
                    self.port = _free_port()  # taken by another test run meanwhile: move
                    self.env["MEDBRIDGE_HTTP_PORT"] = str(self.port)
                    self.start()
                    return
                self.ensure()  # died while starting: a second kill fails there
                return
            try:
                if httpx.get(f"{self.base}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"MedBridge did not come up in {DEADLINE} s:\n{self.tail()}")

    def ensure(self) -> None:
        """Alive, or restarted after the failpoint's SIGKILL (anything else fails)."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is None:
            return
        self.exits.append(code)
        assert code == -signal.SIGKILL, f"MedBridge exited with {code}:\n{self.tail()}"
        assert self.exits == [-signal.SIGKILL], f"killed again: {self.exits}\n{self.tail()}"
        assert self.marker.exists(), "killed, but not by the failpoint"
        assert self.marker.read_text() == self.failpoint
        self.start()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request to MedBridge, retried while it is down or restarting."""
        headers = {"X-API-Key": ADMIN_KEY, **kw.pop("headers", {})}
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            self.ensure()
            try:
                response = httpx.request(
                    method, f"{self.base}{path}", headers=headers, timeout=30.0, **kw
                )
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.status_code < 500:
                return response
            time.sleep(0.2)
        raise AssertionError(f"{method} {path}: no answer in {DEADLINE} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Supplier:
    """The supplier's side of the wire: 850 files in, answers over HTTP."""

    partner: TradingPartner
    child: Child
    simulator: SimulatedSupplier = field(init=False)
    _handled: set[tuple[str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.simulator = SimulatedSupplier(Settings().own_identity, self.deliver)

    def deliver(self, wire: str, body: bytes) -> Answer:
        assert wire == "x12"
        response = self.child.request(
            "POST",
            "/v1/edi/x12",
            content=body,
            headers={"Content-Type": "application/edi-x12"},
        )
        return Answer(response.status_code, response.text)

    def pump(self) -> None:
        """MedBridge restarted if it died; every 850 written (or rewritten) since the last
        pump to the simulator (which takes an order once per wire identity); its answers
        back to MedBridge."""
        self.child.ensure()
        folder = self.partner.outbound_folder
        assert folder is not None
        for path in sorted(folder.glob("850_*.x12")):
            seen = (path.name, path.stat().st_mtime_ns)
            if seen in self._handled:
                continue
            parsed = parse_interchange(path.read_bytes())
            assert not parsed.errors, parsed.errors
            (order,) = parsed.documents
            assert isinstance(order, OrderDocument)
            self.simulator.take(order, self.partner, parsed.interchange.control_number)
            self._handled.add(seen)
        self.simulator.pump(all_due=True)


def _on_hand(engine: Engine) -> float:
    with engine.connect() as conn:
        rows = ledger_store.stock(conn, item="VANCO-1G", location="H1-PHARM")
    return float(sum(r.quantity for r in rows))


def _until(done: Callable[[], bool], drive: Callable[[], None], what: Callable[[], Any]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        drive()
        if done():
            return
        time.sleep(0.2)
    raise AssertionError(f"not done in {DEADLINE} s: {what()}")


@pytest.fixture
def medbridge_db(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A fresh, migrated MedBridge SQLite database with the demo master data."""
    url = f"sqlite:///{tmp_path / 'medbridge.db'}"
    mb = MedBridge.build(Settings(database_url=url, var_dir=tmp_path / "var"))
    mb.upgrade_database()
    mb.seed_demo()
    mb.engine.dispose()
    engine = create_db_engine(url)
    yield url, engine
    engine.dispose()


@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_crash_at_each_step_recovers_exactly_once(
    failpoint: str, tmp_path: Path, tryton: TrytonPeer, medbridge_db: tuple[str, Engine]
) -> None:
    url, engine = medbridge_db
    outbound = tmp_path / "mck-out"
    outbound.mkdir()
    partner = TradingPartner(code="MCK", x12_id="MCKDEMO", outbound_folder=outbound)
    erp = tryton.config()
    marker = tmp_path / "failpoint.marker"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDBRIDGE_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT / "src"),
            "MEDBRIDGE_DATABASE_URL": url,
            "MEDBRIDGE_WORKFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'dbos.sqlite'}",
            "MEDBRIDGE_VAR_DIR": str(tmp_path / "var"),
            "MEDBRIDGE_SQLITE_SYNCHRONOUS": "NORMAL",
            "MEDBRIDGE_HTTP_HOST": "127.0.0.1",
            "MEDBRIDGE_HTTP_PORT": str(_free_port()),
            "MEDBRIDGE_ADMIN_API_KEY": ADMIN_KEY,
            "MEDBRIDGE_MLLP_ENABLED": "false",
            "MEDBRIDGE_ERP_URL": str(erp.url),
            "MEDBRIDGE_ERP_DATABASE": erp.database,
            "MEDBRIDGE_ERP_USER": erp.user,
            "MEDBRIDGE_ERP_PASSWORD": erp.password.get_secret_value(),
            "MEDBRIDGE_ERP_POLL_INTERVAL": "0.2",
            # per event: every journal entry's own move is checked exactly once in Tryton
            # below, whenever the run is (a summarised dispense's hour could close mid-test)
            "MEDBRIDGE_ERP_GL_POSTING": "per_event",
            # what the killed worker had claimed is posted again once its lease runs out
            "MEDBRIDGE_ERP_LEASE": "5",
            "MEDBRIDGE_PARTNERS": json.dumps({"MCK": partner.model_dump(mode="json")}),
            "MEDBRIDGE_AUTO_RECEIVE": "true",
            "MEDBRIDGE_CONSOLIDATION_WINDOW": "0",
            "MEDBRIDGE_REPLENISHMENT_INTERVAL": "0.5",
            # how long an invoice waits for its goods: it goes on as soon as they are in, so
            # a long grace costs nothing; a short one makes the outcome depend on how long
            # the restart and the real ERP take (the invoice overtakes the goods receipt)
            "MEDBRIDGE_RECEIPT_GRACE": "60",
            "MEDBRIDGE_TASK_POLL_INTERVAL": "0.3",
            "MEDBRIDGE_WORKFLOW_POLL_INTERVAL": "0.05",
            "MEDBRIDGE_RETRY_INITIAL_BACKOFF": "0.05",
            "MEDBRIDGE_RETRY_MAX_BACKOFF": "0.5",
            "MEDBRIDGE_FAILPOINT": failpoint,
            "MEDBRIDGE_FAILPOINT_MARKER": str(marker),
        }
    )
    child = Child(
        env=env,
        log=tmp_path / "medbridge.log",
        marker=marker,
        failpoint=failpoint,
        port=int(env["MEDBRIDGE_HTTP_PORT"]),
    )
    supplier = Supplier(partner, child)

    def status() -> dict[str, Any]:
        with engine.connect() as conn:
            return {
                "orders": [(o["reference"], o["status"]) for o in store.orders(conn)],
                "invoices": [(i["number"], i["status"]) for i in store.invoices(conn)],
                "postings": {s.value: n for s, n in erp_store.counts(conn).items()},
                "journal": ledger_store.counts(conn)["journal_entries"],
                "exits": child.exits,
                "log": child.tail(30),
            }

    try:
        child.start()
        stocked = child.request(
            "POST",
            "/v1/stock-movements",
            json=movement("crash-stock", "receipt", quantity=200),
        )
        assert stocked.status_code == 202, stocked.text
        _until(lambda: _on_hand(engine) == 200, child.ensure, status)
        dispensed = child.request(
            "POST", "/v1/stock-movements", json=movement("crash-dispense", "dispense", quantity=55)
        )
        assert dispensed.status_code == 202, dispensed.text

        def done() -> bool:
            with engine.connect() as conn:
                orders = store.orders(conn)
                invoices = store.invoices(conn)
                posted = erp_store.postings(
                    conn, status=erp_store.PostingStatus.POSTED, kind=DocumentKind.JOURNAL_ENTRY
                )
                entries = ledger_store.counts(conn)["journal_entries"]
            return (
                [o["status"] for o in orders] == ["received"]
                and [i["status"] for i in invoices] == ["posted"]
                # the stock, the dispense, the goods receipt, the invoice; all but the
                # invoice posted by MedBridge (the ERP's own invoice document books it)
                and entries == 4
                and len(posted) == entries - 1
                # and the failpoint fired: the [post] one comes right after the commit that
                # makes the rest true, so without this the check could win the race
                and bool(child.exits)
            )

        _until(done, supplier.pump, status)

        # the failpoint fired, once, and the cycle went on in the restarted process
        child.ensure()
        assert child.exits == [-signal.SIGKILL], status()
        assert marker.read_text() == failpoint

        with engine.connect() as conn:
            (po,) = store.orders(conn)
            (invoice,) = store.invoices(conn)
            counts = erp_store.counts(conn)
            receipts = conn.execute(select(goods_receipts)).mappings().all()
            entries = conn.execute(select(journal_entries)).mappings().all()
        reference = po["reference"]
        assert float(po["lines"][0]["quantity"]) == 55  # par 200 - 145
        assert invoice["order_reference"] == reference
        assert counts[erp_store.PostingStatus.PENDING] == 0
        assert counts[erp_store.PostingStatus.FAILED] == 0
        # the workflow's ERP documents went through the outbox, each posted once
        with engine.connect() as conn:
            documents = [
                (p.kind.value, p.document, p.status.value)
                for p in erp_store.postings(conn)
                if p.kind is not DocumentKind.JOURNAL_ENTRY
            ]
        assert sorted(documents) == sorted(
            [
                ("purchase_order", reference, "posted"),
                ("order_confirmation", f"{reference}:confirm", "posted"),
                ("goods_receipt", receipts[0]["reference"], "posted"),
                ("supplier_invoice", invoice["reference"][:120], "posted"),
            ]
        ), documents
        assert [(r["order_reference"], r["status"]) for r in receipts] == [(reference, "received")]
        assert len(entries) == 4
        assert len({e["source_event_id"] for e in entries}) == len(entries)

        # the supplier got one order (a resend carries the same control number)
        sim = supplier.simulator
        assert [o.order_number for o in sim.orders] == [reference]
        assert len({identity for identity, _ in sim.received}) == 1
        assert [a.status for _, a in sim.answers] == [200] * len(sim.answers)

        # Tryton: never a duplicate purchase, receipt, invoice or journal posting
        client = TrytonErp(erp).client
        purchases = client.search_read(
            "purchase.purchase", [("reference", "=", reference)], ["state", "shipment_state"]
        )
        assert len(purchases) == 1, purchases
        assert purchases[0]["shipment_state"] == "received"
        shipments = client.search_read(
            "stock.shipment.in", [("reference", "like", f"{reference}:%")], ["state"]
        )
        assert [s["state"] for s in shipments] == ["done"]
        invoices = client.search_read(
            "account.invoice", [("type", "=", "in")], ["state", "reference", "total_amount"]
        )
        assert [i["state"] for i in invoices] == ["posted"], invoices
        assert str(invoices[0]["total_amount"]) == "376.75"  # 55 x 6.85
        moves = client.search_read(
            "account.move", [("journal.code", "=", erp.journal)], ["description", "state"]
        )
        descriptions = [m["description"] for m in moves]
        assert not [d for d, n in Counter(descriptions).items() if n > 1], descriptions
        sent = [e["entry_id"] for e in entries if e["booked_by"] == "medbridge"]
        assert sorted(descriptions) == sorted(sent)
        assert {m["state"] for m in moves} == {"posted"}
        # the invoice: booked once, by its own document's move
        booked = client.search_read(
            "account.move", [("origin", "like", "account.invoice,%")], ["state"]
        )
        assert [m["state"] for m in booked] == ["posted"]
    finally:
        child.stop()
