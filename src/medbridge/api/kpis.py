"""Daily KPIs per facility (``observability.daily_kpis``): the figures the analytics export
writes for the same day, from the same function.

A client bound to facilities gets its facilities only (asking for another is a 403).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import refuse_outside, require, services
from medbridge.governance.permissions import Permission, Principal
from medbridge.observability.daily_kpis import DailyKpis, daily_kpis
from medbridge.store.db import read_only

router = APIRouter(prefix="/v1", tags=["dashboard"])
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9999, 12, 30)  # the day after is a date too
Reader = Annotated[Principal, Depends(require(Permission.DASHBOARD_READ))]


class DailyKpisAnswer(BaseModel):
    day: date
    facilities: list[DailyKpis]


@router.get("/kpis/daily")
async def get_daily_kpis(
    request: Request,
    client: Reader,
    day: Annotated[date, Query(description="the UTC day, YYYY-MM-DD", ge=FIRST_DAY, le=LAST_DAY)],
    facility: Annotated[list[str] | None, Query(max_length=100)] = None,
) -> DailyKpisAnswer:
    """Each facility's KPIs of ``day`` (UTC): dispenses and consumption value, receipts,
    purchase orders, invoices and their first-pass match rate, the GL inventory and GRNI
    balances at the end of the day, days on hand."""
    wanted = client.facilities
    if facility:
        refuse_outside(client, facility, "the KPIs")
        wanted = frozenset(facility) if wanted is None else wanted & frozenset(facility)
    engine = read_only(services(request).engine)

    def read() -> list[DailyKpis]:
        with engine.connect() as conn:
            return daily_kpis(conn, day, day, wanted)

    return DailyKpisAnswer(day=day, facilities=await run_in_threadpool(read))
