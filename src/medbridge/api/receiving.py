"""Receiving by scan: ``POST /v1/receiving/scans`` takes a dock session's GS1 scans (GS1-128
and DataMatrix element strings, raw with or without a symbology identifier, or in the
parenthesised form) against a ship notice (``shipment_id``) or a purchase order (``order``),
and answers per scan (matched, substituted, over, unknown, or a typed error with its index)
and per line (expected, received, over, remaining, short when ``complete``). What it receives
goes through the order's receiving workflow (ERP goods receipt, stock, GRNI), once: see
``medbridge.flows.scan_receiving`` for the frozen idempotency keys. A resend changes nothing
and answers the same report."""

from __future__ import annotations

from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import Field, ValidationError, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.api.problems import answers
from medbridge.canonical.base import CanonicalModel
from medbridge.connectors.gs1 import Gs1Config
from medbridge.connectors.gs1.codec import MAX_SCAN_CHARS
from medbridge.flows.scan_receiving import Scan, ScanRefused, ScanSession, receive_scans
from medbridge.governance.permissions import Permission, Principal

router = APIRouter(prefix="/v1", tags=["procurement"])  # "receipts at the dock"
Receiver = Annotated[Principal, Depends(require(Permission.RECEIVING_WRITE))]

NAME = r"^[A-Za-z0-9._-]+$"
"""Session, dock and scan ids: they are parts of idempotency keys."""
MAX_SCANS = 2000


ScanData = Annotated[str, Field(min_length=1, max_length=MAX_SCAN_CHARS, pattern=r"^[^\x00]*$")]
"""No NUL: no scanner sends one, and PostgreSQL text cannot hold it."""


class ScanIn(CanonicalModel):
    data: ScanData
    """The scanner's string as transmitted (GS as \\u001d, FNC1), or the (AI)value form."""
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=NAME)
    """The terminal's id of this scan within the session (default: its index in ``scans``)."""


class ScansIn(CanonicalModel):
    shipment_id: str | None = Field(default=None, min_length=1, max_length=64)
    order: str | None = Field(default=None, min_length=1, max_length=64)
    session: str = Field(min_length=1, max_length=64, pattern=NAME)
    dock: str | None = Field(default=None, min_length=1, max_length=64, pattern=NAME)
    scans: list[ScanIn | ScanData] = Field(min_length=1, max_length=MAX_SCANS)
    complete: bool = False
    """The session is over: what is still expected is reported short."""
    wedge_separator: str | None = Field(default=None, min_length=1, max_length=1)
    """The character a keyboard-wedge scanner sends for GS (FNC1), e.g. ``|``."""

    @field_validator("wedge_separator")
    @classmethod
    def _separator(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Gs1Config(separator_substitutes=(value,))
            except ValidationError as error:
                raise ValueError(error.errors(include_url=False)[0]["msg"]) from None
        return value

    @model_validator(mode="after")
    def _target(self) -> Self:
        if self.shipment_id is None and self.order is None:
            raise ValueError("name a shipment_id (ship notice) or an order (purchase order)")
        return self


def _scan(value: ScanIn | str) -> Scan:
    if isinstance(value, str):
        return Scan(value)
    return Scan(value.data, value.id)


@router.post("/receiving/scans", responses=answers(404, 409))
async def receive_by_scan(request: Request, client: Receiver, body: ScansIn) -> dict[str, Any]:
    session = ScanSession(
        session=body.session,
        scans=[_scan(s) for s in body.scans],
        order=body.order,
        shipment_id=body.shipment_id,
        dock=body.dock,
        complete=body.complete,
    )
    svc = services(request)

    def run() -> dict[str, Any]:
        config = Gs1Config(
            separator_substitutes=(body.wedge_separator,) if body.wedge_separator else ()
        )
        return receive_scans(svc.engine, svc.masterdata, session, client, config=config)

    try:
        return await run_in_threadpool(run)
    except ScanRefused as refused:
        if refused.status in (403, 404, 409):
            raise HTTPException(refused.status, detail=str(refused)) from None
        raise HTTPException(
            refused.status,
            detail=[{"loc": ["body", refused.field], "msg": str(refused), "type": "scan_refused"}],
        ) from None
