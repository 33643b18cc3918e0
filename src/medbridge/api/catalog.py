"""``GET /v1/catalog`` (every API and event stream: version, owner, status, deprecation) and
``GET /v1/catalog/asyncapi.json`` (the AsyncAPI 3.0 document of the event streams)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

import medbridge
from medbridge.api.auth import require
from medbridge.governance import catalog
from medbridge.governance.permissions import Permission, Principal

router = APIRouter(prefix="/v1", tags=["catalog"])


@dataclass(frozen=True)
class BusLayout:
    """Where the events are (``app.state.bus_layout``, set by the composition root)."""

    subject_prefix: str
    partitions: int


Reader = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]


@router.get("/catalog")
async def get_catalog(request: Request, _client: Reader) -> dict[str, Any]:
    return catalog.catalog(request.app.openapi())


@router.get("/catalog/asyncapi.json")
async def get_asyncapi(request: Request, _client: Reader) -> dict[str, Any]:
    bus: BusLayout = request.app.state.bus_layout
    return catalog.asyncapi(medbridge.__version__, bus.subject_prefix, bus.partitions)
