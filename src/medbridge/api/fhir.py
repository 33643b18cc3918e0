"""FHIR R4 REST endpoints: ``POST /fhir/r4/{MedicationDispense|SupplyDelivery|Procedure}``,
``POST /fhir/r4/Bundle`` and ``POST /fhir/r4`` (a batch or transaction Bundle).

Bodies in ``application/fhir+json``, ``application/json`` or ``application/fhir+xml``; answers
in the same format (or as ``Accept`` asks): 201/200 with an OperationOutcome, a batch- or
transaction-response Bundle, or 4xx/5xx with an OperationOutcome (never FastAPI's
``{"detail": ...}``, so that a FHIR client can read every answer). The work is the FHIR
connector's (``connectors/fhir``); this module reads the body, authenticates, and provides the
all-or-nothing intake a transaction Bundle needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import api_key_header, bearer, require, requires, services
from medbridge.api.services import Services
from medbridge.bus.port import BusError
from medbridge.canonical.inbound import InboundOutcome, InboundReceipt, UnresolvedCode
from medbridge.connectors.fhir import FhirConfig, FhirReceiver
from medbridge.connectors.fhir.codec import WireFormat, media_format, negotiate, render
from medbridge.connectors.fhir.errors import FhirError, Issue, PayloadTooLarge, operation_outcome
from medbridge.connectors.fhir.inbound import AtomicResult, SourceMessage
from medbridge.flows.intake import MovementsOutsideScope, MovementsRejected, Submission
from medbridge.governance.permissions import Permission, Principal
from medbridge.observability.logging import get_logger
from medbridge.settings import fhir_config
from medbridge.store import exceptions as exception_store

router = APIRouter(prefix="/fhir/r4", tags=["FHIR R4"])
log = get_logger(__name__)

_integration = require(Permission.MOVEMENTS_WRITE)
CONSUMED = ("MedicationDispense", "SupplyDelivery", "Procedure")
_FHIR_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {"schema": {"type": "object"}},
            "application/fhir+xml": {"schema": {"type": "string"}},
        },
    }
}


@requires(Permission.MOVEMENTS_WRITE)
async def fhir_client(
    request: Request,
    key: Annotated[str | None, Depends(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal | HTTPException:
    """The client (``movements:write``), or the refusal (answered as an OperationOutcome)."""
    try:
        return await _integration(request, key, credentials)
    except HTTPException as refused:
        return refused


class AtomicIntake:
    """All-or-nothing intake of several resources (a transaction Bundle): every code must
    resolve, then all movements are appended in one commit, each under the same key as if its
    resource had come alone (``<key>#<n>``), so a resend of one of them changes nothing."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def receive_all(self, messages: Sequence[SourceMessage], *, source: str) -> AtomicResult:
        unresolved: list[tuple[int, UnresolvedCode]] = []
        owners: list[int] = []
        submissions: list[Submission] = []
        with self.svc.engine.connect() as conn:
            for n, message in enumerate(messages):
                parked = exception_store.by_key(conn, message.idempotency_key)
                if parked is not None and parked.status == "open":
                    why = f"already parked as exception #{parked.id}: replay or discard it first"
                    unresolved.append((n, UnresolvedCode(-1, "resource", "", why)))
                    continue
                movements, problems = self.svc.inbound.resolver.resolve_current(message.drafts)
                unresolved += [(n, p) for p in problems]
                for i, movement in enumerate(movements):
                    owners.append(n)
                    submissions.append(Submission(movement, f"{message.idempotency_key}#{i}"))
        if unresolved:
            return AtomicResult(unresolved=tuple(unresolved))
        try:
            accepted = self.svc.intake.submit(submissions, source, self.svc.inbound.scope(source))
        except MovementsOutsideScope as refused:
            return AtomicResult(
                unresolved=tuple(
                    (owners[p.index], UnresolvedCode(-1, p.field, "", p.message))
                    for p in refused.problems
                ),
                refused=True,
            )
        except MovementsRejected as rejected:
            return AtomicResult(
                unresolved=tuple(
                    (owners[p.index], UnresolvedCode(-1, p.field, "", p.message))
                    for p in rejected.problems
                )
            )
        receipts = []
        for n in range(len(messages)):
            mine = [a for a, owner in zip(accepted, owners, strict=True) if owner == n]
            outcome = (
                InboundOutcome.DUPLICATE
                if all(a.duplicate for a in mine)
                else InboundOutcome.ACCEPTED
            )
            receipts.append(InboundReceipt(outcome, tuple(a.event_id for a in mine)))
        return AtomicResult(receipts=tuple(receipts))


def _config(request: Request) -> FhirConfig:
    """Injected by the composition root (``app.state.fhir_config``), else from the
    environment and the config file, read once."""
    config: FhirConfig | None = getattr(request.app.state, "fhir_config", None)
    if config is None:
        config = fhir_config()
        request.app.state.fhir_config = config
    return config


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body over the limit of {limit} bytes")
    return bytes(body)


def _outcome(status: int, code: str, text: str, fmt: WireFormat, **headers: str) -> Response:
    body = operation_outcome([Issue("error", code, text)])
    return Response(render(body, fmt), status, headers=headers, media_type=fmt.media_type)


async def _handle(
    request: Request, client: Principal | HTTPException, expected: str | None
) -> Response:
    content_type = request.headers.get("content-type")
    try:
        request_format = media_format(content_type)[0]
    except FhirError:
        request_format = WireFormat.JSON
    fmt = negotiate(request.headers.get("accept"), request_format)
    if isinstance(client, HTTPException):
        code = "login" if client.status_code == 401 else "forbidden"
        return _outcome(client.status_code, code, str(client.detail), fmt, **(client.headers or {}))
    try:
        config = _config(request)
    except ValidationError as error:
        fields = ", ".join(str(e["loc"][0]) for e in error.errors() if e["loc"])
        log.error("fhir.misconfigured", fields=fields)
        return _outcome(503, "exception", f"FHIR connector misconfigured: {fields}", fmt)
    svc = services(request)
    receiver = FhirReceiver(svc.inbound, AtomicIntake(svc), config)
    try:
        raw = await _body(request, config.max_body_bytes)
        answer = await run_in_threadpool(
            receiver.handle, raw, content_type, client=client.name, expected=expected
        )
    except FhirError as error:
        answer_body, status, headers = error.to_operation_outcome(), error.status, {}
    except (BusError, OperationalError, InterfaceError) as error:
        log.error("fhir.store_unavailable", error_type=type(error).__name__)
        text = "store unavailable: nothing stored, send again"
        return _outcome(503, "transient", text, fmt, **{"Retry-After": "5"})
    except Exception as error:  # the sender must get an answer; the message may carry PHI
        log.error("fhir.internal_error", error_type=type(error).__name__)
        return _outcome(500, "exception", "internal error: nothing is known to be stored", fmt)
    else:
        answer_body, status, headers = answer.body, answer.status, dict(answer.headers)
        if "Location" in headers:
            headers["Location"] = (
                f"{str(request.base_url).rstrip('/')}/fhir/r4/{headers['Location']}"
            )
    return Response(render(answer_body, fmt), status, headers=headers, media_type=fmt.media_type)


def _endpoint(expected: str | None) -> Callable[..., Awaitable[Response]]:
    async def endpoint(
        request: Request, client: Annotated[Principal | HTTPException, Depends(fhir_client)]
    ) -> Response:
        return await _handle(request, client, expected)

    endpoint.__name__ = f"post_{(expected or 'base').lower()}"
    return endpoint


_OUTCOME = {
    "application/fhir+json": {"schema": {"type": "object"}},
    "application/fhir+xml": {"schema": {"type": "string"}},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": _OUTCOME}
    for code, text in (
        (201, "applied, or parked for review (OperationOutcome says which)"),
        (200, "duplicate / nothing to apply / batch- or transaction-response"),
        (400, "not FHIR R4 (OperationOutcome names the version or the path)"),
        (401, "no, unknown or expired credentials"),
        (403, "no movements:write, or stock of a facility the client is not bound to"),
        (413, "over the body or Bundle size limit"),
        (415, "neither application/fhir+json nor application/fhir+xml"),
        (422, "valid R4, but not a movement MedBridge can read"),
        (429, "over the client's rate limit (Retry-After)"),
        (500, "an internal error: nothing is known to be stored"),
        (503, "the store is unavailable: nothing stored, send again"),
    )
}
for _type in (*CONSUMED, "Bundle"):
    router.add_api_route(
        f"/{_type}",
        _endpoint(_type),
        methods=["POST"],
        openapi_extra=_FHIR_BODY,
        responses=_RESPONSES,
        summary=f"Submit a FHIR R4 {_type}",
        deprecated=_type == "Bundle",  # batch and transaction Bundles go to the base URL
    )
router.add_api_route(
    "",
    _endpoint(None),
    methods=["POST"],
    openapi_extra=_FHIR_BODY,
    responses=_RESPONSES,
    summary="Submit a FHIR R4 batch or transaction Bundle",
)
