"""Exception work queues over HTTP: ``GET /v1/work-items`` (by queue and status),
``GET /v1/work-items/{id}`` and ``POST /v1/work-items/{id}/decision``. Reading needs
``work:read``; deciding needs the task's queue's permission (``work:pharmacy``, ``work:ap``,
``work:procurement``) and, where the queue has owners, being one (``clients:admin`` overrides).
A client bound to facilities sees and decides only the tasks about them. The client's name is
recorded as who decided."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import refuse_outside, require, services
from medbridge.api.params import RowId
from medbridge.api.problems import answers
from medbridge.canonical.tasks import Decision, TaskStatus, WorkQueue
from medbridge.flows.work_queue import (
    ActionNotAllowed,
    NotQueueOwner,
    TaskAlreadyDecided,
    TaskNotFound,
    WorkQueues,
)
from medbridge.governance.permissions import WORK_DECISIONS, Permission, Principal
from medbridge.store import work_items as store

router = APIRouter(prefix="/v1", tags=["work queues"])
Reader = Annotated[Principal, Depends(require(Permission.WORK_READ))]
ItemId = RowId


@router.get("/work-items")
async def list_work_items(
    request: Request,
    client: Reader,
    queue: WorkQueue | None = None,
    status: TaskStatus | None = TaskStatus.OPEN,
    correlation_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            found = store.listing(
                conn,
                queue=queue,
                status=status,
                correlation_id=correlation_id,
                facilities=client.facilities,
                limit=limit,
            )
        return [item.as_dict() for item in found]

    return {"items": await run_in_threadpool(query)}


@router.get("/work-items/{item_id}", responses=answers(404))
async def get_work_item(request: Request, client: Reader, item_id: ItemId) -> dict[str, Any]:
    def query() -> store.WorkItem | None:
        with services(request).engine.connect() as conn:
            return store.get(conn, item_id)

    item = await run_in_threadpool(query)
    if item is None:
        raise HTTPException(404, detail=f"no work item {item_id}")
    refuse_outside(client, [item.facility], f"work item {item_id}")
    return item.as_dict()


@router.post("/work-items/{item_id}/decision", responses=answers(404, 409, 503))
async def decide_work_item(
    request: Request, client: Reader, item_id: ItemId, decision: Decision
) -> dict[str, Any]:
    """Decide an open task with one of its actions: 404 unknown, 403 when the queue has
    owners and the client is not one (an admin key may), 409 already decided (the first
    decision stands), 422 naming ``action`` when the task does not offer it."""
    queues: WorkQueues | None = services(request).work_queues
    if queues is None:
        raise HTTPException(503, detail="work queues are not configured")

    def authorize(item: store.WorkItem) -> None:
        needed = WORK_DECISIONS[item.queue]
        if not client.may(needed):
            raise HTTPException(
                403, detail=f"client {client.name} lacks the permission {needed.value}"
            )
        refuse_outside(client, [item.facility], f"work item {item_id}")

    def act() -> dict[str, Any]:
        override = client.may(Permission.CLIENTS_ADMIN)
        return queues.decide(
            item_id,
            decision,
            decided_by=client.name,
            override=override,
            authorize=authorize,
            actor=client.name,
        ).as_dict()

    try:
        return await run_in_threadpool(act)
    except TaskNotFound as error:
        raise HTTPException(404, detail=str(error)) from error
    except NotQueueOwner as error:
        raise HTTPException(403, detail=str(error)) from error
    except TaskAlreadyDecided as error:
        raise HTTPException(409, detail=str(error)) from error
    except ActionNotAllowed as error:
        detail = [{"loc": ["body", "action"], "msg": str(error), "type": "action_not_allowed"}]
        raise HTTPException(422, detail=detail) from error
