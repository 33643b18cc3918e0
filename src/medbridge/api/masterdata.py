"""Master data: items, locations, cost centers and suppliers, one by one (GET, PUT) and the
bulk import of items (the layout of ``masterdata.importer``).

Reads need ``masterdata:read``; a client bound to facilities sees items and suppliers (every
facility's catalog) but only its facilities' locations and cost centers. Writes need
``masterdata:write`` and are refused to a client bound to facilities: master data belongs to
no one facility. Every write is audited with the client as actor; what a write refers to (a
unit, a parent location, a cost center, a facility) must exist, else 422 naming the field."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import refuse_outside, require, services
from medbridge.api.params import PRINTABLE, QueryCode
from medbridge.api.problems import answers
from medbridge.canonical.codes import CodeError, normalize_gtin, normalize_ndc
from medbridge.canonical.masterdata import (
    CodeSystem,
    CostCenter,
    Item,
    ItemCategory,
    ItemCode,
    Location,
    LocationKind,
    Supplier,
    SupplierStatus,
    UnitCode,
)
from medbridge.governance.permissions import Permission, Principal
from medbridge.masterdata import listing
from medbridge.masterdata.importer import import_items
from medbridge.masterdata.repository import MasterDataError
from medbridge.masterdata.tabular import ImportRejected

router = APIRouter(prefix="/v1", tags=["master data"])
Reader = Annotated[Principal, Depends(require(Permission.MASTERDATA_READ))]
Writer = Annotated[Principal, Depends(require(Permission.MASTERDATA_WRITE, shared=True))]

PathCode = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=PRINTABLE)]
CodeText = Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE)]

MAX_IMPORT_BYTES = 64 * 1024 * 1024
"""The largest file ``POST /v1/items/import`` reads (the CLI reads any size)."""


def _unprocessable(field: str, message: str, where: str = "body") -> HTTPException:
    return HTTPException(
        422, detail=[{"loc": [where, field], "msg": message, "type": "value_error"}]
    )


def _invalid(error: ValidationError, fallback: str) -> HTTPException:
    """A canonical model's refusal as the API's 422, each problem naming its field."""
    detail = [
        {
            # the code is the path's (a blank one strips to nothing); the rest the body's
            "loc": ["path" if e["loc"][:1] == ("code",) else "body", *(e["loc"] or (fallback,))],
            "msg": e["msg"],
            "type": "value_error",
        }
        for e in error.errors()
    ]
    return HTTPException(422, detail=detail)


def _page(found: list[dict[str, Any]], after: str | None) -> dict[str, Any]:
    return {"items": found, "next": after}


async def _write(request: Request, fn: Any) -> Any:
    """Run ``fn(conn)`` in one transaction; what it refers to that is unknown is a 422."""
    svc = services(request)

    def run() -> Any:
        with svc.engine.begin() as conn:
            return fn(conn)

    try:
        return await run_in_threadpool(run)
    except MasterDataError as error:
        raise _unprocessable(error.field, str(error)) from error
    except (IntegrityError, DataError) as error:  # a concurrent change of what it refers to
        raise _unprocessable("code", f"refused by the database: {error.orig}") from error


# --- items ---------------------------------------------------------------------------------


class PackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: UnitCode
    factor: Decimal = Field(gt=0, max_digits=18, decimal_places=6)
    gtin: str | None = Field(default=None, pattern=r"^[0-9]{8,14}$")


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: CodeSystem
    code: CodeText
    issuer: CodeText | None = None


class ItemIn(BaseModel):
    """An item as it must be: packs not listed are removed; codes are added to its
    cross-references (``DELETE /v1/cross-references/items`` removes one)."""

    model_config = ConfigDict(extra="forbid")
    name: Text
    category: ItemCategory
    base_unit: UnitCode
    strength: Annotated[str, Field(max_length=64, pattern=PRINTABLE)] | None = None
    packs: list[PackIn] = Field(default_factory=list, max_length=100)
    codes: list[CodeIn] = Field(default_factory=list, max_length=100)


@router.get("/items")
async def list_items(
    request: Request,
    _client: Reader,
    code: QueryCode = None,
    ndc: QueryCode = None,
    gtin: QueryCode = None,
    after: QueryCode = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Items by code, a page at a time (``next``: the ``after`` of the next page); ``ndc``
    (dashed or 11 digits) and ``gtin`` find the item carrying it (a pack's GTIN too)."""
    try:
        wanted_ndc = normalize_ndc(ndc) if ndc is not None else None
    except CodeError as error:
        raise _unprocessable("ndc", str(error), "query") from error
    try:
        wanted_gtin = normalize_gtin(gtin) if gtin is not None else None
    except CodeError as error:
        raise _unprocessable("gtin", str(error), "query") from error

    def query() -> tuple[list[dict[str, Any]], str | None]:
        with services(request).engine.connect() as conn:
            return listing.item_page(
                conn, after=after, limit=limit, code=code, ndc=wanted_ndc, gtin=wanted_gtin
            )

    return _page(*await run_in_threadpool(query))


