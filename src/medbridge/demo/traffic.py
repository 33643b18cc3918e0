"""The demo's traffic: opening stock, then a stream of realistic dispenses and clinical
consumption through the real intake, with restocking receipts when a store runs low."""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import ItemCategory
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.demo.network import ITEMS, STORES, UNIT_PRICES
from medbridge.flows.intake import MovementIntake, Submission
from medbridge.observability.logging import get_logger
from medbridge.store import ledger as ledger_store

log = get_logger(__name__)

SOURCE = "demo/cabinet"
RESTOCK_BELOW = Decimal(20)
RESTOCK_QUANTITY = Decimal(200)


class DemoTraffic:
    def __init__(
        self, intake: MovementIntake, rate: float, seed: int | None = None, restock: bool = True
    ) -> None:
        """``restock``: receive stock when a store runs low (False: replenishment orders it,
        and a store with too little simply dispenses nothing of that item meanwhile)."""
        self.intake, self.rate, self.restock = intake, rate, restock
        self.rng = random.Random(seed)  # noqa: S311 - simulated traffic, not security
        self._n = 0

    def _key(self, kind: str) -> str:
        self._n += 1
        return f"{kind}-{datetime.now(UTC):%Y%m%d%H%M%S%f}-{self._n}"

    def _receipt(self, item: str, store: str, quantity: Decimal) -> Submission:
        lot = f"L{self.rng.randint(10000, 99999)}"
        expiry = date.today() + timedelta(days=self.rng.randint(60, 720))
        price = UNIT_PRICES[item] * Decimal(self.rng.choice(["0.97", "1.00", "1.00", "1.03"]))
        movement = StockMovement(
            kind=MovementKind.RECEIPT,
            item=item,
            location=store,
            quantity=quantity,
            unit=next(i.base_unit for i in ITEMS if i.code == item),
            lot=lot,
            expiry=expiry,
            unit_cost=Money(amount=price.quantize(Decimal("0.0001"))),
            occurred_at=datetime.now(UTC),
        )
        return Submission(movement, self._key("receipt"))

    def _fitting(self, store: str) -> list[str]:
        surgical = store.endswith(("-OR", "-ED"))
        return [
            i.code
            for i in ITEMS
            if (i.category is ItemCategory.SUPPLY) == surgical or self.rng.random() < 0.2
        ]

    def open_stock(self) -> None:
        """Opening balances for every item in every store (skipped when already seeded)."""
        with self.intake.engine.connect() as conn:
            if ledger_store.stock(conn, limit=1):
                return
        self.intake.submit(
            [
                self._receipt(item.code, store, RESTOCK_QUANTITY)
                for store in STORES
                for item in ITEMS
            ],
            SOURCE,
        )

    def step(self) -> None:
        store = self.rng.choice(list(STORES))
        item = self.rng.choice(self._fitting(store))
        with self.intake.engine.connect() as conn:
            held = sum(
                (r.quantity for r in ledger_store.stock(conn, item=item, location=store)),
                Decimal(0),
            )
        quantity = Decimal(self.rng.choice([1, 1, 1, 2, 2, 3, 5]))
        if held - quantity < RESTOCK_BELOW:
            if self.restock:
                self.intake.submit([self._receipt(item, store, RESTOCK_QUANTITY)], SOURCE)
            return
        category = next(i.category for i in ITEMS if i.code == item)
        kind = (
            MovementKind.DISPENSE
            if category is ItemCategory.DRUG
            else MovementKind.CLINICAL_CONSUMPTION
        )
        if self.rng.random() < 0.03:
            kind = MovementKind.WASTAGE
        movement = StockMovement(
            kind=kind,
            item=item,
            location=store,
            quantity=quantity,
            unit=next(i.base_unit for i in ITEMS if i.code == item),
            occurred_at=datetime.now(UTC),
            encounter_ref=f"enc-{self.rng.getrandbits(48):012x}",
            reason="expired on shelf" if kind is MovementKind.WASTAGE else None,
        )
        self.intake.submit([Submission(movement, self._key(kind.value))], SOURCE)

    def run(self, stop: threading.Event) -> None:
        self.open_stock()
        log.info("demo.started", rate=self.rate)
        while not stop.wait(self.rng.expovariate(self.rate)):
            try:
                self.step()
            except Exception:
                log.exception("demo.step_failed")
