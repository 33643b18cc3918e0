"""Exception work queues over HTTP: ``GET /v1/work-items`` (by queue and status),
``GET /v1/work-items/{id}`` and ``POST /v1/work-items/{id}/decision``. Deciding needs an
integration (operator) key; the client's name is recorded as who decided."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.canonical.tasks import Decision, TaskStatus, WorkQueue
from medbridge.flows.work_queue import (
    ActionNotAllowed,
    NotQueueOwner,
    TaskAlreadyDecided,
    TaskNotFound,
    WorkQueues,
)
from medbridge.governance.clients import Client, Role
from medbridge.store import work_items as store

router = APIRouter(prefix="/v1", tags=["work queues"])
Reader = Annotated[Client, Depends(require(Role.READER))]
Operator = Annotated[Client, Depends(require(Role.INTEGRATION))]
ItemId = Annotated[int, Path(ge=1)]


@router.get("/work-items")
async def list_work_items(
    request: Request,
    _client: Reader,
    queue: WorkQueue | None = None,
    status: TaskStatus | None = TaskStatus.OPEN,
    correlation_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            found = store.listing(
                conn, queue=queue, status=status, correlation_id=correlation_id, limit=limit
            )
        return [item.as_dict() for item in found]

    return {"items": await run_in_threadpool(query)}


@router.get("/work-items/{item_id}")
async def get_work_item(request: Request, _client: Reader, item_id: ItemId) -> dict[str, Any]:
    def query() -> store.WorkItem | None:
        with services(request).engine.connect() as conn:
            return store.get(conn, item_id)

    item = await run_in_threadpool(query)
    if item is None:
        raise HTTPException(404, detail=f"no work item {item_id}")
    return item.as_dict()


@router.post("/work-items/{item_id}/decision")
async def decide_work_item(
    request: Request, client: Operator, item_id: ItemId, decision: Decision
) -> dict[str, Any]:
    """Decide an open task with one of its actions: 404 unknown, 403 when the queue has
    owners and the client is not one (an admin key may), 409 already decided (the first
    decision stands), 422 naming ``action`` when the task does not offer it."""
    queues: WorkQueues | None = services(request).work_queues
    if queues is None:
        raise HTTPException(503, detail="work queues are not configured")

    def act() -> dict[str, Any]:
        override = client.may(Role.ADMIN)
        decided = queues.decide(
            item_id, decision, decided_by=client.name, override=override, actor=client.name
        )
        return decided.as_dict()

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