@router.get("/items/{code}", responses=answers(404))
async def get_item(request: Request, _client: Reader, code: PathCode) -> dict[str, Any]:
    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            return listing.item_views(conn, [code])

    found = await run_in_threadpool(query)
    if not found:
        raise HTTPException(404, detail=f"no item {code}")
    return found[0]


@router.put("/items/{code}", responses={201: {"description": "created"}})
async def put_item(
    request: Request, response: Response, client: Writer, code: PathCode, body: ItemIn
) -> dict[str, Any]:
    """Create or replace an item (audited, actor: the client)."""
    try:
        item = Item(
            code=code,
            name=body.name,
            category=body.category,
            base_unit=body.base_unit,
            strength=body.strength,
            packs=[p.model_dump() for p in body.packs],
        )
    except ValidationError as error:
        raise _invalid(error, "packs") from error
    codes: list[ItemCode] = []
    for index, given in enumerate(body.codes):
        try:
            codes.append(ItemCode(**given.model_dump()))
        except ValidationError as error:
            msg = "; ".join(e["msg"] for e in error.errors())
            raise HTTPException(
                422,
                detail=[{"loc": ["body", "codes", index], "msg": msg, "type": "value_error"}],
            ) from error
    item = item.model_copy(update={"codes": tuple(codes)})
    repo = services(request).masterdata

    def write(conn: Any) -> tuple[bool, list[dict[str, Any]]]:
        existed = bool(listing.item_views(conn, [item.code]))
        listing.check_item(conn, item)
        repo.save_item(conn, item, actor=client.name)
        return existed, listing.item_views(conn, [item.code])

    existed, view = await _write(request, write)
    return _created(response, existed, view[0])


@router.post(
    "/items/import",
    responses=answers(413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        }
    },
)
async def import_items_route(
    request: Request,
    client: Writer,
    dry_run: bool = False,
    name: Annotated[str, Query(min_length=1, max_length=200, pattern=PRINTABLE)] = "upload.csv",
) -> dict[str, Any]:
    """A whole item file (CSV, or XLSX), all or nothing: the counts of new, changed and
    unchanged items, or 422 listing every problem (``loc``: body, row, column; the header
    is row 1). ``dry_run``: validate and count, write nothing."""
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_IMPORT_BYTES:
            raise HTTPException(413, detail=f"body exceeds {MAX_IMPORT_BYTES} bytes")
    run = partial(
        import_items,
        services(request).engine,
        name,
        bytes(received),
        actor=client.name,
        dry_run=dry_run,
    )
    try:
        report = await run_in_threadpool(run)
    except ImportRejected as error:
        detail: list[dict[str, Any]] = [
            {"loc": ["body", p.row, p.column], "msg": p.message, "type": "value_error"}
            for p in error.problems
        ]
        if error.total > len(error.problems):
            detail.append(
                {
                    "loc": ["body"],
                    "msg": f"and {error.total - len(error.problems)} more problems",
                    "type": "value_error",
                }
            )
        raise HTTPException(422, detail=detail) from error
    return report.as_dict()


# --- locations, cost centers, suppliers ---------------------------------------------------


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text
    kind: LocationKind
    parent: CodeText | None = None
    cost_center: CodeText | None = None


class CostCenterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text
    facility: CodeText


class SupplierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text
    status: SupplierStatus = SupplierStatus.ACTIVE
    lead_time_days: int = Field(default=2, ge=0, le=3650)


