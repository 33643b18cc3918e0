"""Accounting periods and their close (``flows.period_close``): the periods, each one's close
report (JSON, CSV, HTML), and the close itself. A period is the whole network's books: a
client bound to facilities is refused (403) here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.api.params import PRINTABLE
from medbridge.api.problems import answers
from medbridge.domain.close_report import report_html
from medbridge.domain.period_close import (
    CloseReport,
    PeriodClosed,
    PeriodError,
    UnforcedDifferences,
    report_csv,
    report_json,
)
from medbridge.flows.period_close import REASON_MAX, PeriodClose
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import periods as periods_store

router = APIRouter(prefix="/v1", tags=["periods"])
Reader = Annotated[Principal, Depends(require(Permission.PERIODS_READ, shared=True))]
Closer = Annotated[Principal, Depends(require(Permission.PERIODS_CLOSE, shared=True))]
PeriodPath = Annotated[str, Path(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
Cutoff = Annotated[
    AwareDatetime | None,
    Query(description="ISO 8601 moment with its zone (an open period's preview; default: end)"),
]


class CloseRequest(BaseModel):
    """``POST /v1/periods/{period}/close``: a close with differences needs ``force`` and a
    ``reason`` (finance decides; both kept with the period and in the audit log)."""

    model_config = ConfigDict(extra="forbid")

    cutoff: AwareDatetime | None = None
    dry_run: bool = False
    force: bool = False
    reason: str | None = Field(default=None, max_length=REASON_MAX, pattern=PRINTABLE)


def _closer(request: Request) -> PeriodClose:
    svc = services(request)
    return PeriodClose(svc.engine, svc.erp_names, svc.erp_of)


def _unprocessable(error: PeriodError, given_in: str = "query") -> HTTPException:
    where = "path" if error.field == "period" else given_in
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": [where, error.field], "msg": error.reason, "type": "value_error"}],
    )


async def _report(request: Request, period: str, cutoff: Any) -> tuple[CloseReport, str]:
    closer = _closer(request)
    try:
        report = await run_in_threadpool(closer.report, period, cutoff)
    except PeriodError as error:
        raise _unprocessable(error) from error
    with services(request).engine.connect() as conn:
        state = "closed" if periods_store.get(conn, period) else "open"
    return report, state


@router.get("/periods")
async def get_periods(request: Request, _client: Reader) -> dict[str, Any]:
    """Every period with journal entries or a close, newest first: its state, entries, and
    (closed) cut-off, when, by whom, how many differences and why it was forced."""
    with services(request).engine.connect() as conn:
        found = periods_store.listing(conn)
    return {
        "items": [
            {
                "period": p.period,
                "state": p.state,
                "entries": p.entries,
                "cutoff": p.cutoff.isoformat() if p.cutoff else None,
                "closed_at": p.closed_at.isoformat() if p.closed_at else None,
                "actor": p.actor,
                "differences": p.differences,
                "forced_reason": p.forced_reason,
            }
            for p in found
        ]
    }


@router.get("/periods/{period}/report")
async def get_period_report(
    request: Request, _client: Reader, period: PeriodPath, cutoff: Cutoff = None
) -> dict[str, Any]:
    """The close report: a closed period's as its close stored it; an open one's as a close
    would find it now (``cutoff``: as of that moment of the period, default its end)."""
    report, state = await _report(request, period, cutoff)
    return {"state": state, **report_json(report)}


@router.get(
    "/periods/{period}/report.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_period_report_csv(
    request: Request, _client: Reader, period: PeriodPath, cutoff: Cutoff = None
) -> Response:
    """The close report as CSV: every difference, then the GRNI, PPV, stock and ERP rows."""
    report, _ = await _report(request, period, cutoff)
    return Response(
        report_csv(report),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="close-{period}.csv"'},
    )


@router.get(
    "/periods/{period}/report.html",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}},
)
async def get_period_report_html(
    request: Request, _client: Reader, period: PeriodPath, cutoff: Cutoff = None
) -> HTMLResponse:
    """The close report as one HTML page."""
    report, state = await _report(request, period, cutoff)
    return HTMLResponse(report_html(report, state))


@router.post("/periods/{period}/close", responses=answers(409))
async def close_period(
    request: Request, client: Closer, period: PeriodPath, body: CloseRequest
) -> dict[str, Any]:
    """Close the period: the report as of the cut-off, then the lock (a late event of it
    posts to the next open period). ``dry_run``: the report only. 409: closed already, or
    differences and not ``force`` with a ``reason``."""
    if body.force and not (body.reason or "").strip():
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {"loc": ["body", "reason"], "msg": "force needs a reason", "type": "value_error"}
            ],
        )
    closer = _closer(request)

    def run() -> CloseReport:
        return closer.close(
            period,
            actor=client.name,
            cutoff=body.cutoff,
            force_reason=body.reason if body.force else None,
            dry_run=body.dry_run,
        )

    try:
        report = await run_in_threadpool(run)
    except (PeriodClosed, UnforcedDifferences) as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
    except PeriodError as error:
        raise _unprocessable(error, "body") from error
    state = "open" if body.dry_run else "closed"
    return {"state": state, **report_json(report)}
