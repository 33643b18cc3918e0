"""The Close page: the accounting periods, their state and close report, and (with
``periods:close``) the close form (``flows.period_close``). A period is the whole network's
books: a viewer bound to facilities may not see it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from medbridge.console.rendering import flash, link, render
from medbridge.console.session import Csrf, backend, needs
from medbridge.domain.period_close import PeriodError, UnforcedDifferences, parse_period
from medbridge.flows.period_close import REASON_MAX, PeriodClose
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import periods as periods_store

router = APIRouter()
Reader = Annotated[Principal, Depends(needs(Permission.PERIODS_READ, shared=True))]
Closer = Annotated[Principal, Depends(needs(Permission.PERIODS_CLOSE, shared=True))]


def _closer(request: Request) -> PeriodClose:
    svc = backend(request)
    return PeriodClose(svc.engine, svc.erp_names, svc.erp_of)


def _period(value: str) -> str:
    try:
        parse_period(value)
    except PeriodError as error:
        raise HTTPException(422, detail=str(error)) from None
    return value


@router.get("/periods", response_class=HTMLResponse, name="periods")
def periods(request: Request, viewer: Reader, period: str | None = None) -> HTMLResponse:
    """Every period, newest first; ``period``: its close report (a closed period's as its
    close stored it, an open one's as a close would find it now)."""
    with backend(request).engine.connect() as conn:
        rows = periods_store.listing(conn)
    context: dict[str, object] = {
        "rows": rows,
        "period": None,
        "state": None,
        "report": None,
        "error": None,
        "may_close": viewer.may(Permission.PERIODS_CLOSE),
    }
    if period:
        chosen = _period(period)
        context["period"] = chosen
        context["state"] = next((p.state for p in rows if p.period == chosen), "open")
        try:
            report = _closer(request).report(chosen)
        except PeriodError as error:
            context["error"] = str(error)
        else:
            context["report"] = report
    return render(request, "periods.html", context)


@router.post("/periods/{period}/close", dependencies=[Csrf], name="close_period")
def close_period(
    request: Request,
    viewer: Closer,
    period: str,
    cutoff: Annotated[str, Form(max_length=40)] = "",
    force: Annotated[bool, Form()] = False,
    reason: Annotated[str, Form(max_length=REASON_MAX)] = "",
) -> Response:
    """As ``POST /v1/periods/{period}/close``: audited as the viewer's ``period.close``."""
    chosen = _period(period)
    if not all(value.isprintable() for value in (cutoff, reason)):
        raise HTTPException(422, detail="no control characters")
    moment = None
    if cutoff.strip():
        try:
            moment = datetime.fromisoformat(cutoff.strip())
        except ValueError:
            raise HTTPException(422, detail=f"cutoff: {cutoff!r} is not ISO 8601") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if force and not reason.strip():
        flash(request, f"{chosen} not closed: a forced close needs a reason")
    else:
        try:
            report = _closer(request).close(
                chosen,
                actor=viewer.name,
                cutoff=moment,
                force_reason=reason if force else None,
            )
        except UnforcedDifferences as error:
            flash(request, f"{chosen} not closed: {error.reason}")
        except PeriodError as error:
            flash(request, f"{chosen} not closed: {error}")
        else:
            flash(request, f"{chosen} closed with {len(report.differences)} difference(s)")
    return RedirectResponse(link(request, "periods") + f"?period={chosen}", 303)
