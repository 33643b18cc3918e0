"""The inbound exception queue and the cross-references that resolve it."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, IntegrityError
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.api.params import PRINTABLE, QueryCode, RowId
from medbridge.api.problems import answers
from medbridge.canonical.codes import CodeError, NdcShape, ndc_readings
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.flows.inbound import ExceptionNotOpen, InboundResult, NotFillable
from medbridge.governance.permissions import Permission, Principal
from medbridge.masterdata.repository import CrossReferences, MasterDataError
from medbridge.store import exceptions as exception_store

router = APIRouter(prefix="/v1", tags=["exceptions and cross-references"])
Reader = Annotated[Principal, Depends(require(Permission.OPERATIONS_READ, shared=True))]
Decider = Annotated[Principal, Depends(require(Permission.EXCEPTIONS_DECIDE, shared=True))]
XrefWriter = Annotated[Principal, Depends(require(Permission.XREF_WRITE, shared=True))]


def _view(e: exception_store.InboundException) -> dict[str, Any]:
    return {
        "id": e.id,
        "source": e.source,
        "source_system": e.source_system,
        "idempotency_key": e.idempotency_key,
        "status": e.status,
        "problems": e.problems,
        "movements": e.drafts,
        "created_at": e.created_at.isoformat(),
        "resolved_at": e.resolved_at.isoformat() if e.resolved_at else None,
        "resolution": e.resolution,
    }


def _result(result: InboundResult) -> dict[str, Any]:
    return {
        "outcome": result.outcome.value,
        "event_ids": [str(e) for e in result.event_ids],
        "problems": [p.as_dict() for p in result.problems],
    }


@router.get("/exceptions")
async def list_exceptions(
    request: Request,
    _client: Reader,
    status: Annotated[str | None, Query(pattern="^(open|applied|discarded)$")] = "open",
    source_system: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            found = exception_store.listing(
                conn, status=status, source_system=source_system, limit=limit
            )
        return [_view(e) for e in found]

    return {"items": await run_in_threadpool(query)}


@router.post("/exceptions/{exception_id}/replay", responses=answers(409))
async def replay_exception(
    request: Request, client: Decider, exception_id: RowId
) -> dict[str, Any]:
    replay = partial(services(request).inbound.replay, exception_id, actor=client.name)
    try:
        result = await run_in_threadpool(replay)
    except ExceptionNotOpen as error:
        raise HTTPException(409, detail=str(error)) from error
    return _result(result)


class Discard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=500)


@router.post("/exceptions/{exception_id}/discard", responses=answers(409))
async def discard_exception(
    request: Request, body: Discard, client: Decider, exception_id: RowId
) -> dict[str, Any]:
    try:
        await run_in_threadpool(
            partial(
                services(request).inbound.discard,
                exception_id,
                f"{client.name}: {body.reason}",
                actor=client.name,
            )
        )
    except ExceptionNotOpen as error:
        raise HTTPException(409, detail=str(error)) from error
    return {"id": exception_id, "status": "discarded"}


class Fill(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int = Field(default=0, ge=0, le=10_000)
    """Which movement of the message (0: the first)."""
    field: Literal["location"]
    """What the message leaves out (``location``: where the stock came from)."""
    value: str = Field(min_length=1, max_length=120, pattern=PRINTABLE)
    """In the sender's codes: resolved through its cross-references like the rest."""


@router.post("/exceptions/{exception_id}/fill", responses=answers(409))
async def fill_exception(
    request: Request, body: Fill, client: Decider, exception_id: RowId
) -> dict[str, Any]:
    """Fill in what a parked message leaves out (a FHIR SupplyDelivery without ``supplier``:
    where the stock came from), audited, then replay it: applied once if everything resolves
    now, else still open with its problems. What the sender did say is never overwritten."""
    fill = partial(
        services(request).inbound.fill,
        exception_id,
        body.index,
        body.field,
        body.value,
        actor=client.name,
    )
    try:
        result = await run_in_threadpool(fill)
    except ExceptionNotOpen as error:
        raise HTTPException(409, detail=str(error)) from error
    except NotFillable as error:
        raise _unprocessable(error.field, str(error)) from error
    return _result(result)


