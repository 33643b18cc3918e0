"""The dashboard: what a night-shift integration analyst looks at first. The figures are
``observability.kpis.Dashboard``'s (the same as ``GET /v1/dashboard``), for the viewer's
facilities; what every facility shares (the consumers, their dead letters, the alerts) only
for a client bound to none."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from medbridge.console.rendering import render
from medbridge.console.session import backend, needs
from medbridge.governance.permissions import Permission, Principal
from medbridge.observability.kpis import Dashboard
from medbridge.store import alerts as alert_store
from medbridge.store import messages as message_store

router = APIRouter()
Reader = Annotated[Principal, Depends(needs(Permission.DASHBOARD_READ))]


CHART_MINUTES = 60


def message_charts(
    conn: Connection, now: datetime, facilities: frozenset[str] | None
) -> list[dict[str, Any]]:
    """Per protocol, the messages of each minute of the last hour by status, as uPlot reads
    them (``console.js``): x in epoch seconds, one series per status, minutes without a
    message at 0."""
    end = now.replace(second=0, microsecond=0)
    minutes = [end - timedelta(minutes=n) for n in range(CHART_MINUTES - 1, -1, -1)]
    slot = {minute: n for n, minute in enumerate(minutes)}
    counts: dict[str, dict[str, list[int]]] = {}
    for c in message_store.per_minute(conn, minutes[0], facilities):
        if c.minute in slot:
            series = counts.setdefault(c.protocol, {}).setdefault(c.status, [0] * len(minutes))
            series[slot[c.minute]] += c.count
    xs = [int(minute.timestamp()) for minute in minutes]
    return [
        {
            "id": f"chart-{protocol}",
            "title": protocol,
            "spec": {
                "series": sorted(by_status),
                "data": [xs, *(by_status[status] for status in sorted(by_status))],
                "unit": "messages / minute",
            },
        }
        for protocol, by_status in sorted(counts.items())
    ]


@router.get("/", response_class=HTMLResponse, name="dashboard")
def dashboard(request: Request, viewer: Reader) -> HTMLResponse:
    b = backend(request)
    snapshot = Dashboard(b.engine, b.bus, list(b.consumers)).snapshot(
        viewer.facilities, shared=viewer.facilities is None
    )
    context: dict[str, Any] = {"snapshot": snapshot, "dead_letters": None, "alerts": None}
    context["charts"] = None
    if viewer.may(Permission.MESSAGES_READ):
        with b.engine.connect() as conn:
            context["charts"] = message_charts(conn, snapshot.at, viewer.facilities)
    if viewer.may(Permission.OPERATIONS_READ) and not viewer.scoped:
        context["dead_letters"] = {g: b.bus.dead_letter_count(g) for g in b.consumers}
        with b.engine.connect() as conn:
            context["alerts"] = sorted(alert_store.states(conn).values(), key=lambda s: s.rule)
    return render(request, "dashboard.html", context)
