"""The chain of one business transaction: everything recorded under a correlation id, in the
order it happened: events on the log (movements, documents received), documents exchanged
with trading partners, journal entries and their ERP postings.

Read straight from the tables every step writes (each carries the correlation id), so the
trace needs no projection of its own and cannot drift from what was recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from medbridge.store.tables import (
    bus_events,
    erp_postings,
    gl_summary_entries,
    goods_receipts,
    invoice_matches,
    journal_entries,
    purchase_orders,
    trade_documents,
    work_items,
)


@dataclass(frozen=True)
class TraceStep:
    at: datetime
    kind: str
    """``event``, ``purchase_order``, ``document_sent``, ``document_received``,
    ``goods_receipt``, ``invoice_match``, ``work_item``, ``journal_entry``, ``erp_posting``."""
    ref: str
    """What identifies the step: event type and id, partner and document number, entry id."""
    detail: dict[str, Any]


def trace(conn: Connection, correlation_id: str, *, limit: int = 1000) -> list[TraceStep]:
    steps: list[TraceStep] = []
    for e in conn.execute(
        select(bus_events)
        .where(bus_events.c.correlation_id == correlation_id)
        .order_by(bus_events.c.seq)
        .limit(limit)
    ):
        data = json.loads(e.payload).get("data", {})
        steps.append(
            TraceStep(
                e.appended_at,
                "event",
                f"{e.type} {e.id}",
                {"subject": e.subject, "source": e.source, "idempotency_key": e.idempotency_key}
                | ({"kind": data["kind"]} if "kind" in data else {}),
            )
        )
    d = trade_documents
    for row in conn.execute(
        select(d).where(d.c.correlation_id == correlation_id).order_by(d.c.id).limit(limit)
    ):
        direction = "document_sent" if row.direction == "out" else "document_received"
        steps.append(
            TraceStep(
                row.recorded_at,
                direction,
                f"{row.partner} {row.kind} {row.number}",
                {"wire_format": row.wire_format, "idempotency_key": row.idempotency_key},
            )
        )
    j, p, g = journal_entries, erp_postings, gl_summary_entries
    seen: set[str] = set()
    for row in conn.execute(
        select(
            j,
            p.c.status,
            p.c.erp_id,
            p.c.posted_at,
            p.c.destination,
            p.c.role,
            g.c.summary_id,
        )
        .select_from(
            j.outerjoin(p, p.c.document == j.c.entry_id).outerjoin(
                g, and_(g.c.entry_id == j.c.entry_id, g.c.destination == p.c.destination)
            )
        )
        .where(j.c.correlation_id == correlation_id)
        .order_by(j.c.created_at, p.c.role, p.c.destination)
        .limit(limit)
    ):
        if row.entry_id not in seen:
            seen.add(row.entry_id)
            steps.append(
                TraceStep(
                    row.created_at,
                    "journal_entry",
                    row.entry_id,
                    {
                        "description": row.description,
                        "period": row.period,
                        "booked_by": row.booked_by,
                        "erp_document": row.erp_document,
                    },
                )
            )
        if row.status is not None:
            steps.append(
                TraceStep(
                    row.posted_at or row.created_at,
                    "erp_posting",
                    row.entry_id,
                    # summarised: posted within this summary's move (its drill-down)
                    {
                        "status": row.status,
                        "erp_id": row.erp_id,
                        "summary_id": row.summary_id,
                        "destination": row.destination,
                        "role": row.role,
                    },
                )
            )
    steps.extend(_procurement(conn, correlation_id, limit))
    steps.sort(key=lambda s: s.at)
    return steps[:limit]


def _procurement(conn: Connection, correlation_id: str, limit: int) -> list[TraceStep]:
    """The purchase orders, receipts, invoice matches and human tasks of the chain."""
    steps = []
    o, r, m, w = purchase_orders, goods_receipts, invoice_matches, work_items
    for row in conn.execute(select(o).where(o.c.correlation_id == correlation_id).limit(limit)):
        steps.append(
            TraceStep(
                row.created_at,
                "purchase_order",
                f"{row.reference} {row.supplier}",
                {
                    "status": row.status,
                    "erp_id": row.erp_id,
                    "urgency": row.urgency,
                    "lines": row.lines,
                    "note": row.note,
                },
            )
        )
    for row in conn.execute(select(r).where(r.c.correlation_id == correlation_id).limit(limit)):
        steps.append(
            TraceStep(
                row.received_at,
                "goods_receipt",
                row.reference,
                {
                    "status": row.status,
                    "erp_id": row.erp_id,
                    "received_by": row.received_by,
                    "lines": row.lines,
                },
            )
        )
    for row in conn.execute(select(m).where(m.c.correlation_id == correlation_id).limit(limit)):
        steps.append(
            TraceStep(
                row.created_at,
                "invoice_match",
                f"{row.supplier} {row.number}",
                {
                    "status": row.status,
                    "erp_id": row.erp_id,
                    "total": str(row.total),
                    "exceptions": row.result.get("exceptions", []),
                },
            )
        )
    for row in conn.execute(select(w).where(w.c.correlation_id == correlation_id).limit(limit)):
        steps.append(
            TraceStep(
                row.created_at,
                "work_item",
                f"{row.queue} {row.kind} {row.id}",
                {
                    "status": row.status,
                    "reason": row.reason,
                    "decision": row.decision,
                    "decided_by": row.decided_by,
                },
            )
        )
    return steps
