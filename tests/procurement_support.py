"""What the procure-to-pay tests share: a MedBridge with its workflows launched against an ERP,
the simulated suppliers as its channels, and a driver that runs everything until a condition
holds (the workflows run in DBOS threads; the bus consumers, the ERP posting worker and the
simulators are pumped here: the workflows' steps wait for their ERP documents until the
worker pumped here posted them)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import make_url

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.erp import ErpPort, ErpProduct, ErpSupplier
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.partners import TradingPartner
from medbridge.canonical.trade import InvoiceDocument, InvoiceLine, InvoicePurpose, PartnerItem
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.demo.network import ITEMS
from medbridge.demo.procurement import demo_partners
from medbridge.demo.supplier_behaviour import Faults
from medbridge.demo.supplier_simulator import SimulatedSupplier
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.flows.intake import Submission
from medbridge.settings import Settings
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as store

FAST = {
    "consolidation_window": 0.0,
    "ack_timeout": 30.0,
    "shipment_timeout": 60.0,
    "receipt_grace": 3.0,
    "task_poll_interval": 0.3,
    "workflow_poll_interval": 0.05,
    "auto_receive": True,
}

FAST_POSTING = ErpPostingPolicy(rate_limit=1000, burst=100)


def cycle_settings(settings: Settings, tmp_path: Any, **overrides: Any) -> Settings:
    """Fast timers, the demo partners; DBOS's system tables in the test's own place: beside
    a SQLite database, or in a schema of its own in the PostgreSQL database."""
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        place: dict[str, Any] = {"workflow_database_url": f"sqlite:///{tmp_path}/dbos.sqlite"}
    else:
        place = {"workflow_schema": f"dbos_{uuid.uuid4().hex[:10]}"}
    values = {**FAST, "partners": demo_partners(), **place, **overrides}
    return settings.model_copy(update=values)


@dataclass
class Cycle:
    """A MedBridge with workflows and simulated suppliers, driven by ``run_until``."""

    mb: MedBridge
    faults: Faults = field(default_factory=Faults)
    erp: ErpPort | None = None
    """The ERP the outbox worker posts to (every ERP call of the workflows goes through it);
    None: the configured ERP (the real Tryton)."""
    posting: ErpPostingPolicy | None = None
    """The outbox worker's policy (None: destination ``tryton``, 1000 calls/s)."""
    simulators: dict[str, SimulatedSupplier] = field(default_factory=dict)

    def __post_init__(self) -> None:
        own = self.mb.settings.own_identity
        for code in demo_partners():
            self.simulators[code] = SimulatedSupplier(own, self.mb._deliver, self.faults)
        self.workflows = self.mb.workflows(self.channel)
        self.runtime = self.workflows.runtime
        erp = self.erp or self.mb.erp()
        self.poster = (
            ErpPosting(self.mb.engine, erp, self.posting or FAST_POSTING)
            if erp is not None
            else None
        )
        self.posters = [] if self.poster is None else [self.poster]
        """Every destination's worker: with several ERPs named in the settings (and no
        ``erp`` given), one per destination, each at ``FAST_POSTING``'s rate."""
        if self.erp is None and len(self.mb.erp_slots) > 1:
            self.posters = [
                ErpPosting(self.mb.engine, adapter, replace(FAST_POSTING, erp_name=name))
                for name in self.mb.erp_slots
                for adapter in (self.mb.erp(name),)
                if adapter is not None
            ]
            self.poster = self.posters[0]

    def channel(self, partner: TradingPartner) -> SimulatedSupplier:
        return self.simulators[partner.code]

    def movement(
        self, kind: MovementKind, item: str, location: str, quantity: int, **kw: Any
    ) -> str:
        unit = {"VANCO-1G": "VIAL", "AMPI-250": "CAP", "DRAPE-SM": "EA"}[item]
        movement = StockMovement(
            kind=kind,
            item=item,
            location=location,
            quantity=Decimal(quantity),
            unit=unit,
            occurred_at=datetime.now(UTC),
            **kw,
        )
        key = f"{kind.value}-{item}-{location}-{time.monotonic_ns()}"
        (accepted,) = self.mb.intake.submit([Submission(movement, key)], "test")
        return str(accepted.correlation_id)

    def stock(self, item: str, location: str, quantity: int) -> None:
        self.movement(
            MovementKind.RECEIPT,
            item,
            location,
            quantity,
            unit_cost=Money(amount=Decimal("6.85") if item == "VANCO-1G" else Decimal("1.00")),
        )

    def pump(self) -> None:
        for consumer in list(self.mb.consumers.values()):
            consumer.drain()
        for simulator in self.simulators.values():
            simulator.pump(all_due=True)
        for poster in self.posters:
            poster.drain(timeout=5.0)

    def run_until(self, done: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if done():
                self.pump()
                return
            time.sleep(0.05)
        raise AssertionError(f"not done in {timeout} s: {self.status()}")

    def status(self) -> dict[str, Any]:
        with self.mb.engine.connect() as conn:
            return {
                "orders": [(o["reference"], o["status"]) for o in store.orders(conn)],
                "invoices": [(i["number"], i["status"]) for i in store.invoices(conn)],
            }

    def orders(self) -> list[dict[str, Any]]:
        with self.mb.engine.connect() as conn:
            return store.orders(conn)

    def invoices(self) -> list[dict[str, Any]]:
        with self.mb.engine.connect() as conn:
            return store.invoices(conn)


def fake_erp() -> FakeErp:
    return FakeErp(
        products=tuple(
            ErpProduct(erp_id=str(n), code=i.code, name=i.name, unit=i.base_unit)
            for n, i in enumerate(ITEMS, start=1)
        ),
        suppliers=(ErpSupplier("1", "MCK", "MCK"), ErpSupplier("2", "MEDSURG", "MEDSURG")),
    )


class Harness:
    """A cycle driven through the API as a person would: tasks decided, invoices sent."""

    def __init__(self, settings: Settings, faults: Faults, erp: ErpPort | None = None) -> None:
        self.mb = MedBridge.build(settings)
        self.mb.seed_demo()
        self.erp = erp
        self.cycle = Cycle(self.mb, faults, erp)
        self.client = TestClient(self.mb.api())
        self.key = self.mb.ensure_admin_key()[0]

    def order(self, item: str = "VANCO-1G", store_: str = "H1-PHARM") -> str:
        self.cycle.stock(item, store_, 200)
        self.cycle.pump()
        self.cycle.movement(MovementKind.DISPENSE, item, store_, 60)
        self.cycle.pump()
        (reference,) = self.cycle.runtime.plan_and_start()
        return reference

    def get(self, path: str, **params: Any) -> Any:
        answer = self.client.get(path, params=params, headers={"X-API-Key": self.key})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, json=body, headers={"X-API-Key": self.key})

    def task(self, queue: str, kind: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def opened() -> bool:
            found[:] = [
                t for t in self.get("/v1/work-items", queue=queue)["items"] if t["kind"] == kind
            ]
            return bool(found)

        self.cycle.run_until(opened, timeout=60)
        return found[0]

    def decide(self, item: dict[str, Any], **decision: Any) -> None:
        answer = self.post(f"/v1/work-items/{item['id']}/decision", decision)
        assert answer.status_code == 200, answer.text

    def invoice_status(self, number: str) -> str | None:
        return next(
            (i["status"] for i in self.cycle.invoices() if i["number"] == number.upper()), None
        )

    def until_invoice(self, number: str, status: str) -> None:
        self.cycle.run_until(lambda: self.invoice_status(number) == status, timeout=60)

    def send_credit_memo(self, number: str, order: str, amount: Decimal) -> str:
        """MCK's credit memo for ``amount`` against VANCO-1G on ``order`` (the variance of
        invoice ``number``, credited back); returns the memo's number."""
        memo = f"CM-{number}"[-30:]
        self.send_invoice(
            InvoiceDocument(
                invoice_number=memo,
                invoice_date=date.today(),
                purpose=InvoicePurpose.CREDIT_MEMO,
                lines=(
                    InvoiceLine(
                        line_number=1,
                        item=PartnerItem(supplier_part="MCK-VANCO-1G"),
                        quantity=Decimal(1),
                        unit="EA",
                        unit_price=amount,
                        order_number=order,
                        order_line=1,
                    ),
                ),
                total=amount,
            )
        )
        return memo

    def send_invoice(self, document: InvoiceDocument) -> None:
        self.cycle.simulators["MCK"]._send_back(demo_partners()["MCK"], document)

    def journal(self, entry_prefix: str = "ap:") -> list[Any]:
        with self.mb.engine.connect() as conn:
            entries = ledger_store.journal(conn, limit=1000)
        return [e for e in entries if e.entry_id.startswith(entry_prefix)]
