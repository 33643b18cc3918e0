"""The ERP side: posting statuses of the outbox, the reconciliation checkpoint per
destination, the shadow run's comparison of two destinations, and the routing of domains to
ERP destinations with its cutovers."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import refuse_outside, require, services
from medbridge.api.params import PRINTABLE, Offset
from medbridge.api.problems import answers
from medbridge.canonical.erp import ErpError, ErpUnavailable
from medbridge.domain.erp_compare import ComparisonKind, ErpComparison, Side
from medbridge.domain.erp_routing import ALL_FACILITIES, Cutover, ErpDomain, Route
from medbridge.domain.reconciliation import Reconciliation
from medbridge.flows import erp_cutover
from medbridge.flows.erp_compare import CompareError, ErpCompare
from medbridge.flows.erp_posting import requeue
from medbridge.flows.erp_routing import ErpRouter
from medbridge.flows.reconciliation import reconcile_period
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import erp_postings, gl_summaries
from medbridge.store.erp_postings import DocumentKind, PostingStatus

router = APIRouter(prefix="/v1", tags=["erp"])
Reader = Annotated[Principal, Depends(require(Permission.ERP_READ))]
SharedReader = Annotated[Principal, Depends(require(Permission.ERP_READ, shared=True))]
Requeuer = Annotated[Principal, Depends(require(Permission.ERP_REQUEUE))]
CutoverMaker = Annotated[Principal, Depends(require(Permission.ERP_CUTOVER))]


def _amount(value: Any) -> str | None:
    return None if value is None else str(value)


@router.get("/erp-postings")
async def get_erp_postings(
    request: Request,
    client: Reader,
    status_: Annotated[PostingStatus | None, Query(alias="status")] = None,
    destination: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_-]{0,63}$")] = None,
    kind: Annotated[DocumentKind | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The outbox: one row per document (a journal entry, a purchase order...) and ERP
    destination, with its role there (``record`` or ``shadow``)."""

    def query() -> tuple[list[erp_postings.Posting], dict[PostingStatus, int]]:
        with services(request).engine.connect() as conn:
            rows = erp_postings.postings(
                conn,
                status=status_,
                facilities=client.facilities,
                destination=destination,
                kind=kind,
                limit=limit,
                offset=offset,
            )
            return rows, erp_postings.counts(conn, client.facilities, destination)

    rows, counts = await run_in_threadpool(query)
    return {
        "counts": {s.value: n for s, n in counts.items()},
        "items": [
            {
                "entry_id": p.entry_id,
                "document": p.document,
                "destination": p.destination,
                "role": p.role.value,
                "kind": p.kind.value,
                "domain": p.domain.value,
                "status": p.status.value,
                "erp_id": p.erp_id,
                "attempts": p.attempts,
                "last_error": p.last_error,
                "next_attempt_at": p.next_attempt_at.isoformat(),
                "posted_at": p.posted_at.isoformat() if p.posted_at else None,
                "created_at": p.created_at.isoformat(),
            }
            for p in rows
        ],
    }


@router.post("/erp-postings/{entry_id}/requeue", responses=answers(409))
async def requeue_erp_posting(
    request: Request,
    client: Requeuer,
    entry_id: Annotated[str, Path(min_length=1, max_length=80)],
) -> dict[str, Any]:
    """A failed posting (a dead letter) back in the queue, after the fix in the ERP: a
    journal entry's, or a summary's of summarised posting."""
    if client.scoped:

        def facilities() -> set[str]:
            with services(request).engine.connect() as conn:
                summary = gl_summaries.get(conn, entry_id)  # a summary's (SUM-...), or not
                if summary is not None:
                    return {summary.facility}
                return erp_postings.entry_facilities(conn, entry_id)

        refuse_outside(client, await run_in_threadpool(facilities) or {None}, entry_id)
    engine = services(request).engine
    if not await run_in_threadpool(partial(requeue, engine, entry_id, actor=client.name)):
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"posting {entry_id} is not failed (or unknown)"
        )
    return {"entry_id": entry_id, "status": PostingStatus.PENDING.value}


