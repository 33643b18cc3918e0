"""Lot recall over HTTP (``flows.recall``): ``GET /v1/lots/{code}/{lot}/trace`` (``code``: an
item code or a GTIN of the item or of one of its packs), ``GET /v1/lots/quarantined``, and
``POST /v1/lots/{code}/{lot}/quarantine`` and ``.../release``.

Reading needs ``lots:read``; encounter pseudonyms in a trace need ``encounters:read`` as well
(left out here, and removed by the minimisation middleware besides). A client bound to
facilities reads what happened at their locations; a quarantine spans every facility, so only
a client bound to none may set or release one (``lots:quarantine``). Both are audited with the
client's name.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services, unscoped_only
from medbridge.api.params import PRINTABLE
from medbridge.api.problems import answers
from medbridge.flows import recall
from medbridge.flows.ledger_posting import LedgerPosting
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import recall as recall_store

router = APIRouter(prefix="/v1", tags=["lot recall"])
Reader = Annotated[Principal, Depends(require(Permission.LOTS_READ))]
Keeper = Annotated[Principal, Depends(require(Permission.LOTS_QUARANTINE))]
ItemOrGtin = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=PRINTABLE,
        description="an item code, or a GTIN of the item or of one of its packs",
    ),
]
Lot = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]


class QuarantineRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500, pattern=PRINTABLE)
    """Why, e.g. the supplier's recall notice number."""


class ReleaseRequest(BaseModel):
    note: str | None = Field(default=None, max_length=500, pattern=PRINTABLE)


def _item(request: Request, code: str) -> str:
    try:
        return recall.resolve_item(services(request).masterdata, code)
    except recall.UnknownItem as error:
        raise HTTPException(404, detail=str(error)) from error


@router.get("/lots/quarantined")
async def list_quarantined(request: Request, client: Reader) -> dict[str, Any]:
    """The lots in quarantine now."""

    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            rows = recall_store.quarantines(conn)
        return [
            {
                "item": r["item"],
                "lot": r["lot"],
                "reason": r["reason"],
                "quarantined_by": r["quarantined_by"],
                "quarantined_at": r["quarantined_at"].isoformat(),
            }
            for r in rows
        ]

    return {"items": await run_in_threadpool(query)}


@router.get("/lots/{code}/{lot}/trace", responses=answers(404))
async def get_lot_trace(
    request: Request, client: Reader, code: ItemOrGtin, lot: Lot
) -> dict[str, Any]:
    """Where the lot came from (supplier, purchase order, ship notice, goods receipt), where
    it is on hand, where it went (transfers; dispenses per location, cost center and day),
    its quarantine and the movements the quarantine holds."""
    item = _item(request, code)
    svc = services(request)
    return await run_in_threadpool(
        partial(
            recall.trace,
            svc.engine,
            svc.masterdata,
            item,
            lot,
            with_encounters=client.may(Permission.ENCOUNTERS_READ),
            facilities=client.facilities,
        )
    )


@router.post("/lots/{code}/{lot}/quarantine", responses=answers(404))
async def quarantine_lot(
    request: Request, client: Keeper, code: ItemOrGtin, lot: Lot, body: QuarantineRequest
) -> dict[str, Any]:
    """Quarantine the lot: its dispenses still apply but each opens an URGENT pharmacy task;
    its transfers and receipts are held until it is released. Again: nothing changes."""
    unscoped_only(client, "a lot quarantine")
    item = _item(request, code)
    changed = await run_in_threadpool(
        partial(recall.quarantine, services(request).engine, item, lot, body.reason, client.name)
    )
    return {"item": item, "lot": lot, "status": "quarantined", "changed": changed}


@router.post("/lots/{code}/{lot}/release", responses=answers(404, 409))
async def release_lot(
    request: Request, client: Keeper, code: ItemOrGtin, lot: Lot, body: ReleaseRequest
) -> dict[str, Any]:
    """Release the lot: the movements it held apply now, exactly once, in the order they
    happened (one the ledger refuses now opens a pharmacy task instead)."""
    unscoped_only(client, "a lot quarantine")
    item = _item(request, code)
    svc = services(request)
    posting = LedgerPosting(svc.engine, svc.masterdata, svc.router())
    try:
        released = await run_in_threadpool(
            partial(recall.release, posting, item, lot, client.name, body.note or "")
        )
    except (recall.NotQuarantined, recall.UnresolvableMovement) as error:
        # not in quarantine; or a held movement names master data gone since: nothing changed
        raise HTTPException(409, detail=str(error)) from error
    return {
        "item": item,
        "lot": lot,
        "status": "released",
        "applied": list(released.applied),
        "refused": list(released.refused),
    }
