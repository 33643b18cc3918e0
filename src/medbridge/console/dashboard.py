"""The dashboard: what a night-shift integration analyst looks at first. The figures are
``observability.kpis.Dashboard``'s (the same as ``GET /v1/dashboard``), for the viewer's
facilities; what every facility shares (the consumers, their dead letters, the alerts) only
for a client bound to none."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from medbridge.console.rendering import render
from medbridge.console.session import backend, needs
from medbridge.governance.permissions import Permission, Principal
from medbridge.observability.kpis import Dashboard
from medbridge.store import alerts as alert_store

router = APIRouter()
Reader = Annotated[Principal, Depends(needs(Permission.DASHBOARD_READ))]


@router.get("/", response_class=HTMLResponse, name="dashboard")
def dashboard(request: Request, viewer: Reader) -> HTMLResponse:
    b = backend(request)
    snapshot = Dashboard(b.engine, b.bus, list(b.consumers)).snapshot(
        viewer.facilities, shared=viewer.facilities is None
    )
    context: dict[str, Any] = {"snapshot": snapshot, "dead_letters": None, "alerts": None}
    if viewer.may(Permission.OPERATIONS_READ) and not viewer.scoped:
        context["dead_letters"] = {g: b.bus.dead_letter_count(g) for g in b.consumers}
        with b.engine.connect() as conn:
            context["alerts"] = sorted(alert_store.states(conn).values(), key=lambda s: s.rule)
    return render(request, "dashboard.html", context)
