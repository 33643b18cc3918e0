"""The ERP cutovers (``erp_routes``): from a stated moment, a domain's documents of one
facility (or of every one, ``*``) go to another system of record. Append-only: a rollback
is one more cutover, back; every cutover is audited in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

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


def cutovers(conn: Connection) -> list[Cutover]:
    return [row.cutover for row in history(conn)]


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
