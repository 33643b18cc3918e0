"""The message browser over HTTP: ``GET /v1/messages`` (filtered, keyset pages, newest
first), ``GET /v1/messages/{id}`` (one message: raw masked, events, acknowledgement, trace)
and ``POST /v1/messages/reprocess`` (ids or a filter, a reason; ``dry_run`` answers the
count only). The work is ``flows.messages.MessageBrowser``'s; a client bound to facilities
sees and reprocesses only their messages."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.api.problems import answers
from medbridge.canonical.messages import MessageFilter, MessageStatus, WireProtocol
from medbridge.flows.messages import (
    MAX_LIMIT,
    BrowserError,
    MessageBrowser,
    MessageDetail,
    MessageSummary,
)
from medbridge.governance.permissions import Permission, Principal

router = APIRouter(prefix="/v1", tags=["messages"])
Reader = Annotated[Principal, Depends(require(Permission.MESSAGES_READ))]
Reprocessor = Annotated[Principal, Depends(require(Permission.MESSAGES_REPROCESS))]

_STATUSES = "|".join(s.value for s in MessageStatus)
_PROTOCOLS = "|".join(p.value for p in WireProtocol)


class MessageRow(BaseModel):
    id: str
    received_at: datetime
    direction: str = Field(description="in | out")
    protocol: str = Field(description="hl7v2, fhir, x12, cxml, flatfile, scan, erp")
    connector: str
    sender: str = Field(description="The partner, sender or API client.")
    message_type: str = Field(description="e.g. RDS^O13, MedicationDispense, 810.")
    control_id: str = Field(description="MSH-10, the resource id, ISA13, payloadID ...")
    business_key: str
    facility: str | None
    status: str = Field(
        description="applied, duplicate, parked, refused, sent, acknowledged, failed; "
        "dead_lettered when a consumer gave up on one of its events."
    )
    stored_status: str = Field(description="The status as recorded (never dead_lettered).")
    correlation_id: str | None = Field(description="Its trace: GET /v1/trace/{correlation_id}.")
    idempotency_key: str | None
    event_count: int
    error: str | None

    @classmethod
    def of(cls, m: MessageSummary) -> MessageRow:
        fields = {k: v for k, v in m.__dict__.items() if k != "dead_lettered"}
        return cls(**fields | {"status": m.effective_status, "stored_status": m.status})


class MessagePageOut(BaseModel):
    items: list[MessageRow]
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` for the next page; null when this page is the last."
    )


class MessageDetailOut(BaseModel):
    message: MessageRow
    raw: str | None = Field(description="As received, patient fields masked; null once pruned.")
    media_type: str | None
    ack: str | None = Field(description="The acknowledgement sent.")
    events: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    trace: str | None = Field(description="The path of its trace.")

    @classmethod
    def of(cls, d: MessageDetail) -> MessageDetailOut:
        return cls(
            message=MessageRow.of(d.message),
            raw=d.raw,
            media_type=d.media_type,
            ack=d.ack,
            events=[e.__dict__ for e in d.events],
            dead_letters=[x.__dict__ for x in d.dead_letters],
            trace=d.trace_path,
        )


class FilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    control_id: str | None = Field(default=None, min_length=1, max_length=200)
    business_key: str | None = Field(default=None, min_length=1, max_length=200)
    sender: str | None = Field(default=None, min_length=1, max_length=200)
    protocol: str | None = Field(default=None, pattern=f"^({_PROTOCOLS})$")
    message_type: str | None = Field(default=None, min_length=1, max_length=64)
    status: str | None = Field(default=None, pattern=f"^({_STATUSES})$")
    connector: str | None = Field(default=None, min_length=1, max_length=64)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    def filter(self, facilities: frozenset[str] | None) -> MessageFilter:
        return MessageFilter(**self.model_dump(), direction="in", facilities=facilities)


class ReprocessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    filter: FilterIn | None = None
    reason: str = Field(min_length=1, max_length=500)
    dry_run: bool = False

    @model_validator(mode="after")
    def _one_selection(self) -> ReprocessIn:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter")
        return self


def _problem(status: int, field: tuple[str, ...], message: str) -> HTTPException:
    return HTTPException(
        status, detail=[{"loc": list(field), "msg": message, "type": "value_error"}]
    )


def _browser(request: Request) -> MessageBrowser:
    browser = services(request).messages
    if browser is None:
        raise HTTPException(503, detail="the message browser is not configured")
    return browser


@router.get("/messages", response_model=MessagePageOut, responses=answers(503))
async def list_messages(
    request: Request,
    client: Reader,
    control_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    business_key: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    sender: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Partner or sender.")
    ] = None,
    protocol: Annotated[str | None, Query(pattern=f"^({_PROTOCOLS})$")] = None,
    message_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    status: Annotated[str | None, Query(pattern=f"^({_STATUSES})$")] = None,
    direction: Annotated[str | None, Query(pattern="^(in|out)$")] = None,
    connector: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since: Annotated[AwareDatetime | None, Query(description="Inclusive.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Exclusive.")] = None,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=200, description="The last next_cursor.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> MessagePageOut:
    """Messages matching every filter given, newest first, ``limit`` at a time."""
    browser = _browser(request)
    filters = MessageFilter(
        control_id=control_id,
        business_key=business_key,
        sender=sender,
        protocol=protocol,
        message_type=message_type,
        status=status,
        direction=direction,
        connector=connector,
        since=since,
        until=until,
        facilities=client.facilities,
    )
    try:
        page = await run_in_threadpool(browser.search, filters, cursor, limit)
    except BrowserError as error:
        name = "cursor" if error.field == "after" else error.field
        raise _problem(422, ("query", name), str(error)) from error
    return MessagePageOut(
        items=[MessageRow.of(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.get("/messages/{message_id}", response_model=MessageDetailOut, responses=answers(404, 503))
async def get_message(
    request: Request,
    client: Reader,
    message_id: Annotated[str, Path(min_length=1, max_length=36)],
) -> MessageDetailOut:
    """One message: its raw form (patient fields masked), its events, the acknowledgement
    sent, its dead letters and its trace."""
    browser = _browser(request)
    found = await run_in_threadpool(browser.get, message_id, client.facilities)
    if found is None:
        raise HTTPException(404, detail=f"no message {message_id}")
    return MessageDetailOut.of(found)


@router.post("/messages/reprocess", responses=answers(503))
async def reprocess_messages(
    request: Request, client: Reprocessor, body: ReprocessIn
) -> dict[str, Any]:
    """Feed stored inbound messages back through their connector's inbound path with their
    original idempotency key (exactly once in effect: an applied one comes back duplicate),
    audited with the reason. ``dry_run``: only how many a filter selects."""
    browser = _browser(request)
    filters = body.filter.filter(client.facilities) if body.filter is not None else None
    if body.dry_run:
        count = len(body.ids) if body.ids is not None else None
        if filters is not None:
            count = await run_in_threadpool(browser.preview, filters)
        return {"dry_run": True, "selected": count, "limit": browser.max_reprocess}
    try:
        report = await run_in_threadpool(
            partial(
                browser.reprocess,
                ids=body.ids,
                filters=filters,
                reason=body.reason,
                actor=client.name,
                facilities=client.facilities,
            )
        )
    except BrowserError as error:
        raise _problem(422, ("body", error.field), str(error)) from error
    return {
        "dry_run": False,
        "selected": report.selected,
        "counts": report.counts(),
        "outcomes": [o.__dict__ for o in report.outcomes],
    }
