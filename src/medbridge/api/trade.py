"""Trading partners over HTTP: ``POST /v1/edi/x12`` (one X12 interchange in, its 997 out),
``POST /cxml`` (one cXML request in, a cXML Response out) and ``GET /v1/trade-documents``.

``/v1/edi/x12`` needs the ``trade:write`` permission (every /v1 route names its own); who the
partner it is comes from the interchange's ISA sender, which must be configured. ``/cxml``
authenticates the way cXML does, by the Sender credential and its SharedSecret in the
document (procurement networks cannot send our API key), so it lives outside /v1. The work
is the exchanges' (``flows.x12_exchange``, ``flows.cxml_exchange``); this module reads
bodies and answers.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.api.problems import KEYED, Problem, answers
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import trade as store

router = APIRouter(tags=["trading partners"])
Integration = Annotated[Principal, Depends(require(Permission.TRADE_WRITE, shared=True))]
Reader = Annotated[Principal, Depends(require(Permission.TRADE_READ, shared=True))]
X12_MEDIA = "application/edi-x12"
_RAW_BODY = {
    "requestBody": {"required": True, "content": {X12_MEDIA: {"schema": {"type": "string"}}}}
}
_XML_BODY = {
    "requestBody": {"required": True, "content": {"text/xml": {"schema": {"type": "string"}}}}
}
_TEXT = {"schema": {"type": "string"}}
_X12_OWN: dict[int | str, dict[str, Any]] = {
    200: {"description": "the 997", "content": {X12_MEDIA: _TEXT}},
    400: {
        "description": "no transaction set accepted (the 997 says why), or an unusable envelope",
        "content": {X12_MEDIA: _TEXT, "text/plain": _TEXT},
    },
    403: {
        "model": Problem,
        "description": "an ISA sender that is no trading partner (text), or no permission",
        "content": {"text/plain": _TEXT},
    },
    413: {
        "model": Problem,
        "description": "over the interchange size limit",
        "content": {"text/plain": _TEXT},
    },
}
_X12_ANSWERS = _X12_OWN | answers(401, 429, 503)
_CXML_STATUS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"text/xml": _TEXT}}
    for code, text in (
        (200, "a cXML Response, Status 200"),
        (400, "not cXML, or a request MedBridge cannot read (the Status says what)"),
        (401, "the Sender credential or shared secret is wrong"),
        (406, "a value MedBridge cannot accept"),
        (450, "a request MedBridge does not take"),
        (500, "MedBridge could not render its answer"),
    )
}
_CXML_TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": "over the document size limit"}
}
_CXML_ANSWERS = _CXML_STATUS | _CXML_TOO_LARGE | answers(503)


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` (never read whole)."""
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise HTTPException(413, detail=f"body exceeds {limit} bytes")
    return bytes(received)


@router.post(
    "/v1/edi/x12", openapi_extra=_RAW_BODY, response_class=Response, responses=_X12_ANSWERS
)
async def post_x12(request: Request, client: Integration) -> Response:
    """One X12 interchange; the answer is its 997 (``application/edi-x12``): 200 when at
    least one transaction set was accepted, 400 when none was (the 997 says why), 400 with a
    text reason when the envelope itself is unusable, 403 for an unknown sender."""
    svc = services(request)
    if svc.x12 is None:
        raise HTTPException(503, detail="X12 is not configured")
    raw = await _body(request, svc.x12.max_bytes)
    answer = await run_in_threadpool(partial(svc.x12.receive, raw, client=client.name))
    media = X12_MEDIA if answer.body.startswith("ISA") else "text/plain"
    headers = {"X-MedBridge-Duplicate": "true"} if answer.duplicate else {}
    return Response(answer.body, status_code=answer.status, media_type=media, headers=headers)


@router.post("/cxml", openapi_extra=_XML_BODY, response_class=Response, responses=_CXML_ANSWERS)
async def post_cxml(request: Request) -> Response:
    """One cXML request (ConfirmationRequest, ShipNoticeRequest, InvoiceDetailRequest),
    authenticated by its Sender credential; answered with a cXML Response whose Status code
    is also the HTTP status (200, 400, 401, 406, 450)."""
    svc = services(request)
    if svc.cxml is None:
        raise HTTPException(503, detail="cXML is not configured")
    raw = await _body(request, svc.cxml.max_bytes)
    answer = await run_in_threadpool(svc.cxml.receive, raw)
    return Response(answer.body, status_code=answer.status, media_type="text/xml")


@router.get("/v1/trade-documents", responses=KEYED)
async def get_trade_documents(
    request: Request,
    _client: Reader,
    partner: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=20)] = None,
    number: Annotated[str | None, Query(max_length=35)] = None,
    direction: Annotated[str | None, Query(pattern="^(in|out)$")] = None,
    correlation_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Documents exchanged with trading partners, oldest first."""

    def query() -> list[store.TradeDocumentRow]:
        with services(request).engine.connect() as conn:
            return store.find_documents(
                conn,
                partner=partner,
                kind=kind,
                number=number,
                direction=direction,
                correlation_id=correlation_id,
                limit=limit,
            )

    rows = await run_in_threadpool(query)
    return {
        "items": [
            {
                "partner": r.partner,
                "direction": r.direction,
                "wire_format": r.wire_format,
                "kind": r.kind,
                "number": r.number,
                "idempotency_key": r.idempotency_key,
                "correlation_id": r.correlation_id,
                "recorded_at": r.recorded_at.isoformat(),
                "document": r.document,
            }
            for r in rows
        ]
    }