@router.get("/erp-summaries/{summary_id}/entries", responses=answers(404))
async def get_erp_summary_entries(
    request: Request,
    client: Reader,
    summary_id: Annotated[str, Path(min_length=1, max_length=120)],
) -> dict[str, Any]:
    """A summary of summarised GL posting, drilled down: each of its lines (account, cost
    center) with its net amount and the MedBridge journal lines behind it."""

    def query() -> tuple[gl_summaries.Summary | None, list[gl_summaries.DrillLine]]:
        with services(request).engine.connect() as conn:
            found = gl_summaries.get(conn, summary_id)
            return found, gl_summaries.drill_down(conn, summary_id) if found else []

    summary, rows = await run_in_threadpool(query)
    if summary is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no summary {summary_id}")
    refuse_outside(client, {summary.facility}, summary_id)
    lines = gl_summaries.summary_lines(rows)
    return {
        "summary_id": summary.summary_id,
        "facility": summary.facility,
        "slice_start": summary.slice_start.isoformat(),
        "period": summary.period.value,
        "status": summary.status.value,
        "erp_id": summary.erp_id,
        "last_error": summary.last_error,
        "entries": len({r.entry_id for r in rows}),
        "lines": [
            {
                "account": line.account,
                "cost_center": line.cost_center,
                "facility": line.facility,
                "party": line.party,
                "debit": _amount(line.net if line.net > 0 else 0),
                "credit": _amount(-line.net if line.net < 0 else 0),
                "entries": [
                    {
                        "entry_id": r.entry_id,
                        "event_slice": r.event_slice.isoformat(),
                        "debit": _amount(r.debit),
                        "credit": _amount(r.credit),
                    }
                    for r in line.behind
                ],
            }
            for line in lines
        ],
    }


Period = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


def _unprocessable(parameter: str, message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["query", parameter], "msg": message, "type": "value_error"}],
    )


def _erp_failure(error: ErpError) -> HTTPException:
    if isinstance(error, ErpUnavailable):
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"the ERP is unreachable: {error}"
        )
    return HTTPException(
        status.HTTP_502_BAD_GATEWAY, detail=f"the ERP refused: {type(error).__name__}: {error}"
    )


@router.get("/reconciliation/erp", responses=answers(502, 503))
async def get_erp_reconciliation(
    request: Request,
    _client: SharedReader,
    period: Period,
    through: Period | None = None,
    erp: Annotated[
        str | None, Query(description="The ERP destination (default: the primary one)")
    ] = None,
) -> dict[str, Any]:
    """MedBridge's journal entries and documents vs an ERP's ledger for a period
    (``YYYY-MM``, or every period from it ``through`` another): each document MedBridge routed
    to that ERP, and the inventory, GRNI and AP (per supplier) balances of every facility at
    its end."""
    svc = services(request)
    name = erp or svc.erp_name
    if name not in svc.erp_names:
        known = ", ".join(svc.erp_names)
        raise _unprocessable("erp", f"no ERP destination {name!r} (known: {known})")
    adapter = svc.erp_of(name)
    if adapter is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"the ERP {name} is not configured"
        )
    try:
        report: Reconciliation = await run_in_threadpool(
            partial(reconcile_period, destination=name),
            svc.engine,
            adapter,
            period,
            through,
        )
    except ValueError as error:
        raise _unprocessable("through", str(error)) from error
    except ErpError as error:
        raise _erp_failure(error) from error
    return {
        "period": period,
        "erp": name,
        "balanced": report.balanced,
        "entries": report.entries,
        "moves": report.moves,
        "differences": [
            {
                "kind": d.kind.value,
                "reference": d.reference,
                "move_id": d.move_id,
                "account": d.account,
                "cost_center": d.cost_center,
                "party": d.party,
                "medbridge_amount": _amount(d.medbridge_amount),
                "erp_amount": _amount(d.erp_amount),
            }
            for d in report.differences
        ],
        "balances": [
            {
                "facility": b.facility,
                "account": b.account,
                "role": b.role,
                "party": b.party,
                "medbridge": str(b.medbridge),
                "erp": str(b.erp),
                "difference": str(b.difference),
                "documents": list(b.documents),
            }
            for b in report.balances
        ],
        "totals": [
            {
                "account": t.account,
                "cost_center": t.cost_center,
                "medbridge": str(t.medbridge),
                "erp": str(t.erp),
                "difference": str(t.difference),
            }
            for t in report.totals
        ],
    }


@router.get("/erp/compare", responses=answers(502, 503))
async def get_erp_comparison(
    request: Request,
    client: Reader,
    period: Period,
    left: Annotated[
        str | None, Query(description="An ERP destination (default: each system of record)")
    ] = None,
    right: Annotated[
        str | None, Query(description="Another (default: each shadow of the left one)")
    ] = None,
) -> dict[str, Any]:
    """The shadow run's comparison: what two ERP destinations hold for a period
    (``YYYY-MM``), per domain and facility: documents on one side only, per account the
    amounts that differ, totals. Without ``left`` and ``right``: each domain's system of
    record against each of its shadows. A client bound to facilities sees theirs only."""
    svc = services(request)
    comparer = ErpCompare(svc.engine, svc.router(), svc.erp_of)
    try:
        reports = await run_in_threadpool(comparer.compare, period, left, right)
    except CompareError as error:
        raise _unprocessable(error.argument, str(error)) from error
    except ErpError as error:
        raise _erp_failure(error) from error
    if client.facilities is not None:
        reports = [r.within(client.facilities) for r in reports]
    return {
        "period": period,
        "identical": all(r.identical for r in reports),
        "comparisons": [_comparison(r) for r in reports],
    }


