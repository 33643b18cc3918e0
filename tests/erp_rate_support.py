"""The rate limit of an ERP destination, checked from the ERP's side (issue 17): a counting
proxy in front of the ERP adapter records every port call (method, monotonic time), and a
procure-to-pay cycle with journal postings runs through a destination with a low rate limit.
Every kind of ERP call must go through the proxy (the workflows' documents too: they go
through the outbox worker), and no window of the recorded calls may hold more than
``burst + rate x window`` of them. This checks the spacing of the calls the ERP saw, not how
long the run took."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from medbridge.app import MedBridge
from medbridge.canonical.erp import ErpPort
from medbridge.canonical.movements import MovementKind
from medbridge.demo.supplier_behaviour import Fault, Faults
from medbridge.flows.erp_posting import ErpPostingPolicy
from medbridge.settings import Settings
from medbridge.store import erp_postings
from medbridge.store.erp_postings import PostingStatus
from procurement_support import Cycle

RATE, BURST = 5.0, 1
"""The destination's limit: 5 calls/s, no burst beyond one call."""

SLACK = 0.05
"""Seconds of clock slack per window: a call is recorded just after its token was taken, and
a thread switch in between may shift it a little (far less than the 0.2 s between tokens)."""

KINDS = {
    "create_purchase_order",
    "confirm_purchase_order",
    "cancel_purchase_order",
    "record_goods_receipt",
    "create_supplier_invoice",
    "post_supplier_invoice",
    "post_journal_entries",
}
"""Every kind of ERP call a procure-to-pay cycle makes (the cancellation: the line the
supplier refused is cancelled in the ERP once the rest is received)."""


@dataclass(frozen=True)
class PortCall:
    method: str
    at: float


class CountingErp:
    """The ERP port in front of another adapter: each method call recorded (its name, the
    monotonic time it was made), then passed on."""

    def __init__(self, erp: ErpPort) -> None:
        self._erp = erp
        self.calls: list[PortCall] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._erp, name)
        if not callable(method):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(PortCall(name, time.monotonic()))
            return method(*args, **kwargs)

        return counted

    def port(self) -> ErpPort:
        return cast(ErpPort, self)


def worst_window(times: Sequence[float], rate: float, burst: int) -> tuple[int, float, float]:
    """The window of recorded calls that comes closest to (or beyond) the limit: (calls in
    it, its length in seconds, what the limit allows in it, slack included)."""
    ordered = sorted(times)
    worst = (0, 0.0, float("inf"))
    for i, start in enumerate(ordered):
        for j in range(i, len(ordered)):
            n, length = j - i + 1, ordered[j] - start
            allowed = burst + rate * (length + SLACK)
            if n - allowed > worst[0] - worst[2]:
                worst = (n, length, allowed)
    return worst


def rate_limited_cycle(settings: Settings, erp: ErpPort, done: Callable[[Cycle], bool]) -> None:
    """One purchase order of two lines from MCK for H1-PHARM: VANCO-1G delivered, invoiced
    and posted; AMPI-250 refused by the supplier (cancelled in the ERP once the rest is in);
    the journal entries of the stock, the dispenses and the receipt posted. Every ERP call
    through ``erp`` at ``RATE``/``BURST``; returns once ``done`` and the outbox is empty."""
    mb = MedBridge.build(settings)
    mb.seed_demo()
    try:
        cycle = Cycle(
            mb,
            Faults(force={"MCK-AMPI-250": Fault.REJECT}),
            erp,
            posting=ErpPostingPolicy(rate_limit=RATE, burst=BURST),
        )
        for item in ("VANCO-1G", "AMPI-250"):
            cycle.stock(item, "H1-PHARM", 200)
        cycle.pump()
        for item in ("VANCO-1G", "AMPI-250"):
            cycle.movement(MovementKind.DISPENSE, item, "H1-PHARM", 60)
        cycle.pump()
        (reference,) = cycle.runtime.plan_and_start()

        def settled() -> bool:
            with mb.engine.connect() as conn:
                pending = erp_postings.counts(conn)[PostingStatus.PENDING]
            return done(cycle) and pending == 0

        cycle.run_until(settled, timeout=120)
        assert [o["reference"] for o in cycle.orders()] == [reference]
    finally:
        mb.stop_workers()


def cycle_done(cycle: Cycle) -> bool:
    return [o["status"] for o in cycle.orders()] == ["received"] and [
        i["status"] for i in cycle.invoices()
    ] == ["posted"]
