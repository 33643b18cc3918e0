"""The ERP circuit breaker's state, recorded by the posting worker on every change
(``flows.erp_posting``) so that another process (the API's dashboard, the alert monitor of
another worker) can read it: the breaker itself lives in the worker's memory.

``unhealthy_since`` is when the circuit last left ``closed``: during an outage the breaker
goes open -> half-open (a trial) -> open again every cool-down, and an outage is the whole
time it is not closed. With several workers each has its own breaker; the row holds the last
change any of them recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from medbridge.store.sql import upsert
from medbridge.store.tables import erp_circuits as t

CLOSED = "closed"


@dataclass(frozen=True)
class CircuitRecord:
    erp: str
    state: str  # closed | open | half_open
    changed_at: datetime
    unhealthy_since: datetime | None


def record(conn: Connection, erp: str, state: str, now: datetime) -> None:
    """The circuit of ``erp`` is in ``state`` from ``now`` (kept as is when it already was)."""
    current = circuits(conn).get(erp)
    if current is not None and current.state == state:
        return
    if state == CLOSED:
        unhealthy_since = None
    elif current is not None and current.unhealthy_since is not None:
        unhealthy_since = current.unhealthy_since
    else:
        unhealthy_since = now
    values = {"state": state, "changed_at": now, "unhealthy_since": unhealthy_since}
    if current is None:
        upsert(conn, t, [{"erp": erp, **values}], ("erp",))
    else:
        conn.execute(update(t).where(t.c.erp == erp).values(**values))


def circuits(conn: Connection) -> dict[str, CircuitRecord]:
    return {
        r.erp: CircuitRecord(r.erp, r.state, r.changed_at, r.unhealthy_since)
        for r in conn.execute(select(t))
    }