def _side(side: Side) -> dict[str, str]:
    return {"debit": str(side.debit), "credit": str(side.credit)}


def _comparison(report: ErpComparison) -> dict[str, Any]:
    return {
        "left": report.left,
        "right": report.right,
        "identical": report.identical,
        "groups": [
            {
                "domain": g.domain,
                "facility": g.facility,
                "left_documents": g.left_documents,
                "right_documents": g.right_documents,
                "only_left": g.count(ComparisonKind.ONLY_LEFT),
                "only_right": g.count(ComparisonKind.ONLY_RIGHT),
                "amounts_differ": g.count(ComparisonKind.AMOUNT_DIFFERS),
                "left_debit": str(g.left_debit),
                "right_debit": str(g.right_debit),
                "left_credit": str(g.left_credit),
                "right_credit": str(g.right_credit),
                "debit_difference": str(g.debit_difference),
                "credit_difference": str(g.credit_difference),
                "differences": [
                    {
                        "kind": d.kind.value,
                        "reference": d.reference,
                        "account": d.account,
                        "left": _side(d.left),
                        "right": _side(d.right),
                        "difference": str(d.difference),
                    }
                    for d in g.differences
                ],
            }
            for g in report.groups
        ],
    }


# --- routing and cutovers ----------------------------------------------------------------


def _router(request: Request) -> ErpRouter:
    return services(request).erp_router or ErpRouter.single()


def _route(route: Route) -> dict[str, Any]:
    return {"record": route.record, "shadows": list(route.shadows)}


def _cutover(id_: int, cutover: Cutover) -> dict[str, Any]:
    return {
        "id": id_,
        "domain": cutover.domain.value,
        "facility": cutover.facility,
        "effective_at": cutover.effective_at.isoformat(),
        **_route(cutover.route),
    }


@router.get("/erp/routes")
async def get_erp_routes(request: Request, client: Reader) -> dict[str, Any]:
    """The route in effect now of every domain (system of record and shadows) for ``*`` and
    for each facility, and every cutover in effective order (a client bound to facilities:
    theirs, and those of every facility)."""

    def query() -> tuple[list[erp_cutover.RouteNow], list[Any]]:
        with services(request).engine.connect() as conn:
            router = _router(request)
            mine = None if client.facilities is None else {ALL_FACILITIES, *client.facilities}
            return (
                erp_cutover.routes_now(conn, router, facilities=mine),
                erp_cutover.history(conn, client.facilities),
            )

    now, past = await run_in_threadpool(query)
    return {
        "routes": [
            {
                "domain": r.domain.value,
                "facility": r.facility,
                "since": r.since.isoformat() if r.since else None,
                **_route(r.route),
            }
            for r in now
        ],
        "cutovers": [
            _cutover(row.id, row.cutover)
            | {
                "created_at": row.created_at.isoformat(),
                "actor": row.actor,
                "reason": row.reason,
            }
            for row in past
        ],
    }


class CutoverRequest(BaseModel):
    """A cutover: from ``at`` (default now), ``domain``'s documents of ``facility`` (``*``:
    every facility) go to ``to`` as system of record; a rollback is the same request back."""

    model_config = ConfigDict(extra="forbid")

    domain: ErpDomain
    facility: str = Field(min_length=1, max_length=64, pattern=PRINTABLE)
    to: str = Field(min_length=1, max_length=64, pattern=PRINTABLE)
    at: AwareDatetime | None = None
    keep_shadow: bool = True
    """Keep the old system of record as a shadow (so a rollback finds every document)."""
    reason: str | None = Field(default=None, max_length=500, pattern=PRINTABLE)


@router.post("/erp/cutovers", status_code=status.HTTP_201_CREATED)
async def post_erp_cutover(
    request: Request, client: CutoverMaker, body: CutoverRequest
) -> dict[str, Any]:
    """Switch a domain's ERP system of record for a facility (or every one) from a moment on:
    documents queued before it stay where they were. Audited as ``erp.cutover``."""
    facility = None if body.facility == ALL_FACILITIES else body.facility
    refuse_outside(client, {facility}, f"the {body.domain.value} route")
    at: datetime | None = body.at
    try:
        made = await run_in_threadpool(
            partial(
                erp_cutover.cut_over,
                services(request).engine,
                _router(request),
                body.domain,
                body.facility,
                body.to,
                at,
                actor=client.name,
                keep_shadow=body.keep_shadow,
                reason=body.reason,
            )
        )
    except erp_cutover.CutoverError as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", error.field], "msg": error.reason, "type": "value_error"}],
        ) from error
    return _cutover(made.id, made.cutover) | {"before": _route(made.before)}
