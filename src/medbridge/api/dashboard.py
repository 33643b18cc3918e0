"""The control tower's figures in one answer (``observability.kpis.Dashboard``): business KPIs
per facility, consumer lag, the ERP outbox and the open work items.

A client bound to facilities gets its facilities only (asking for another is a 403), the ERP
outbox and work items of its facilities, and no consumer lag (the bus is every facility's).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import refuse_outside, require, services
from medbridge.governance.permissions import Permission, Principal
from medbridge.observability.kpis import Dashboard, DashboardSnapshot

router = APIRouter(prefix="/v1", tags=["dashboard"])
Reader = Annotated[Principal, Depends(require(Permission.DASHBOARD_READ))]


@router.get("/dashboard")
async def get_dashboard(
    request: Request,
    client: Reader,
    facility: Annotated[list[str] | None, Query(max_length=100)] = None,
    window_days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> DashboardSnapshot:
    """KPIs per facility (``facility``: only these; a rate over ``window_days``), consumer lag
    in events and seconds, the ERP outbox and circuit, open work items per queue."""
    wanted = client.facilities
    if facility:
        refuse_outside(client, facility, "the dashboard")
        wanted = frozenset(facility) if wanted is None else wanted & frozenset(facility)
    svc = services(request)
    dashboard = Dashboard(svc.engine, svc.bus, list(svc.consumers), window_days=window_days)
    # a facility filter of an unbound client is not a scope: the bus stays in view
    return await run_in_threadpool(
        partial(dashboard.snapshot, wanted, shared=client.facilities is None)
    )
