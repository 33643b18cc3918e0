"""The dashboard: what a night-shift integration analyst looks at first. Each section shows
only with the permission its data needs, and only the viewer's facilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from medbridge.console.rendering import render
from medbridge.console.session import Viewer, backend
from medbridge.governance.permissions import Permission
from medbridge.store import alerts as alert_store
from medbridge.store import erp_postings
from medbridge.store import work_items as work_store

router = APIRouter()


@dataclass(frozen=True)
class ConsumerRow:
    group: str
    backlog: int
    dead_letters: int


@router.get("/", response_class=HTMLResponse, name="dashboard")
def dashboard(request: Request, viewer: Viewer) -> HTMLResponse:
    b = backend(request)
    context: dict[str, Any] = {"consumers": None, "alerts": None, "outbox": None, "work": None}
    with b.engine.connect() as conn:
        if viewer.may(Permission.OPERATIONS_READ) and not viewer.scoped:
            context["consumers"] = [
                ConsumerRow(group, b.bus.lag(group), b.bus.dead_letter_count(group))
                for group in sorted(b.consumers)
            ]
            context["alerts"] = sorted(alert_store.states(conn).values(), key=lambda s: s.rule)
        if viewer.may(Permission.ERP_READ):
            context["outbox"] = erp_postings.counts(conn, viewer.facilities)
        if viewer.may(Permission.WORK_READ):
            context["work"] = work_store.open_by_queue(conn, viewer.facilities)
    return render(request, "dashboard.html", context)
