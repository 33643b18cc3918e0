"""Replenishment and procure-to-pay records: policies per item x location, proposed lines,
purchase orders, goods receipts and invoice matches (the state the durable workflows read and
write in their steps; every write is keyed so that a repeated step changes nothing)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from medbridge.store import audit
from medbridge.store.tables import (
    goods_receipts,
    invoice_matches,
    ledger_movements,
    purchase_orders,
    replenishment_lines,
    replenishment_policies,
    stock_lots,
)
from medbridge.store.trade import next_control_number

USAGE_KINDS = ("dispense", "clinical_consumption", "wastage")
ON_ORDER = ("open", "ordered")


def _now() -> datetime:
    return datetime.now(UTC)


# --- policies and positions ----------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    item: str
    location: str
    par_level: Decimal
    reorder_point: Decimal | None
    safety_stock: Decimal | None


def save_policies(conn: Connection, policies: Sequence[Policy], *, actor: str) -> None:
    """Par levels (and reorder points) per item@location; each change audited as ``actor``'s."""
    for p in policies:
        audit.upsert_audited(
            conn,
            replenishment_policies,
            dict(p.__dict__),
            ("item", "location"),
            actor=actor,
            action="masterdata.replenishment_policy.save",
            target_type="replenishment_policy",
        )


def policies(conn: Connection) -> list[Policy]:
    t = replenishment_policies
    return [
        Policy(r.item, r.location, r.par_level, r.reorder_point, r.safety_stock)
        for r in conn.execute(select(t).order_by(t.c.item, t.c.location))
    ]


def on_hand(conn: Connection) -> dict[tuple[str, str], Decimal]:
    t = stock_lots
    return {
        (r.item, r.location): Decimal(r.total)
        for r in conn.execute(
            select(t.c.item, t.c.location, func.sum(t.c.quantity).label("total")).group_by(
                t.c.item, t.c.location
            )
        )
    }


def on_order(conn: Connection) -> dict[tuple[str, str], Decimal]:
    """Base units proposed or ordered and not yet received, per item x location."""
    t = replenishment_lines
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in conn.execute(
        select(t.c.item, t.c.location, t.c.quantity, t.c.pack_factor).where(
            t.c.status.in_(ON_ORDER)
        )
    ):
        totals[(r.item, r.location)] += r.quantity * r.pack_factor
    return dict(totals)


@dataclass(frozen=True)
class Usage:
    daily: dict[tuple[str, str], tuple[Decimal, ...]]
    """Base units used per day over the window, oldest first, per item x location."""
    last: dict[tuple[str, str], tuple[str, str]]
    """The last usage event applied: (event id, correlation id), per item x location."""


