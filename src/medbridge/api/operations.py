"""Dead letters: list and replay (admin)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.api.params import BodyId
from medbridge.bus.port import DeadLetterFilter
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import alerts as alert_store

router = APIRouter(prefix="/v1", tags=["operations"])


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, max_length=100)
    ids: list[BodyId] | None = Field(default=None, max_length=10_000)
    event_type: str | None = None
    subject: str | None = None
    error_type: str | None = None


@router.get("/dead-letters")
async def list_dead_letters(
    request: Request,
    _client: Annotated[Principal, Depends(require(Permission.OPERATIONS_READ, shared=True))],
    group: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(pattern="^(dead|replayed)$")] = "dead",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    letters = await run_in_threadpool(
        services(request).bus.dead_letters,
        DeadLetterFilter(group=group, status=status, limit=limit),
    )
    return {
        "items": [
            {
                "id": d.id,
                "group": d.group,
                "event_id": d.event_id,
                "event_type": d.event_type,
                "subject": d.subject,
                "correlation_id": d.correlation_id,
                "error_type": d.error_type,
                "error": d.error,
                "attempts": d.attempts,
                "status": d.status,
                "dead_at": d.dead_at.isoformat(),
                "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
            }
            for d in letters
        ]
    }


@router.post("/dead-letters/replay")
async def replay_dead_letters(
    request: Request,
    body: ReplayRequest,
    client: Annotated[Principal, Depends(require(Permission.DEAD_LETTERS_REPLAY, shared=True))],
) -> dict[str, Any]:
    consumer = services(request).consumers.get(body.group)
    if consumer is None:
        raise HTTPException(
            422,
            detail=[
                {"loc": ["body", "group"], "msg": "unknown consumer group", "type": "value_error"}
            ],
        )
    selection = DeadLetterFilter(
        ids=tuple(body.ids) if body.ids else None,
        event_type=body.event_type,
        subject=body.subject,
        error_type=body.error_type,
    )
    report = await run_in_threadpool(partial(consumer.replay, selection, actor=client.name))
    return {"applied": report.applied, "failed": report.failed}


@router.get("/alerts")
async def list_alerts(
    request: Request,
    _client: Annotated[Principal, Depends(require(Permission.OPERATIONS_READ, shared=True))],
) -> dict[str, Any]:
    """Each alert rule's state: ok or firing, its incident count, the reading that moved it."""

    def query() -> list[alert_store.AlertState]:
        with services(request).engine.connect() as conn:
            return sorted(alert_store.states(conn).values(), key=lambda s: s.rule)

    return {
        "items": [
            {
                "rule": s.rule,
                "state": s.state.value,
                "incident": s.incident,
                "reading": str(s.reading),
                "since": s.since.isoformat(),
                "notified": s.notified,
            }
            for s in await run_in_threadpool(query)
        ]
    }
