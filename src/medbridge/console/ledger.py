"""Stock and finance: stock by location and lot, the ERP outbox (requeue a failed posting),
the summaries of summarised GL posting drilled down to their entries, the reconciliation
of MedBridge's journal with each ERP's ledger for a period, and the shadow run's comparison of
two ERPs."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from medbridge.canonical.erp import ErpError, ErpUnavailable
from medbridge.console.rendering import code_filter, flash, link, render
from medbridge.console.session import Csrf, backend, needs
from medbridge.flows.erp_compare import CompareError, ErpCompare
from medbridge.flows.erp_posting import requeue
from medbridge.flows.reconciliation import reconcile_period
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import erp_postings, gl_summaries
from medbridge.store import ledger as ledger_store
from medbridge.store.erp_postings import PostingStatus

router = APIRouter()
StockReader = Annotated[Principal, Depends(needs(Permission.STOCK_READ))]
ErpReader = Annotated[Principal, Depends(needs(Permission.ERP_READ))]
SharedErpReader = Annotated[Principal, Depends(needs(Permission.ERP_READ, shared=True))]
Requeuer = Annotated[Principal, Depends(needs(Permission.ERP_REQUEUE))]
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@router.get("/stock", response_class=HTMLResponse, name="stock")
def stock(
    request: Request,
    viewer: StockReader,
    item: str | None = None,
    location: str | None = None,
    lot: str | None = None,
) -> HTMLResponse:
    filters = {"item": code_filter("item", item), "location": code_filter("location", location)}
    filters["lot"] = code_filter("lot", lot)
    with backend(request).engine.connect() as conn:
        rows = ledger_store.stock(
            conn,
            item=filters["item"],
            location=filters["location"],
            lot=filters["lot"],
            facilities=viewer.facilities,
            limit=2000,
        )
    return render(request, "stock.html", {"rows": rows, "filters": filters})


@router.get("/erp-postings", response_class=HTMLResponse, name="erp_postings")
def postings(
    request: Request, viewer: ErpReader, status: PostingStatus | None = None
) -> HTMLResponse:
    with backend(request).engine.connect() as conn:
        rows = erp_postings.postings(conn, status=status, facilities=viewer.facilities, limit=500)
        counts = erp_postings.counts(conn, viewer.facilities)
    return render(
        request,
        "erp_postings.html",
        {
            "rows": rows,
            "counts": counts,
            "status": status,
            "statuses": list(PostingStatus),
            "may_requeue": viewer.may(Permission.ERP_REQUEUE),
        },
    )


@router.post("/erp-postings/{entry_id}/requeue", dependencies=[Csrf], name="requeue_posting")
def requeue_posting(request: Request, viewer: Requeuer, entry_id: str) -> Response:
    """As ``POST /v1/erp-postings/{id}/requeue``: a failed posting back in the queue."""
    engine = backend(request).engine
    if viewer.scoped:
        with engine.connect() as conn:
            facilities = erp_postings.entry_facilities(conn, entry_id)
        if viewer.outside(facilities or {None}):
            raise HTTPException(403, detail=f"client {viewer.name} may not requeue {entry_id}")
    if requeue(engine, entry_id, actor=viewer.name):
        flash(request, f"{entry_id} is pending again")
    else:
        flash(request, f"{entry_id} is not failed (or unknown): nothing requeued")
    return RedirectResponse(link(request, "erp_postings") + "?status=failed", 303)


@router.get("/erp-summaries", response_class=HTMLResponse, name="erp_summaries")
def summaries(request: Request, viewer: ErpReader) -> HTMLResponse:
    """The summaries of summarised GL posting, newest slice first."""
    with backend(request).engine.connect() as conn:
        rows = gl_summaries.summaries(conn, facilities=viewer.facilities, limit=500)
    return render(request, "erp_summaries.html", {"rows": rows, "summary": None, "lines": []})


@router.get("/erp-summaries/{summary_id}", response_class=HTMLResponse, name="erp_summary")
def summary(request: Request, viewer: ErpReader, summary_id: str) -> HTMLResponse:
    """One summary drilled down: each line (account, cost center) and the entries behind it."""
    with backend(request).engine.connect() as conn:
        found = gl_summaries.get(conn, summary_id)
        rows = gl_summaries.drill_down(conn, summary_id) if found else []
    if found is None:
        raise HTTPException(404, detail=f"no summary {summary_id}")
    if viewer.outside({found.facility}):
        raise HTTPException(403, detail=f"client {viewer.name} may not read {summary_id}")
    lines = gl_summaries.summary_lines(rows)
    return render(request, "erp_summaries.html", {"rows": [], "summary": found, "lines": lines})


@router.get("/reconciliation", response_class=HTMLResponse, name="reconciliation")
def reconciliation(
    request: Request, viewer: SharedErpReader, period: str | None = None, erp: str | None = None
) -> HTMLResponse:
    """MedBridge's journal vs an ERP's ledger for a period (``YYYY-MM``): what MedBridge
    routed to that ERP (``erp``; the primary one by default)."""
    svc = backend(request)
    name = erp or svc.erp_name
    context: dict[str, object] = {
        "period": period,
        "report": None,
        "error": None,
        "erp": name,
        "erps": svc.erp_names,
    }
    if name not in svc.erp_names:
        raise HTTPException(422, detail=f"erp: no ERP destination {name!r}")
    if period:
        if not PERIOD.match(period):
            raise HTTPException(422, detail=f"period: {period!r} is not YYYY-MM")
        adapter = svc.erp_of(name)
        if adapter is None:
            context["error"] = f"the ERP {name} is not configured (its url)"
        else:
            try:
                context["report"] = reconcile_period(
                    svc.engine, adapter, period, None, destination=name
                )
            except ErpUnavailable as error:
                context["error"] = f"the ERP is unreachable: {error}"
            except ErpError as error:
                context["error"] = f"the ERP refused: {type(error).__name__}: {error}"
    return render(request, "reconciliation.html", context)


@router.get("/erp-compare", response_class=HTMLResponse, name="erp_compare")
def erp_compare(
    request: Request,
    viewer: ErpReader,
    period: str | None = None,
    left: str | None = None,
    right: str | None = None,
) -> HTMLResponse:
    """The shadow run's comparison of two ERP destinations for a period, per domain and
    facility (each system of record against its shadows unless both sides are named)."""
    svc = backend(request)
    left, right = left or None, right or None
    context: dict[str, object] = {
        "period": period,
        "left": left,
        "right": right,
        "erps": svc.erp_names,
        "reports": None,
        "error": None,
    }
    if period:
        comparer = ErpCompare(svc.engine, svc.router(), svc.erp_of)
        try:
            reports = comparer.compare(period, left, right)
        except CompareError as error:
            raise HTTPException(422, detail=str(error)) from error
        except ErpUnavailable as error:
            context["error"] = f"an ERP is unreachable: {error}"
        except ErpError as error:
            context["error"] = f"an ERP refused: {type(error).__name__}: {error}"
        else:
            if viewer.facilities is not None:
                reports = [r.within(viewer.facilities) for r in reports]
            context["reports"] = reports
    return render(request, "erp_compare.html", context)
