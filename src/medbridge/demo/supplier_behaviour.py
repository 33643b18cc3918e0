"""How the simulated supplier answers a purchase order: pure, deterministic, configurable.

``answer(order, faults)`` returns what a real supplier would send back, in order: the
acknowledgement, then one or two ship notices (a second one for backordered lines and the
rest of partial shipments), then one invoice per ship notice (twice, when a duplicate invoice
is injected). Every choice is drawn from a random generator seeded with ``faults.seed`` and
the order number, so the same order always gets the same answers (a restarted simulator, a
resent order), and a test can force a fault on an item with ``faults.force``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from enum import StrEnum

from medbridge.canonical.trade import (
    AckLine,
    AcknowledgementDocument,
    AckStatus,
    InvoiceDocument,
    InvoiceLine,
    LineStatus,
    OrderDocument,
    OrderLine,
    Pack,
    PartnerItem,
    Party,
    PartyRole,
    ShipLine,
    ShipNoticeDocument,
    ShippedOrder,
    TradeDocument,
)

CENT = Decimal("0.01")


class Fault(StrEnum):
    NONE = "none"
    BACKORDER = "backorder"  # acknowledged as backordered, ships in a second shipment
    SUBSTITUTE = "substitute"  # another item ships in its place
    PRICE_CHANGE = "price_change"  # acknowledged and invoiced at a higher price
    PARTIAL = "partial"  # half ships now, the rest in a second shipment
    REJECT = "reject"  # the line is refused
    OVER_INVOICE = "over_invoice"  # invoiced for one more than shipped


@dataclass(frozen=True)
class Faults:
    """Probabilities of each line fault, and of a duplicate invoice per shipment."""

    backorder: float = 0.0
    substitute: float = 0.0
    price_change: float = 0.0
    partial: float = 0.0
    reject: float = 0.0
    over_invoice: float = 0.0
    duplicate_invoice: float = 0.0
    price_change_percent: Decimal = Decimal(5)
    lead_days: int = 2
    backorder_days: int = 7
    shelf_life_days: int = 730
    seed: int = 0
    force: Mapping[str, Fault] = field(default_factory=dict)
    """Faults forced per item (its supplier part, else buyer part, else GTIN)."""
    force_duplicate_invoice: bool = False

    def __post_init__(self) -> None:
        odds = (
            self.backorder,
            self.substitute,
            self.price_change,
            self.partial,
            self.reject,
            self.over_invoice,
        )
        if any(p < 0 or p > 1 for p in (*odds, self.duplicate_invoice)) or sum(odds) > 1:
            raise ValueError("fault probabilities must be in [0, 1] and sum to at most 1")

    def draw(self, rng: random.Random, item: PartnerItem) -> Fault:
        key = item.supplier_part or item.buyer_part or item.gtin or item.ndc or ""
        if key in self.force:
            return self.force[key]
        roll = rng.random()
        for fault, odds in (
            (Fault.BACKORDER, self.backorder),
            (Fault.SUBSTITUTE, self.substitute),
            (Fault.PRICE_CHANGE, self.price_change),
            (Fault.PARTIAL, self.partial),
            (Fault.REJECT, self.reject),
            (Fault.OVER_INVOICE, self.over_invoice),
        ):
            if roll < odds:
                return fault
            roll -= odds
        return Fault.NONE


@dataclass(frozen=True)
class _Plan:
    line: OrderLine
    fault: Fault
    item: PartnerItem  # what ships
    price: Decimal  # what is invoiced per unit
    now: Decimal  # shipped in the first shipment
    later: Decimal  # shipped in the second


def _plan(order: OrderDocument, faults: Faults, rng: random.Random) -> list[_Plan]:
    plans = []
    for line in order.lines:
        fault = faults.draw(rng, line.item)
        item, price, now, later = line.item, line.unit_price, line.quantity, Decimal(0)
        if fault is Fault.BACKORDER:
            now, later = Decimal(0), line.quantity
        elif fault is Fault.PARTIAL:
            now = (line.quantity / 2).quantize(Decimal(1), rounding=ROUND_DOWN)
            now = now if now > 0 else line.quantity
            later = line.quantity - now
        elif fault is Fault.REJECT:
            now = Decimal(0)
        elif fault is Fault.SUBSTITUTE:
            base = line.item.supplier_part or line.item.buyer_part or line.item.gtin or "ITEM"
            item = PartnerItem(supplier_part=f"{base[:31]}-ALT", description="substitute")
        elif fault is Fault.PRICE_CHANGE:
            factor = 1 + faults.price_change_percent / 100
            price = (line.unit_price * factor).quantize(CENT, rounding=ROUND_HALF_UP)
        plans.append(_Plan(line, fault, item, price, now, later))
    return plans


_STATUS = {
    Fault.NONE: LineStatus.ACCEPTED,
    Fault.OVER_INVOICE: LineStatus.ACCEPTED,
    Fault.PARTIAL: LineStatus.ACCEPTED,
    Fault.BACKORDER: LineStatus.BACKORDERED,
    Fault.SUBSTITUTE: LineStatus.SUBSTITUTED,
    Fault.PRICE_CHANGE: LineStatus.PRICE_CHANGED,
    Fault.REJECT: LineStatus.REJECTED,
}


def _acknowledgement(order: OrderDocument, plans: list[_Plan], faults: Faults) -> TradeDocument:
    lines = []
    for plan in plans:
        status = _STATUS[plan.fault]
        lines.append(
            AckLine(
                line_number=plan.line.line_number,
                item=plan.line.item,
                status=status,
                quantity=Decimal(0) if status is LineStatus.REJECTED else plan.line.quantity,
                unit=plan.line.unit,
                unit_price=plan.price,
                ship_date=order.order_date
                + timedelta(
                    days=faults.backorder_days
                    if status is LineStatus.BACKORDERED
                    else faults.lead_days
                ),
                substitute=plan.item if status is LineStatus.SUBSTITUTED else None,
            )
        )
    statuses = {line.status for line in lines}
    overall = (
        AckStatus.ACCEPTED
        if statuses == {LineStatus.ACCEPTED}
        else AckStatus.REJECTED
        if statuses == {LineStatus.REJECTED}
        else AckStatus.ACCEPTED_WITH_CHANGES
    )
    return AcknowledgementDocument(
        acknowledgement_id=f"ACK-{order.order_number}"[:35],
        order_number=order.order_number,
        acknowledged_on=order.order_date,
        status=overall,
        currency=order.currency,
        lines=tuple(lines),
    )


def sscc(serial: int, company_prefix: str = "0614141") -> str:
    """An SSCC-18 (extension digit 0) with its GS1 mod-10 check digit."""
    body = (
        f"0{company_prefix}{serial % 10 ** (16 - len(company_prefix)):0{16 - len(company_prefix)}d}"
    )
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def _shipment(
    order: OrderDocument,
    plans: list[_Plan],
    faults: Faults,
    number: int,
    rng: random.Random,
) -> tuple[ShipNoticeDocument, InvoiceDocument] | None:
    take = [(p, p.now if number == 1 else p.later) for p in plans]
    take = [(p, q) for p, q in take if q > 0]
    if not take:
        return None
    shipped_on = order.order_date + timedelta(
        days=faults.lead_days if number == 1 else faults.backorder_days
    )
    expiry = shipped_on + timedelta(days=faults.shelf_life_days)
    ship_lines = tuple(
        ShipLine(
            line_number=p.line.line_number,
            item=p.item,
            quantity=q,
            unit=p.line.unit,
            lot=f"L{order.order_number}-{p.line.line_number}"[-35:],
            expiry=expiry,
        )
        for p, q in take
    )
    supplier = next((p for p in order.parties if p.role is PartyRole.SUPPLIER), None)
    buyer = next((p for p in order.parties if p.role is PartyRole.BUYER), None)
    notice = ShipNoticeDocument(
        shipment_id=f"SH-{order.order_number}-{number}"[-35:],
        shipped_on=shipped_on,
        expected_delivery=shipped_on + timedelta(days=1),
        carrier="SIMC",
        tracking_number=f"1Z{rng.randrange(10**12):012d}",
        orders=(
            ShippedOrder(
                order_number=order.order_number,
                packs=(Pack(sscc=sscc(rng.randrange(10**9)), lines=ship_lines),),
            ),
        ),
    )
    lines = tuple(
        InvoiceLine(
            line_number=n,
            item=p.item,
            quantity=q + (1 if p.fault is Fault.OVER_INVOICE else 0),
            unit=p.line.unit,
            unit_price=p.price,
            order_number=order.order_number,
            order_line=p.line.line_number,
        )
        for n, (p, q) in enumerate(take, start=1)
    )
    total = sum((line.quantity * line.unit_price for line in lines), Decimal(0))
    parties: tuple[Party, ...] = tuple(p for p in (supplier, buyer) if p is not None)
    invoice = InvoiceDocument(
        invoice_number=f"INV-{order.order_number}-{number}"[-35:],
        invoice_date=shipped_on,
        currency=order.currency,
        parties=parties,
        lines=lines,
        total=total.quantize(CENT, rounding=ROUND_HALF_UP),
    )
    return notice, invoice


def answer(order: OrderDocument, faults: Faults) -> list[TradeDocument]:
    """The supplier's documents for ``order``, in the order it sends them."""
    rng = random.Random(f"{faults.seed}:{order.order_number}")  # noqa: S311 (a simulation)
    plans = _plan(order, faults, rng)
    documents: list[TradeDocument] = [_acknowledgement(order, plans, faults)]
    for number in (1, 2):
        shipped = _shipment(order, plans, faults, number, rng)
        if shipped is None:
            continue
        notice, invoice = shipped
        documents += [notice, invoice]
        if faults.force_duplicate_invoice or rng.random() < faults.duplicate_invoice:
            documents.append(invoice)
    return documents