def usage(conn: Connection, now: datetime, days: int) -> Usage:
    t = ledger_movements
    since = now - timedelta(days=days)
    per_day: dict[tuple[str, str], dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    last: dict[tuple[str, str], tuple[str, str]] = {}
    rows = conn.execute(
        select(t.c.event_id, t.c.item, t.c.location, t.c.quantity, t.c.correlation_id)
        .add_columns(t.c.occurred_at)
        .where(t.c.kind.in_(USAGE_KINDS), t.c.occurred_at >= since)
        .order_by(t.c.applied_at, t.c.event_id)
    )
    for r in rows:
        key = (r.item, r.location)
        per_day[key][min(max((now - r.occurred_at).days, 0), days - 1)] += abs(r.quantity)
        last[key] = (r.event_id, r.correlation_id)
    daily = {
        key: tuple(days_used.get(d, Decimal(0)) for d in range(days - 1, -1, -1))
        for key, days_used in per_day.items()
    }
    return Usage(daily, last)


# --- proposed lines ------------------------------------------------------------------------


def propose(conn: Connection, line: dict[str, Any]) -> bool:
    """Record a proposed line once per trigger (numbered ``#1``, ``#2`` ...: a trigger whose
    lines were all cancelled, e.g. refused by the supplier, may propose again); False if a
    line of that trigger is still open, ordered or received."""
    t = replenishment_lines
    trigger = line["trigger"][:110]
    earlier = list(
        conn.execute(select(t.c.status).where(t.c.trigger.like(f"{trigger}#%"))).scalars()
    )
    if any(status != "cancelled" for status in earlier):
        return False
    numbered = f"{trigger}#{len(earlier) + 1}"
    conn.execute(
        insert(t).values(**line | {"trigger": numbered}, status="open", order_reference=None)
    )
    return True


def unreleased(conn: Connection) -> list[dict[str, Any]]:
    t = replenishment_lines
    return [
        dict(r._mapping)
        for r in conn.execute(
            select(t).where(t.c.status == "open", t.c.order_reference.is_(None)).order_by(t.c.id)
        )
    ]


def set_lines(conn: Connection, order: str, status: str, items: Iterable[str] | None = None) -> int:
    """Set the status of the order's lines (of ``items`` only, if given)."""
    t = replenishment_lines
    stmt = update(t).where(t.c.order_reference == order, t.c.status.in_(ON_ORDER))
    if items is not None:
        stmt = stmt.where(t.c.item.in_(sorted(set(items))))
    return conn.execute(stmt.values(status=status)).rowcount


# --- purchase orders -----------------------------------------------------------------------


def create_order(
    conn: Connection,
    *,
    supplier: str,
    facility: str,
    urgency: str,
    lines: list[dict[str, Any]],
    correlation_id: str,
    line_ids: Sequence[int],
) -> str:
    """A new purchase order (its number from our own counter) claiming ``line_ids``."""
    number = next_control_number(conn, "MEDBRIDGE", "po")
    reference = f"PO{number:08d}"
    now = _now()
    conn.execute(
        insert(purchase_orders).values(
            reference=reference,
            supplier=supplier,
            facility=facility,
            urgency=urgency,
            lines=lines,
            correlation_id=correlation_id,
            status="released",
            erp_id=None,
            workflow_started=0,
            note=None,
            created_at=now,
            updated_at=now,
        )
    )
    t = replenishment_lines
    conn.execute(
        update(t)
        .where(t.c.id.in_(list(line_ids)))
        .values(order_reference=reference, status="ordered")
    )
    return reference


def order(conn: Connection, reference: str) -> dict[str, Any] | None:
    row = conn.execute(select(purchase_orders).where(purchase_orders.c.reference == reference))
    found = row.first()
    return dict(found._mapping) if found else None


def set_order(conn: Connection, reference: str, **values: Any) -> None:
    conn.execute(
        update(purchase_orders)
        .where(purchase_orders.c.reference == reference)
        .values(**values, updated_at=_now())
    )


def orders(
    conn: Connection,
    *,
    not_started: bool = False,
    facilities: frozenset[str] | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Purchase orders, newest first; ``facilities``: only those of these facilities."""
    t = purchase_orders
    stmt = select(t).order_by(t.c.created_at.desc(), t.c.reference.desc()).limit(limit)
    if not_started:
        stmt = select(t).where(t.c.workflow_started == 0).order_by(t.c.reference).limit(limit)
    if facilities is not None:
        stmt = stmt.where(t.c.facility.in_(facilities))
    return [dict(r._mapping) for r in conn.execute(stmt)]


# --- goods receipts ------------------------------------------------------------------------


def receipt(conn: Connection, reference: str) -> dict[str, Any] | None:
    found = conn.execute(select(goods_receipts).where(goods_receipts.c.reference == reference))
    row = found.first()
    return dict(row._mapping) if row else None


def notice(conn: Connection, **values: Any) -> bool:
    """Record a shipment announced for an order (status ``noticed``), once."""
    if receipt(conn, values["reference"]) is not None:
        return False
    conn.execute(
        insert(goods_receipts).values(
            **values, status="noticed", received_by="", erp_id=None, received_at=_now()
        )
    )
    return True


def settle_receipt(conn: Connection, reference: str, **values: Any) -> None:
    """A noticed shipment received (or rejected): its lines as counted, who did it."""
    conn.execute(
        update(goods_receipts)
        .where(goods_receipts.c.reference == reference)
        .values(**values, received_at=_now())
    )


def count_notice(conn: Connection, reference: str) -> None:
    """A ship notice whose goods the dock received by scan, under a receipt of their own:
    ``counted``, no longer awaited (an invoice does not wait for it). Only while noticed."""
    t = goods_receipts
    conn.execute(
        update(t)
        .where(t.c.reference == reference, t.c.status == "noticed")
        .values(status="counted")
    )


def receipts(conn: Connection, order_reference: str) -> list[dict[str, Any]]:
    t = goods_receipts
    return [
        dict(r._mapping)
        for r in conn.execute(
            select(t).where(t.c.order_reference == order_reference).order_by(t.c.received_at)
        )
    ]


# --- invoice matches -----------------------------------------------------------------------


def invoice(conn: Connection, reference: str) -> dict[str, Any] | None:
    found = conn.execute(select(invoice_matches).where(invoice_matches.c.reference == reference))
    row = found.first()
    return dict(row._mapping) if row else None


def record_invoice(conn: Connection, **values: Any) -> None:
    now = _now()
    conn.execute(insert(invoice_matches).values(**values, created_at=now, updated_at=now))


def set_invoice(conn: Connection, reference: str, **values: Any) -> None:
    conn.execute(
        update(invoice_matches)
        .where(invoice_matches.c.reference == reference)
        .values(**values, updated_at=_now())
    )


SETTLED = ("matched", "posted", "credit_requested")
"""Invoice statuses that count as billed: their lines are invoiced, their numbers seen."""


def billed(conn: Connection, supplier: str) -> list[dict[str, Any]]:
    """The supplier's invoices already accepted (matched, posted, or posted with a credit
    requested): the history a new invoice is matched against."""
    t = invoice_matches
    return [
        dict(r._mapping)
        for r in conn.execute(
            select(t)
            .where(t.c.supplier == supplier, t.c.status.in_(SETTLED))
            .order_by(t.c.created_at)
        )
    ]


def invoices(
    conn: Connection, *, facilities: frozenset[str] | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Supplier invoices, newest first; ``facilities``: only those billing an order of these
    facilities (an invoice naming no order of ours is of no facility)."""
    t, po = invoice_matches, purchase_orders
    stmt = select(t).order_by(t.c.created_at.desc()).limit(limit)
    if facilities is not None:
        stmt = stmt.where(
            t.c.order_reference.in_(select(po.c.reference).where(po.c.facility.in_(facilities)))
        )
    return [dict(r._mapping) for r in conn.execute(stmt)]
