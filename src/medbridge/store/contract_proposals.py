"""The price changes partners' catalogs proposed (``contract_price_proposals``): record, find,
settle. Every call runs in the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from medbridge.store.tables import contract_price_proposals as t
from medbridge.store.tables import trade_documents, work_items


def record(conn: Connection, row: dict[str, Any]) -> int:
    """Insert one proposal; its id."""
    values = {"created_at": datetime.now(UTC)} | row
    result = conn.execute(insert(t).values(**values).returning(t.c.id))
    return int(result.scalar_one())


def exists(conn: Connection, catalog_key: str) -> bool:
    """Any proposal of this catalog recorded already."""
    found = conn.execute(select(t.c.id).where(t.c.catalog_key == catalog_key).limit(1))
    return found.first() is not None


def units_of(conn: Connection, catalog_key: str, line: int) -> set[str]:
    """The units a catalog's line has proposals in already."""
    rows = conn.execute(select(t.c.unit).where(t.c.catalog_key == catalog_key, t.c.line == line))
    return set(rows.scalars())


def remove(conn: Connection, proposal_id: int) -> None:
    conn.execute(delete(t).where(t.c.id == proposal_id))


def catalog_document(conn: Connection, catalog_key: str) -> dict[str, Any] | None:
    """The received catalog as stored in the trade document log (canonical JSON)."""
    found = conn.execute(
        select(trade_documents.c.document).where(
            trade_documents.c.idempotency_key == catalog_key, trade_documents.c.kind == "catalog"
        )
    ).scalar_one_or_none()
    return None if found is None else dict(found)


def pending_for(conn: Connection, contract: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(t).where(t.c.contract == contract, t.c.status == "pending").order_by(t.c.id)
    )
    return [dict(r._mapping) for r in rows]


def get(conn: Connection, proposal_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(t).where(t.c.id == proposal_id)).first()
    return None if row is None else dict(row._mapping)


def by_task(conn: Connection, task_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(t).where(t.c.task_id == task_id)).first()
    return None if row is None else dict(row._mapping)


def link_task(conn: Connection, proposal_id: int, task_id: int) -> None:
    conn.execute(update(t).where(t.c.id == proposal_id).values(task_id=task_id))


def settle(
    conn: Connection,
    proposal_id: int,
    status: str,
    *,
    decided_by: str | None,
    reason: str | None = None,
    price: Decimal | None = None,
) -> bool:
    """Move a pending proposal to ``status``; False if it was no longer pending (settled by
    someone else first, or superseded)."""
    values: dict[str, Any] = {
        "status": status,
        "decided_at": datetime.now(UTC),
        "decided_by": decided_by,
    }
    if reason is not None:
        values["reason"] = reason
    if price is not None:
        values["proposed_price"] = price
    done = conn.execute(
        update(t).where(t.c.id == proposal_id, t.c.status == "pending").values(**values)
    )
    return done.rowcount == 1


def decided_pending(conn: Connection) -> list[int]:
    """Task ids of pending proposals whose task is decided (a decision whose effect was not
    applied: the process that decided stopped before applying it)."""
    rows = conn.execute(
        select(t.c.task_id)
        .join(work_items, work_items.c.id == t.c.task_id)
        .where(t.c.status == "pending", work_items.c.status == "decided")
    )
    return [int(r) for r in rows.scalars()]


def listing(
    conn: Connection,
    *,
    status: str | None = None,
    partner: str | None = None,
    contract: str | None = None,
    item: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    query = select(t).order_by(t.c.id.desc()).limit(limit)
    for column, value in (
        (t.c.status, status),
        (t.c.partner, partner),
        (t.c.contract, contract),
        (t.c.item, item),
    ):
        if value is not None:
            query = query.where(column == value)
    return [as_json(dict(r._mapping)) for r in conn.execute(query)]


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Decimal):
            out[key] = str(value)
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out
