"""Procure-to-pay over HTTP: ``GET /v1/purchase-orders`` (and one), ``GET /v1/invoices``, and
the receiving dock: ``POST /v1/purchase-orders/{reference}/receipts`` hands a counted shipment
(or its refusal) to the order's workflow: 202, then the workflow records it (ERP goods receipt,
stock, GRNI). A refusal of the whole delivery unwinds what is open of the order. A receipt
naming a line received in full, or an order whose workflow has ended, is a 409 naming the
line (or the order): its workflow would never take it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import refuse_outside, require, services
from medbridge.api.problems import answers
from medbridge.canonical.base import CanonicalModel
from medbridge.flows.workflows import ReceiptRefused, submit_receipt
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import procurement as store

router = APIRouter(prefix="/v1", tags=["procurement"])
Reader = Annotated[Principal, Depends(require(Permission.PROCUREMENT_READ))]
Receiver = Annotated[Principal, Depends(require(Permission.RECEIVING_WRITE))]
Reference = Annotated[str, Path(max_length=64)]


class ReceivedLineIn(CanonicalModel):
    line: int = Field(ge=1, le=100_000)
    quantity: Decimal = Field(gt=0, max_digits=18, decimal_places=6)
    lot: str | None = Field(default=None, min_length=1, max_length=64)
    expiry: date | None = None


class ReceiptIn(CanonicalModel):
    shipment_id: str = Field(min_length=1, max_length=64, pattern=r"^[^:\s]+$")
    lines: tuple[ReceivedLineIn, ...] = Field(min_length=1)
    rejected: bool = False
    """The dock refuses the whole delivery (damaged, wrong goods, cold chain broken)."""
    reason: str | None = Field(default=None, max_length=500)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON gives it: dates as ISO text, amounts as exact decimal text."""
    return {
        k: v.isoformat() if isinstance(v, date) else str(v) if isinstance(v, Decimal) else v
        for k, v in row.items()
    }


def _order(row: dict[str, Any], receipts: list[dict[str, Any]]) -> dict[str, Any]:
    return _plain(row) | {
        "receipts": [
            {
                k: r[k]
                for k in ("reference", "shipment_id", "status", "received_by", "lines", "erp_id")
            }
            for r in receipts
        ]
    }


@router.get("/purchase-orders")
async def list_orders(
    request: Request, client: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> dict[str, Any]:
    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            found = store.orders(conn, facilities=client.facilities, limit=limit)
            return [_order(o, []) for o in found]

    return {"orders": await run_in_threadpool(query)}


@router.get("/purchase-orders/{reference}", responses=answers(404))
async def get_order(request: Request, client: Reader, reference: Reference) -> dict[str, Any]:
    def query() -> dict[str, Any] | None:
        with services(request).engine.connect() as conn:
            row = store.order(conn, reference)
            return None if row is None else _order(row, store.receipts(conn, reference))

    found = await run_in_threadpool(query)
    if found is None:
        raise HTTPException(404, detail=f"no purchase order {reference}")
    refuse_outside(client, [found.get("facility")], f"purchase order {reference}")
    return found


@router.post("/purchase-orders/{reference}/receipts", status_code=202, responses=answers(404, 409))
async def receive(
    request: Request, client: Receiver, reference: Reference, receipt: ReceiptIn
) -> dict[str, Any]:
    if client.scoped:

        def facility() -> str | None:
            with services(request).engine.connect() as conn:
                order = store.order(conn, reference)
            return None if order is None else str(order["facility"])

        found = await run_in_threadpool(facility)
        if found is not None:  # an unknown order is the workflow's 404
            refuse_outside(client, [found], f"purchase order {reference}")

    def submit() -> dict[str, Any]:
        return submit_receipt(
            services(request).engine,
            reference,
            shipment_id=receipt.shipment_id,
            lines=[line.model_dump(mode="json") for line in receipt.lines],
            received_by=client.name,
            rejected=receipt.rejected,
            reason=receipt.reason,
        )

    try:
        accepted = await run_in_threadpool(submit)
    except ReceiptRefused as refused:
        raise HTTPException(
            refused.status,
            detail=[
                {
                    "loc": ["body", *refused.field.split(".")],
                    "msg": str(refused),
                    "type": "receipt_refused",
                }
            ],
        ) from None
    return {"order": reference, "accepted": accepted}


@router.get("/invoices")
async def list_invoices(
    request: Request, client: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> dict[str, Any]:
    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            found = store.invoices(conn, facilities=client.facilities, limit=limit)
            return [_plain(i) for i in found]

    return {"invoices": await run_in_threadpool(query)}
