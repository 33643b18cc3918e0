"""The demo's trading partners: the two demo suppliers, simulated, one over X12 (MCK) and one
over cXML (MEDSURG). Every ``interval`` seconds an order for a few of a supplier's contract
items goes out through the real outbox; the simulated supplier reads it off the wire and
answers (acknowledgement, ship notices, invoices, with some faults) through MedBridge's own
inbound exchanges, so ``/v1/trade-documents`` fills up the way it would with real suppliers.
(Replenishment deciding what to order is the durable-workflows issue; here the demo orders.)
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, select

from medbridge.canonical.partners import OwnIdentity, TradingPartner, WireFormat
from medbridge.canonical.trade import (
    KIND_OF,
    OrderDocument,
    OrderLine,
    PartnerItem,
    Party,
    PartyRole,
    TradeDocument,
    document_number,
)
from medbridge.demo.network import ITEMS, UNIT_PRICES
from medbridge.demo.supplier_behaviour import Faults, answer
from medbridge.demo.supplier_simulator import Deliver, SimulatedSupplier
from medbridge.flows.replenishment import wire_unit
from medbridge.flows.trade import ChannelError, SupplierChannel, TradeOutbox
from medbridge.observability.logging import get_logger
from medbridge.store import trade as trade_store
from medbridge.store.tables import trade_interchanges

log = get_logger(__name__)

DEMO_FAULTS = Faults(
    backorder=0.1, price_change=0.15, partial=0.1, over_invoice=0.05, duplicate_invoice=0.1
)
"""Substitutions are left out: a substitute item is received as such by a person, not by the
demo's dock, which receives what the ship notice announces."""


def demo_partners() -> dict[str, TradingPartner]:
    return {
        "MCK": TradingPartner(
            code="MCK", name="Wholesale drug distributor (simulated)", x12_id="MCKDEMO"
        ),
        "MEDSURG": TradingPartner(
            code="MEDSURG",
            name="Med/surg supplies distributor (simulated)",
            wire_format=WireFormat.CXML,
            cxml_identity="MEDSURGDEMO",
            cxml_shared_secret=SecretStr("demo-shared-secret"),
        ),
    }


RESUME_LIMIT = 10_000
"""The most orders per simulated supplier looked at again after a restart."""


class DemoProcurement:
    def __init__(
        self,
        engine: Engine,
        own: OwnIdentity,
        deliver: Deliver,
        *,
        interval: float = 20.0,
        answer_delay: float = 3.0,
        seed: int | None = None,
    ) -> None:
        """``deliver``: how the simulated suppliers' answers reach MedBridge (its exchanges)."""
        self.partners = demo_partners()
        self.simulators = {
            code: SimulatedSupplier(own, deliver, DEMO_FAULTS, delay=answer_delay)
            for code in self.partners
        }
        self.engine = engine
        self.outbox = TradeOutbox(engine, lambda partner: self.simulators[partner.code])
        self.interval = interval
        self.rng = random.Random(seed)  # noqa: S311 - simulated orders, not security

    def order(self, supplier: str) -> OrderDocument:
        drugs = supplier == "MCK"
        candidates = [i for i in ITEMS if (i.category.value == "drug") == drugs]
        chosen = self.rng.sample(candidates, k=min(len(candidates), self.rng.randint(1, 4)))
        now = datetime.now(UTC)
        return OrderDocument(
            order_number=f"DEMO-{now:%Y%m%d%H%M%S}-{self.rng.randint(100, 999)}",
            order_date=now.date(),
            parties=(
                Party(role=PartyRole.BUYER, id="NET", name="Demo health network"),
                Party(role=PartyRole.SHIP_TO, id="H1-PHARM", name="Hospital 1 pharmacy"),
            ),
            lines=tuple(
                OrderLine(
                    line_number=n,
                    item=PartnerItem(
                        supplier_part=f"{supplier}-{item.code}", description=item.name
                    ),
                    quantity=Decimal(self.rng.choice([10, 20, 50, 100])),
                    unit=wire_unit(item.base_unit),
                    unit_price=UNIT_PRICES[item.code],
                )
                for n, item in enumerate(chosen, start=1)
            ),
        )

    def step(self) -> None:
        supplier = self.rng.choice(sorted(self.partners))
        document = self.order(supplier)
        try:
            self.outbox.send(document, partner=self.partners[supplier], correlation_id=None)
        except ChannelError as error:
            log.warning("demo.order_failed", order=document.order_number, reason=error.reason)

    def channel(self, partner: TradingPartner) -> SupplierChannel:
        """How an order reaches ``partner``: its simulator."""
        return self.simulators[partner.code]

    def resume(self) -> int:
        """After a restart, answer the orders sent before it whose answers MedBridge has not
        all received (those the stopped process still held in memory): a real supplier keeps
        its orders. Returns how many orders were taken up again."""
        resumed = 0
        with self.engine.connect() as conn:
            for code, partner in self.partners.items():
                simulator = self.simulators[code]
                # its interchange numbers go on from the last one MedBridge has (a resent
                # number would be taken for a resend of that interchange and ignored)
                simulator.continue_after(_last_control(conn, code))
                for sent in trade_store.find_documents(
                    conn, partner=code, kind="order", direction="out", limit=RESUME_LIMIT
                ):
                    wire = trade_store.answer_of(conn, sent.idempotency_key)
                    if wire is None or wire.status != 200:  # never sent: its workflow resends
                        continue
                    received = {
                        (r.kind, r.number)
                        for r in trade_store.find_documents(
                            conn, partner=code, direction="in", correlation_id=sent.correlation_id
                        )
                    }
                    order = OrderDocument.model_validate(sent.document)
                    answers = {_identity(d) for d in answer(order, simulator.faults)}
                    if answers <= received:
                        continue
                    simulator.resume(order, partner, wire.answer, _among(received))
                    resumed += 1
        if resumed:
            log.info("demo.supplier_orders_resumed", orders=resumed)
        return resumed

    def run(self, stop: threading.Event, ordering: bool = True) -> None:
        """Pump the simulators' answers; with ``ordering``, also order every ``interval``
        (when no replenishment workflow orders). Orders sent before a restart and not
        answered in full are answered first (``resume``)."""
        try:
            self.resume()
        except Exception:  # the database busy or down: those orders wait for their timeouts
            log.exception("demo.supplier_resume_failed")
        for simulator in self.simulators.values():
            threading.Thread(target=simulator.run, args=(stop, 1.0), daemon=True).start()
        if not ordering:
            stop.wait()
            return
        while not stop.wait(self.interval):
            try:
                self.step()
            except Exception:  # the database busy or down: the next order tries again
                log.exception("demo.procurement_failed")


def _identity(document: TradeDocument) -> tuple[str, str]:
    return KIND_OF[type(document)].value, document_number(document)


def _among(received: set[tuple[str, str]]) -> Callable[[TradeDocument], bool]:
    def delivered(document: TradeDocument) -> bool:
        return _identity(document) in received

    return delivered


def _last_control(conn: Connection, partner: str) -> int:
    """The highest X12 interchange control number (ISA13) received from ``partner``."""
    ix = trade_interchanges
    keys = conn.execute(
        select(ix.c.key).where(
            ix.c.partner == partner, ix.c.direction == "in", ix.c.key.like("x12:%")
        )
    ).scalars()
    numbers = [int(k.rsplit(":", 1)[-1]) for k in keys if k.rsplit(":", 1)[-1].isdigit()]
    return max(numbers, default=0)
