"""Expected demand: pharmacy orders appended to the bus as ``pharmacy.order_received.v1``
(the ledger ignores them; replenishment reads them)."""

from __future__ import annotations

from collections.abc import Sequence

from medbridge.bus.port import AppendResult, Bus
from medbridge.canonical.demand import ORDER_RECEIVED, PharmacyOrder
from medbridge.canonical.events import EventEnvelope


class DemandRecorder:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def record(
        self, orders: Sequence[PharmacyOrder], *, source: str, idempotency_key: str
    ) -> list[AppendResult]:
        envelopes = [
            EventEnvelope[PharmacyOrder](
                type=ORDER_RECEIVED,
                source=source,
                subject=f"{order.source_system}:{order.item.code}",
                idempotency_key=f"{idempotency_key}#{n}",
                data=order,
            )
            for n, order in enumerate(orders)
        ]
        return self.bus.append(envelopes)