@router.get("/locations")
async def list_locations(
    request: Request,
    client: Reader,
    kind: LocationKind | None = None,
    facility: QueryCode = None,
    parent: QueryCode = None,
    after: QueryCode = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Locations by code (a client bound to facilities: of those only)."""

    def query() -> tuple[list[dict[str, Any]], str | None]:
        with services(request).engine.connect() as conn:
            return listing.row_page(
                conn,
                listing.locations,
                after=after,
                limit=limit,
                equal={
                    "kind": kind.value if kind else None,
                    "facility": facility,
                    "parent": parent,
                },
                facilities=client.facilities,
            )

    return _page(*await run_in_threadpool(query))


@router.get("/locations/{code}", responses=answers(404))
async def get_location(request: Request, client: Reader, code: PathCode) -> dict[str, Any]:
    return await _get_one(request, client, listing.locations, code, "location")


@router.put("/locations/{code}", responses={201: {"description": "created"}})
async def put_location(
    request: Request, response: Response, client: Writer, code: PathCode, body: LocationIn
) -> dict[str, Any]:
    """Create or replace a location; its facility follows from its parent."""
    try:
        location = Location(code=code, **body.model_dump())
    except ValidationError as error:
        raise _invalid(error, "parent") from error
    repo = services(request).masterdata

    def write(conn: Any) -> tuple[bool, dict[str, Any] | None]:
        existed = listing.one(conn, listing.locations, location.code) is not None
        listing.check_location(conn, location)
        repo.save_location(conn, location, actor=client.name)
        return existed, listing.one(conn, listing.locations, location.code)

    return _created(response, *await _write(request, write))


@router.get("/cost-centers")
async def list_cost_centers(
    request: Request,
    client: Reader,
    facility: QueryCode = None,
    after: QueryCode = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Cost centers by code (a client bound to facilities: of those only)."""

    def query() -> tuple[list[dict[str, Any]], str | None]:
        with services(request).engine.connect() as conn:
            return listing.row_page(
                conn,
                listing.cost_centers,
                after=after,
                limit=limit,
                equal={"facility": facility},
                facilities=client.facilities,
            )

    return _page(*await run_in_threadpool(query))


@router.get("/cost-centers/{code}", responses=answers(404))
async def get_cost_center(request: Request, client: Reader, code: PathCode) -> dict[str, Any]:
    return await _get_one(request, client, listing.cost_centers, code, "cost center")


@router.put("/cost-centers/{code}", responses={201: {"description": "created"}})
async def put_cost_center(
    request: Request, response: Response, client: Writer, code: PathCode, body: CostCenterIn
) -> dict[str, Any]:
    """Create or replace a cost center of a known facility."""
    try:
        center = CostCenter(code=code, **body.model_dump())
    except ValidationError as error:
        raise _invalid(error, "code") from error
    repo = services(request).masterdata

    def write(conn: Any) -> tuple[bool, dict[str, Any] | None]:
        existed = listing.one(conn, listing.cost_centers, center.code) is not None
        listing.check_cost_center(conn, center)
        repo.save_cost_center(conn, center, actor=client.name)
        return existed, listing.one(conn, listing.cost_centers, center.code)

    return _created(response, *await _write(request, write))


@router.get("/suppliers")
async def list_suppliers(
    request: Request,
    _client: Reader,
    status: SupplierStatus | None = None,
    after: QueryCode = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    def query() -> tuple[list[dict[str, Any]], str | None]:
        with services(request).engine.connect() as conn:
            return listing.row_page(
                conn,
                listing.suppliers,
                after=after,
                limit=limit,
                equal={"status": status.value if status else None},
            )

    return _page(*await run_in_threadpool(query))


@router.get("/suppliers/{code}", responses=answers(404))
async def get_supplier(request: Request, client: Reader, code: PathCode) -> dict[str, Any]:
    return await _get_one(request, client, listing.suppliers, code, "supplier")


@router.put("/suppliers/{code}", responses={201: {"description": "created"}})
async def put_supplier(
    request: Request, response: Response, client: Writer, code: PathCode, body: SupplierIn
) -> dict[str, Any]:
    try:
        supplier = Supplier(code=code, **body.model_dump())
    except ValidationError as error:
        raise _invalid(error, "code") from error
    repo = services(request).masterdata

    def write(conn: Any) -> tuple[bool, dict[str, Any] | None]:
        existed = listing.one(conn, listing.suppliers, supplier.code) is not None
        repo.save_supplier(conn, supplier, actor=client.name)
        return existed, listing.one(conn, listing.suppliers, supplier.code)

    return _created(response, *await _write(request, write))


async def _get_one(
    request: Request, client: Principal, table: Any, code: str, what: str
) -> dict[str, Any]:
    def query() -> dict[str, Any] | None:
        with services(request).engine.connect() as conn:
            return listing.one(conn, table, code)

    found = await run_in_threadpool(query)
    if found is None:
        raise HTTPException(404, detail=f"no {what} {code}")
    if "facility" in found:
        refuse_outside(client, [found["facility"]], f"the {what} {code}")
    return found


def _created(response: Response, existed: bool, view: dict[str, Any] | None) -> dict[str, Any]:
    if not existed:
        response.status_code = 201
    assert view is not None  # written in the same transaction
    return view
