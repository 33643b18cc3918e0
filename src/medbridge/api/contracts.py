"""Supplier contracts over HTTP: ``GET /v1/contracts`` (by supplier, item, valid on a day),
``GET /v1/contracts/{code}``, ``PUT /v1/contracts/{code}`` (create or change, with price
tiers; audited with the client as actor) and ``GET /v1/contracts/proposals`` (the price
changes partners' 832 catalogs proposed, by status; ``POST .../{id}/reread`` reads a line
reported for review again). Reading needs ``contracts:read``,
writing ``contracts:write``; contracts are every facility's, so a client bound to facilities
is refused (403). Bad input answers 422 naming the field: an unknown supplier, item or unit,
tiers out of order, a validity overlapping another contract of the same supplier, item and
unit (``valid_from`` or ``valid_to``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.api.params import PRINTABLE, QueryCode, RowId
from medbridge.api.problems import answers
from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import Contract, PriceTier, UnitCode
from medbridge.flows.contract_catalog import NotRereadable, ProposalNotFound, ProposalStatus
from medbridge.governance.permissions import Permission, Principal
from medbridge.masterdata.repository import MasterDataError
from medbridge.store import contract_proposals
from medbridge.store.tables import contracts

router = APIRouter(prefix="/v1", tags=["contracts"])
Reader = Annotated[Principal, Depends(require(Permission.CONTRACTS_READ, shared=True))]
Writer = Annotated[Principal, Depends(require(Permission.CONTRACTS_WRITE, shared=True))]
ContractCode = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]
BodyCode = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=PRINTABLE)
]
FIELDS = ("supplier", "item", "unit", "price", "valid_from", "valid_to", "tiers")


class ContractBody(BaseModel):
    """A contract as written: its code is the path's."""

    model_config = ConfigDict(extra="forbid")

    supplier: BodyCode
    item: BodyCode
    unit: UnitCode
    price: Money
    valid_from: date
    valid_to: date | None = None
    minimum_order_quantity: Decimal = Field(
        default=Decimal(1), gt=0, max_digits=18, decimal_places=6
    )
    tiers: list[PriceTier] = Field(default=[], max_length=100)


def view(contract: Contract) -> dict[str, Any]:
    return contract.model_dump(mode="json")


def _unprocessable(field: str, message: str, kind: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", field], "msg": message, "type": kind}])


def _field_of(message: str) -> str:
    """The field a model rule's message names (``tiers: ...``, ``valid_to is before ...``)."""
    text = message.removeprefix("Value error, ")
    return next((f for f in FIELDS if text.startswith(f)), "body")


@router.get("/contracts")
async def list_contracts(
    request: Request,
    _client: Reader,
    supplier: QueryCode = None,
    item: QueryCode = None,
    valid_on: date | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Contracts in code order, with their tiers; ``valid_on``: those valid that day."""

    def query() -> list[dict[str, Any]]:
        svc = services(request)
        with svc.engine.connect() as conn:
            found = svc.masterdata.contracts(conn, None if item is None else [item])
        chosen = [
            c
            for c in found
            if (supplier is None or c.supplier == supplier)
            and (valid_on is None or c.valid_on(valid_on))
        ]
        return [view(c) for c in chosen[:limit]]

    return {"contracts": await run_in_threadpool(query)}


@router.get("/contracts/proposals")
async def list_proposals(
    request: Request,
    _client: Reader,
    status: ProposalStatus | None = None,
    partner: QueryCode = None,
    contract: QueryCode = None,
    item: QueryCode = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """What partners' 832 catalogs proposed, newest first: applied, pending a procurement
    task (``task_id``), decided, unchanged, or reported (unknown item, no contract...)."""

    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            return contract_proposals.listing(
                conn,
                status=None if status is None else status.value,
                partner=partner,
                contract=contract,
                item=item,
                limit=limit,
            )

    return {"proposals": await run_in_threadpool(query)}


@router.post("/contracts/proposals/{proposal_id}/reread", responses=answers(404, 409, 503))
async def reread_proposal(request: Request, client: Writer, proposal_id: RowId) -> dict[str, Any]:
    """Read a catalog line reported for review (unknown item, no contract, no price) again,
    once master data knows it: the report gives way to what the line proposes now (404
    unknown, 409 not a reported line)."""
    svc = services(request)
    catalog = svc.contract_catalog
    if catalog is None:
        raise HTTPException(503, detail="contract catalogs are not configured")

    def act() -> list[dict[str, Any]]:
        ids = catalog.reread(proposal_id, actor=client.name)
        with svc.engine.connect() as conn:
            return [contract_proposals.as_json(contract_proposals.get(conn, i) or {}) for i in ids]

    try:
        return {"proposals": await run_in_threadpool(act)}
    except ProposalNotFound as error:
        raise HTTPException(404, detail=str(error)) from error
    except NotRereadable as error:
        raise HTTPException(409, detail=str(error)) from error


def _find(request: Request, code: str) -> Contract | None:
    svc = services(request)
    with svc.engine.connect() as conn:
        item = conn.execute(
            select(contracts.c.item).where(contracts.c.code == code)
        ).scalar_one_or_none()
        found = [] if item is None else svc.masterdata.contracts(conn, [item])
    return next((c for c in found if c.code == code), None)


@router.get("/contracts/{code}", responses=answers(404))
async def get_contract(request: Request, _client: Reader, code: ContractCode) -> dict[str, Any]:
    found = await run_in_threadpool(_find, request, code)
    if found is None:
        raise HTTPException(404, detail=f"no contract {code}")
    return view(found)


@router.put("/contracts/{code}", responses=answers(404))
async def put_contract(
    request: Request, client: Writer, code: ContractCode, body: ContractBody
) -> dict[str, Any]:
    """Create or change the contract ``code`` (its tiers replaced by the body's)."""
    try:
        contract = Contract(code=code, **body.model_dump())
    except ValidationError as error:
        first = error.errors()[0]
        loc = [str(p) for p in first["loc"]]
        field = loc[0] if loc else _field_of(str(first["msg"]))
        raise _unprocessable(field, str(first["msg"]), str(first["type"])) from error

    def save() -> None:
        svc = services(request)
        with svc.engine.begin() as conn:
            svc.masterdata.save_contract(conn, contract, actor=client.name)

    try:
        await run_in_threadpool(save)
    except MasterDataError as error:
        raise _unprocessable(error.field, str(error), "masterdata") from error
    return view(contract)
