"""The ERP cutovers (``erp_routes``): from a stated moment, a domain's documents of one
facility (or of every one, ``*``) go to another system of record. Append-only: a rollback
is one more cutover, back; every cutover is audited in the same transaction.

A transaction that queues documents reads the cutovers with ``for_queueing`` and one that
makes a cutover starts with ``lock_for_cutover``: on PostgreSQL the first holds the table in
SHARE mode and the second in EXCLUSIVE mode, so a cutover waits for every transaction that
routed by the table before it, and each of those waits for the cutover to commit (on SQLite,
writing transactions are serialized already: ``BEGIN IMMEDIATE``). A cutover's moment, taken
once its lock is held, is thus never before a document routed without it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text

from medbridge.domain.erp_routing import Cutover, ErpDomain, Route
from medbridge.store import audit
from medbridge.store.tables import erp_routes


@dataclass(frozen=True)
class CutoverRow:
    id: int
    cutover: Cutover
    created_at: datetime
    actor: str
    reason: str | None


def _row(r: Any) -> CutoverRow:
    shadows = tuple(s for s in r.shadows.split(",") if s)
    cutover = Cutover(ErpDomain(r.domain), r.facility, Route(r.record, shadows), r.effective_at)
    return CutoverRow(r.id, cutover, r.created_at, r.actor, r.reason)


def history(conn: Connection, domain: ErpDomain | None = None) -> list[CutoverRow]:
    """Every cutover (of ``domain``), in effective order."""
    t = erp_routes
    stmt = select(t).order_by(t.c.effective_at, t.c.id)
    if domain is not None:
        stmt = stmt.where(t.c.domain == domain.value)
    return [_row(r) for r in conn.execute(stmt)]


def cutovers(conn: Connection, *, for_queueing: bool = False) -> list[Cutover]:
    """Every cutover; ``for_queueing``: in a transaction that routes documents by them (no
    cutover commits before it does)."""
    if for_queueing and conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE erp_routes IN SHARE MODE"))
    return [row.cutover for row in history(conn)]


def lock_for_cutover(conn: Connection) -> None:
    """The first statement of a transaction that makes a cutover: it waits for every
    transaction routing documents by the cutovers to commit, and they wait for it."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE erp_routes IN EXCLUSIVE MODE"))


def record(
    conn: Connection,
    cutover: Cutover,
    *,
    now: datetime,
    actor: str,
    reason: str | None = None,
    before: Route | None = None,
) -> int:
    """Append a cutover, audited as ``erp.cutover`` by ``actor`` (``before``: the route it
    replaces, for the audit's detail)."""
    t = erp_routes
    values = {
        "domain": cutover.domain.value,
        "facility": cutover.facility,
        "record": cutover.route.record,
        "shadows": ",".join(cutover.route.shadows),
        "effective_at": cutover.effective_at,
        "created_at": now,
        "actor": actor,
        "reason": reason,
    }
    new_id = int(conn.execute(insert(t).values(**values).returning(t.c.id)).scalar_one())
    audit.append(
        conn,
        actor=actor,
        action="erp.cutover",
        target_type="erp_route",
        target_id=f"{cutover.domain.value}:{cutover.facility}",
        after=audit.row_state(conn, t, id=new_id),
        detail={
            "domain": cutover.domain.value,
            "facility": cutover.facility,
            "from": before.record if before else None,
            "from_shadows": list(before.shadows) if before else [],
            "to": cutover.route.record,
            "shadows": list(cutover.route.shadows),
            "effective_at": cutover.effective_at.isoformat(),
            "reason": reason,
        },
    )
    return new_id