class ItemCrossReference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: CodeSystem
    code: str = Field(min_length=1, max_length=64)
    issuer: str | None = Field(default=None, max_length=64)
    item: str = Field(min_length=1, max_length=64)
    ndc_shape: NdcShape | None = None
    """An undashed 10-digit NDC's shape (else read in the item's labeler's, if one fits)."""
    replace: bool = False
    """Move the code from the item it maps to now (correcting a wrong mapping)."""


class SourceCrossReference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_system: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=120)
    target: str = Field(min_length=1, max_length=64)


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(
        422, detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}]
    )


@router.post("/cross-references/items", status_code=201)
async def add_item_code(
    request: Request, body: ItemCrossReference, client: XrefWriter
) -> dict[str, Any]:
    svc = services(request)

    def write() -> ItemCode:
        given = body.code
        if body.system is CodeSystem.NDC:
            ndc_readings(given)  # what is no NDC at all is refused before the item is looked at
        else:
            ItemCode(system=body.system, code=given, issuer=body.issuer)
        with svc.engine.begin() as conn:
            if not svc.masterdata.items(conn, [body.item]):
                raise MasterDataError("item", f"unknown item {body.item!r}")
            if body.system is CodeSystem.NDC:
                given = svc.masterdata.item_ndc(conn, body.item, given, body.ndc_shape)
            code = ItemCode(system=body.system, code=given, issuer=body.issuer)
            svc.masterdata.link_code(conn, body.item, code, actor=client.name, replace=body.replace)
        return code

    try:
        code = await run_in_threadpool(write)
    except (CodeError, ValueError, MasterDataError) as error:
        field = getattr(error, "field", "code")
        field = "code" if field == "codes" else field  # the code maps to another item already
        raise _unprocessable(field if isinstance(field, str) else "code", str(error)) from error
    return {
        "system": code.system.value,
        "code": code.code,
        "issuer": code.issuer,
        "item": body.item,
    }


@router.delete("/cross-references/items", responses=answers(404))
async def remove_item_code(
    request: Request,
    client: XrefWriter,
    system: CodeSystem,
    code: Annotated[str, Query(min_length=1, max_length=64, pattern=PRINTABLE)],
    issuer: QueryCode = None,
) -> dict[str, Any]:
    """Remove a wrong cross-reference (audited): messages carrying the code are parked for
    review again until it is mapped. An NDC is given dashed or as 11 digits."""
    svc = services(request)

    def write() -> tuple[ItemCode, str | None]:
        if system is CodeSystem.NDC and len(ndc_readings(code)) > 1:
            raise MasterDataError("code", f"NDC {code!r}: give it dashed (its shape is lost)")
        item_code = ItemCode(system=system, code=code, issuer=issuer)
        with svc.engine.begin() as conn:
            return item_code, svc.masterdata.unlink_code(conn, item_code, actor=client.name)

    try:
        item_code, was = await run_in_threadpool(write)
    except (CodeError, ValueError, MasterDataError) as error:
        field = getattr(error, "field", "code")
        raise HTTPException(
            422,
            detail=[{"loc": ["query", str(field)], "msg": str(error), "type": "value_error"}],
        ) from error
    if was is None:
        raise HTTPException(404, detail=f"{system.value} {item_code.code} maps to no item")
    return {"system": system.value, "code": item_code.code, "issuer": issuer, "removed_from": was}


def _source_route(kind: str, writer: Any) -> Any:
    async def add(
        request: Request, body: SourceCrossReference, client: XrefWriter
    ) -> dict[str, Any]:
        def write() -> None:
            with services(request).engine.begin() as conn:
                writer(conn, body.source_system, body.code, body.target, actor=client.name)

        try:
            await run_in_threadpool(write)
        except (IntegrityError, DataError) as error:  # DataError: longer than any code there
            raise _unprocessable("target", f"unknown {kind} {body.target!r}") from error
        return body.model_dump()

    add.__name__ = f"add_{kind.replace(' ', '_')}_code"
    return add


for path, kind, writer in (
    ("locations", "location", CrossReferences.map_location),
    ("cost-centers", "cost center", CrossReferences.map_cost_center),
    ("units", "unit", CrossReferences.map_unit),
):
    router.add_api_route(
        f"/cross-references/{path}", _source_route(kind, writer), methods=["POST"], status_code=201
    )
