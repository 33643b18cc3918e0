"""The ERP routes: the route in effect now of every domain per facility, the cutover history,
and the cutover form (``flows.erp_cutover``; a rollback is a cutover back)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from medbridge.console.rendering import flash, link, render
from medbridge.console.session import Csrf, backend, needs
from medbridge.domain.erp_routing import ALL_FACILITIES, ErpDomain
from medbridge.flows import erp_cutover
from medbridge.flows.erp_routing import ErpRouter
from medbridge.governance.permissions import Permission, Principal

router = APIRouter()
ErpReader = Annotated[Principal, Depends(needs(Permission.ERP_READ))]
CutoverMaker = Annotated[Principal, Depends(needs(Permission.ERP_CUTOVER))]


def _router(request: Request) -> ErpRouter:
    return backend(request).erp_router or ErpRouter.single()


@router.get("/erp-routes", response_class=HTMLResponse, name="erp_routes")
def routes(request: Request, viewer: ErpReader) -> HTMLResponse:
    """Which destination is the system of record (and which shadow) of each domain, for
    every facility and ``*``, now; every cutover in effective order."""
    mine = None if viewer.facilities is None else {ALL_FACILITIES, *viewer.facilities}
    with backend(request).engine.connect() as conn:
        now = erp_cutover.routes_now(conn, _router(request), facilities=mine)
        past = erp_cutover.history(conn, viewer.facilities)
    return render(
        request,
        "erp_routes.html",
        {
            "routes": now,
            "history": past,
            "domains": list(ErpDomain),
            "destinations": _router(request).names,
            "may_cut_over": viewer.may(Permission.ERP_CUTOVER),
        },
    )


def _moment(value: str) -> datetime | None:
    """The form's moment: ISO 8601, UTC unless it names its zone; empty: now."""
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise erp_cutover.InvalidMoment(f"{value!r} is not an ISO 8601 moment") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.post("/erp-routes/cutover", dependencies=[Csrf], name="erp_cutover")
def cutover(
    request: Request,
    viewer: CutoverMaker,
    domain: Annotated[str, Form(min_length=1, max_length=24)],
    facility: Annotated[str, Form(min_length=1, max_length=64)],
    to: Annotated[str, Form(min_length=1, max_length=64)],
    at: Annotated[str, Form(max_length=40)] = "",
    keep_shadow: Annotated[bool, Form()] = False,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """As ``POST /v1/erp/cutovers``: audited as the viewer's ``erp.cutover``."""
    if not all(value.isprintable() for value in (facility, to, at, reason)):
        raise HTTPException(422, detail="no control characters")
    if viewer.outside({None if facility == ALL_FACILITIES else facility}):
        raise HTTPException(403, detail=f"client {viewer.name} may not cut over {facility}")
    try:
        made = erp_cutover.cut_over(
            backend(request).engine,
            _router(request),
            domain,
            facility,
            to,
            _moment(at),
            actor=viewer.name,
            keep_shadow=keep_shadow,
            reason=reason.strip() or None,
        )
    except erp_cutover.CutoverError as error:
        flash(request, f"not cut over: {error}")
    else:
        c = made.cutover
        flash(
            request,
            f"{c.domain.value} of {c.facility} from {made.before.record} to {c.route.record}"
            f" from {c.effective_at:%Y-%m-%d %H:%M:%S} UTC",
        )
    return RedirectResponse(link(request, "erp_routes"), 303)
