"""The alert states (one row per rule): read them, move one by compare-and-set, and record
that a state's notice went out. See ``domain.alerts`` for the rules themselves."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from medbridge.domain.alerts import State
from medbridge.store.tables import alert_states as t


@dataclass(frozen=True)
class AlertState:
    rule: str
    state: State
    incident: int
    reading: Decimal
    since: datetime
    notified: bool


def ensure(conn: Connection, rules: Iterable[str], now: datetime) -> None:
    """A row (``ok``, no incident yet) for every rule that has none."""
    rows = [
        {
            "rule": r,
            "state": State.OK.value,
            "incident": 0,
            "reading": "0",
            "since": now,
            "notified": 1,
        }
        for r in rules
    ]
    if rows:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(t).on_conflict_do_nothing(index_elements=["rule"]), rows)


def states(conn: Connection) -> dict[str, AlertState]:
    return {
        r.rule: AlertState(
            r.rule, State(r.state), r.incident, Decimal(r.reading), r.since, bool(r.notified)
        )
        for r in conn.execute(select(t))
    }


def move(
    conn: Connection, rule: str, old: AlertState, new: State, reading: Decimal, now: datetime
) -> int | None:
    """Move ``rule`` from ``old`` to ``new`` if nobody moved it meanwhile; the incident the
    new state belongs to (a firing opens the next one), or None when another process won."""
    incident = old.incident + 1 if new is State.FIRING else old.incident
    moved = conn.execute(
        update(t)
        .where(t.c.rule == rule, t.c.state == old.state.value, t.c.incident == old.incident)
        .values(state=new.value, incident=incident, reading=str(reading), since=now, notified=0)
    )
    return incident if moved.rowcount == 1 else None


def mark_notified(conn: Connection, rule: str, state: State, incident: int) -> None:
    conn.execute(
        update(t)
        .where(t.c.rule == rule, t.c.state == state.value, t.c.incident == incident)
        .values(notified=1)
    )
