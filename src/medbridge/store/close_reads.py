"""What a period close reads from the journal and the procure-to-pay documents: the GRNI
lines as of a cut-off and the purchase price variance lines of a period, each with the
purchase order (and so the supplier) behind it.

A journal entry belongs to a purchase order by its correlation (a receipt's entry carries
the order's), or, for the entries of a supplier invoice (``ap:``, ``ppv:``, ids derived from
the invoice's wire identity: ``flows.invoice_booking``), through the invoice's order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, or_, select

from medbridge.canonical.masterdata import AccountRole
from medbridge.store.sql import chunks
from medbridge.store.tables import (
    account_assignments,
    invoice_matches,
    journal_entries,
    journal_lines,
    ledger_movements,
    purchase_orders,
)


@dataclass(frozen=True)
class Order:
    reference: str
    supplier: str
    facility: str
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class Invoice:
    reference: str
    supplier: str
    order: str | None
    lines: list[dict[str, Any]]  # the match's lines: order, order_line, amount, grni


@dataclass(frozen=True)
class RoleLine:
    """A journal line on an account of one role, with where it belongs."""

    entry_id: str
    posting_date: date
    facility: str
    account: str
    net: Decimal  # debit - credit
    order: Order | None
    invoice: Invoice | None


def role_accounts(conn: Connection, role: AccountRole) -> dict[str, str]:
    """facility -> its account of ``role``."""
    t = account_assignments
    rows = conn.execute(select(t.c.facility, t.c.account).where(t.c.role == role.value))
    return {r.facility: r.account for r in rows}


def invoice_key(entry_id: str) -> str | None:
    """The uuid an invoice's entry id carries (``ap:<uuid>``, ``ppv:<uuid>``), else None."""
    for prefix in ("ap:", "ppv:"):
        if entry_id.startswith(prefix):
            return entry_id[len(prefix) :]
    return None


def _invoices(conn: Connection) -> dict[str, Invoice]:
    """Every matched invoice, by the uuid its entries carry."""
    t = invoice_matches
    found = {}
    for r in conn.execute(select(t.c.reference, t.c.supplier, t.c.order_reference, t.c.result)):
        lines = list((r.result or {}).get("lines") or [])
        ident = str(uuid.uuid5(uuid.NAMESPACE_URL, r.reference))
        found[ident] = Invoice(r.reference, r.supplier, r.order_reference, lines)
    return found


def _orders(conn: Connection, *, references: Sequence[str], correlations: Sequence[str]) -> Any:
    t = purchase_orders
    by_reference: dict[str, Order] = {}
    by_correlation: dict[str, Order] = {}
    for column, keys in ((t.c.reference, references), (t.c.correlation_id, correlations)):
        for chunk in chunks(sorted(set(keys))):
            for r in conn.execute(
                select(
                    t.c.reference, t.c.supplier, t.c.facility, t.c.lines, t.c.correlation_id
                ).where(column.in_(chunk))
            ):
                order = Order(r.reference, r.supplier, r.facility, list(r.lines or []))
                by_reference[r.reference] = order
                by_correlation[r.correlation_id] = order
    return by_reference, by_correlation


def role_lines(
    conn: Connection,
    role: AccountRole,
    *,
    period: str | None = None,
    through: date | None = None,
    before: datetime | None = None,
) -> list[RoleLine]:
    """The journal lines on the accounts of ``role``: of entries of ``period``, or dated up to
    ``through`` whose event (when a stock movement's) happened before ``before``."""
    accounts = sorted(set(role_accounts(conn, role).values()))
    if not accounts:
        return []
    e, ln, m = journal_entries, journal_lines, ledger_movements
    conditions: list[Any] = [ln.c.account.in_(accounts)]
    if period is not None:
        conditions.append(e.c.period == period)
    if through is not None:
        conditions.append(e.c.posting_date <= through)
    if before is not None:
        conditions.append(or_(m.c.occurred_at.is_(None), m.c.occurred_at < before))
    rows = conn.execute(
        select(
            e.c.entry_id,
            e.c.correlation_id,
            e.c.posting_date,
            ln.c.facility,
            ln.c.account,
            ln.c.debit,
            ln.c.credit,
        )
        .join(e, e.c.entry_id == ln.c.entry_id)
        .outerjoin(m, m.c.event_id == e.c.source_event_id)
        .where(*conditions)
        .order_by(e.c.posting_date, e.c.entry_id, ln.c.line_no)
    ).all()
    invoices = _invoices(conn) if any(invoice_key(r.entry_id) for r in rows) else {}
    of_entry = {r.entry_id: invoices.get(invoice_key(r.entry_id) or "") for r in rows}
    by_reference, by_correlation = _orders(
        conn,
        references=[i.order for i in of_entry.values() if i is not None and i.order],
        correlations=[r.correlation_id for r in rows],
    )
    found = []
    for r in rows:
        invoice = of_entry[r.entry_id]
        order = (
            by_reference.get(invoice.order or "")
            if invoice is not None
            else by_correlation.get(r.correlation_id)
        )
        found.append(
            RoleLine(
                r.entry_id,
                r.posting_date,
                r.facility,
                r.account,
                r.debit - r.credit,
                order,
                invoice,
            )
        )
    return found
