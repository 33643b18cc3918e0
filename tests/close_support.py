"""A month of activity for the period close tests (``test_period_close*``): November at H1
through the intake and the ledger, posted to a fake ERP (consumption in GL summaries, the
default), with a purchase order behind the receipt."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.gl_summary import GlPostingMode
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.flows.gl_summary import GlPostingPolicy, GlSummarizer
from medbridge.flows.intake import Submission
from medbridge.store.tables import purchase_orders

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FAST = ErpPostingPolicy(rate_limit=1000.0, burst=100)
SUMMARISED = GlPostingPolicy(mode=GlPostingMode.SUMMARISED)


def movement(kind: MovementKind, quantity: int, when: datetime, **kw: object) -> Submission:
    m = StockMovement(
        kind=kind,
        item="VANCO-1G",
        location="H1-PHARM",
        quantity=Decimal(quantity),
        unit="VIAL",
        occurred_at=when,
        **kw,  # type: ignore[arg-type]
    )
    return Submission(m, f"close-test-{uuid.uuid4().hex}")


def submit(mb: MedBridge, fake: FakeErp, *submissions: Submission) -> list[str]:
    accepted = mb.intake.submit(list(submissions), source="close-test")
    mb.consumers["ledger"].drain()
    ErpPosting(mb.engine, fake, FAST).drain()
    GlSummarizer(mb.engine, fake, SUMMARISED, now=lambda: NOW).run_once()  # the default mode
    return [str(a.correlation_id) for a in accepted]


def november(mb: MedBridge, fake: FakeErp) -> str:
    """A month of activity at H1: a receipt of a purchase order, dispenses; the PO's
    reference."""
    receipt = movement(
        MovementKind.RECEIPT,
        40,
        datetime(2026, 11, 10, 9, tzinfo=UTC),
        unit_cost=Money(amount=Decimal("6.85")),
        lot="V2611A",
        expiry=date(2028, 3, 31),
    )
    (correlation,) = submit(mb, fake, receipt)
    with mb.engine.begin() as conn:
        conn.execute(
            purchase_orders.insert().values(
                reference="PO-NOV-1",
                supplier="MCK",
                facility="H1",
                urgency="routine",
                lines=[
                    {
                        "line": 1,
                        "item": "VANCO-1G",
                        "location": "H1-PHARM",
                        "unit": "VIAL",
                        "wire_unit": "VIAL",
                        "quantity": "40",
                        "unit_price": "6.85",
                        "currency": "USD",
                    }
                ],
                correlation_id=correlation,
                status="received",
                workflow_started=1,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    submit(
        mb,
        fake,
        movement(MovementKind.DISPENSE, 5, datetime(2026, 11, 20, 14, tzinfo=UTC)),
        movement(MovementKind.DISPENSE, 3, datetime(2026, 11, 28, 22, tzinfo=UTC)),
    )
    return "PO-NOV-1"
