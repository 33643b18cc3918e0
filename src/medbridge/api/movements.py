"""POST /v1/stock-movements: one movement (a JSON object) or a batch (a JSON array).

The body is read raw and each element validated on its own, so a 422 names the element and the
field at fault (``["body", 3, "item"]``) and nothing of the batch is stored.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import Field, ValidationError

from medbridge.api.auth import SECURITY, authorize, requires, services
from medbridge.bus.port import BusUnavailable
from medbridge.canonical.movements import StockMovement
from medbridge.flows.intake import MovementsOutsideScope, MovementsRejected, Submission
from medbridge.governance.permissions import Permission, Principal
from medbridge.observability.logging import get_logger

router = APIRouter(prefix="/v1", tags=["stock movements"])
log = get_logger(__name__)

MAX_BATCH = 5000


class MovementIn(StockMovement):
    """A stock movement as submitted: the canonical movement plus its delivery identity."""

    idempotency_key: str = Field(min_length=1, max_length=150)
    correlation_id: UUID | None = None


def _problem(loc: list[Any], message: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": message, "type": kind}


def _unprocessable(details: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": details}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@router.post(
    "/stock-movements",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "security": SECURITY,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/MovementIn"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/MovementIn"}},
                        ]
                    }
                }
            },
        },
    },
    responses={
        202: {"description": "durably appended"},
        403: {"description": "a movement outside the client's facilities; nothing stored"},
        422: {"description": "nothing stored"},
        503: {"description": "event log unavailable; nothing stored"},
    },
)
@requires(Permission.MOVEMENTS_WRITE)
async def post_stock_movements(request: Request) -> Response:
    client = await authorize(request, Permission.MOVEMENTS_WRITE)
    raw = await request.body()
    if raw.lstrip()[:1] == b"{":  # one movement: pydantic reads the JSON itself (faster)
        try:
            single = MovementIn.model_validate_json(raw)
        except ValidationError as error:
            return _unprocessable(_invalid(["body"], error))
        return await _submit(request, client, [_submission(single)], listed=False)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return _unprocessable([_problem(["body"], f"invalid JSON: {error}", "json_invalid")])
    if not isinstance(body, list) or not body or len(body) > MAX_BATCH:
        return _unprocessable(
            [_problem(["body"], f"send a movement, or 1 to {MAX_BATCH} of them", "batch_size")]
        )
    submissions, details = [], []
    for index, item in enumerate(body):
        try:
            submissions.append(_submission(MovementIn.model_validate(item)))
        except ValidationError as error:
            details += _invalid(["body", index], error)
    if details:
        return _unprocessable(details)
    return await _submit(request, client, submissions, listed=True)


async def _submit(
    request: Request, client: Principal, submissions: list[Submission], listed: bool
) -> Response:
    """Append ``submissions`` and answer 202, or say why nothing was stored (``listed``:
    they came as a JSON array, so each problem is named by its index)."""

    def at(index: int, field: str) -> list[Any]:
        return ["body", index, field] if listed else ["body", field]

    intake = services(request).intake
    try:
        # validated from memory here, committed with the other callers' by the group commit
        accepted = await intake.submit_async(submissions, f"api/{client.name}", client.facilities)
    except MovementsOutsideScope as refused:
        outside = [
            _problem(at(p.index, p.field), p.message, "outside_facility_scope")
            for p in refused.problems
        ]
        return JSONResponse({"detail": outside}, status_code=status.HTTP_403_FORBIDDEN)
    except MovementsRejected as rejected:
        return _unprocessable(
            [
                _problem(at(p.index, p.field), p.message, "unknown_reference")
                for p in rejected.problems
            ]
        )
    except BusUnavailable as error:
        log.error("intake.unavailable", error=str(error))
        return JSONResponse(
            {"detail": "event log unavailable; nothing stored, retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    results = [
        {
            "idempotency_key": a.idempotency_key,
            "event_id": str(a.event_id),
            "correlation_id": str(a.correlation_id),
            "status": "duplicate" if a.duplicate else "accepted",
        }
        for a in accepted
    ]
    duplicates = sum(a.duplicate for a in accepted)
    answer = {"accepted": len(accepted) - duplicates, "duplicates": duplicates, "results": results}
    return Response(  # orjson: the encoder was a visible share of a single request's time
        orjson.dumps(answer), status_code=status.HTTP_202_ACCEPTED, media_type="application/json"
    )


def _invalid(loc: list[Any], error: ValidationError) -> list[dict[str, Any]]:
    return [
        _problem([*loc, *e["loc"]], e["msg"], e["type"]) for e in error.errors(include_url=False)
    ]


def _submission(movement: MovementIn) -> Submission:
    return Submission(_canonical(movement), movement.idempotency_key, movement.correlation_id)


def _canonical(movement: MovementIn) -> StockMovement:
    """The canonical movement, without validating again (MovementIn already did)."""
    return StockMovement.model_construct(
        **{name: getattr(movement, name) for name in StockMovement.model_fields}
    )
