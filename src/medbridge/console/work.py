"""Work: the exception queues (decide a task with one of its actions) and the trace of one
transaction, from its first event to its ERP posting."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from medbridge.canonical.tasks import Action, Decision, TaskStatus, WorkQueue
from medbridge.console.rendering import flash, link, render
from medbridge.console.session import Csrf, backend, needs
from medbridge.flows.work_queue import ActionNotAllowed, TaskError
from medbridge.governance.permissions import WORK_DECISIONS, Permission, Principal
from medbridge.store import ledger as ledger_store
from medbridge.store import trace as trace_store
from medbridge.store import work_items as store

router = APIRouter()
Reader = Annotated[Principal, Depends(needs(Permission.WORK_READ))]
TraceReader = Annotated[Principal, Depends(needs(Permission.LEDGER_READ))]


def _refuse_outside(viewer: Principal, facility: str | None, what: str) -> None:
    if not viewer.covers(facility):
        raise HTTPException(403, detail=f"client {viewer.name} may not see {what}")


@router.get("/work", response_class=HTMLResponse, name="work_items")
def work_items(
    request: Request,
    viewer: Reader,
    queue: WorkQueue | None = None,
    status: TaskStatus | None = TaskStatus.OPEN,
) -> HTMLResponse:
    with backend(request).engine.connect() as conn:
        items = store.listing(
            conn, queue=queue, status=status, facilities=viewer.facilities, limit=500
        )
    return render(
        request,
        "work_items.html",
        {"items": items, "queue": queue, "status": status, "queues": list(WorkQueue)},
    )


@router.get("/work/{item_id}", response_class=HTMLResponse, name="work_item")
def work_item(request: Request, viewer: Reader, item_id: int) -> HTMLResponse:
    with backend(request).engine.connect() as conn:
        item = store.get(conn, item_id)
    if item is None:
        raise HTTPException(404, detail=f"no work item {item_id}")
    _refuse_outside(viewer, item.facility, f"work item {item_id}")
    may_decide = viewer.may(WORK_DECISIONS[item.queue])
    return render(request, "work_item.html", {"item": item, "may_decide": may_decide})


def _decimal(field: str, value: str) -> Decimal | None:
    if not value.strip():
        return None
    try:
        return Decimal(value.strip())
    except InvalidOperation as error:
        raise HTTPException(422, detail=f"{field}: {value!r} is not a number") from error


@router.post("/work/{item_id}/decision", dependencies=[Csrf], name="decide_work_item")
def decide(
    request: Request,
    viewer: Reader,
    item_id: int,
    action: Annotated[Action, Form()],
    quantity: Annotated[str, Form(max_length=40)] = "",
    unit_price: Annotated[str, Form(max_length=40)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """As ``POST /v1/work-items/{id}/decision``: the queue's permission, the viewer's
    facilities, the task's own actions; the viewer is recorded as who decided."""
    queues = backend(request).work_queues
    if queues is None:
        raise HTTPException(503, detail="work queues are not configured")
    try:
        decision = Decision(
            action=action,
            quantity=_decimal("quantity", quantity),
            unit_price=_decimal("unit_price", unit_price),
            note=note or None,
        )
    except ValidationError as error:
        raise HTTPException(422, detail=error.errors()[0]["msg"]) from error

    def authorize(item: store.WorkItem) -> None:
        needed = WORK_DECISIONS[item.queue]
        if not viewer.may(needed):
            raise HTTPException(
                403, detail=f"client {viewer.name} lacks the permission {needed.value}"
            )
        _refuse_outside(viewer, item.facility, f"work item {item_id}")

    try:
        item = queues.decide(
            item_id,
            decision,
            decided_by=viewer.name,
            override=viewer.may(Permission.CLIENTS_ADMIN),
            authorize=authorize,
            actor=viewer.name,
        )
    except ActionNotAllowed as error:
        raise HTTPException(422, detail=f"action: {error}") from error
    except TaskError as error:
        flash(request, str(error))
    else:
        flash(request, f"work item {item.id}: {action.value} recorded")
    return RedirectResponse(link(request, "work_item", item_id=item_id), 303)


@router.get("/trace/{correlation_id}", response_class=HTMLResponse, name="trace")
def trace(request: Request, viewer: TraceReader, correlation_id: str) -> HTMLResponse:
    """As ``GET /v1/trace/{id}``: a client bound to facilities sees a trace only when its
    journal lines are all of its facilities."""
    if len(correlation_id) > 36:
        raise HTTPException(422, detail="correlation_id: at most 36 characters")
    with backend(request).engine.connect() as conn:
        steps = trace_store.trace(conn, correlation_id)
        facilities = (
            ledger_store.correlation_facilities(conn, correlation_id) if viewer.scoped else set()
        )
    if not steps:
        raise HTTPException(404, detail=f"nothing recorded under correlation id {correlation_id}")
    if viewer.scoped and viewer.outside(facilities or {None}):
        raise HTTPException(403, detail=f"client {viewer.name} may not see this trace")
    return render(request, "trace.html", {"correlation_id": correlation_id, "steps": steps})
