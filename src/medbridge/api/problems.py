"""What an error answer looks like, documented once: every keyed route answers 401, 403, 413
and 429 (``KEYED``), and each route adds the codes only it gives (``answers``). The
OpenAPI document is the contract: schemathesis checks every answer against it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ProblemItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """``detail``: a sentence, or one item per field at fault (as FastAPI's 422 has them)."""

    detail: str | list[ProblemItem]


DESCRIPTIONS = {
    400: "the request cannot be read",
    401: "no credentials, or unknown, expired or forged ones",
    403: "the client lacks the permission, or the data is of another facility",
    404: "not found",
    409: "the state does not allow it (already decided, not failed, not open)",
    413: "the body is over the limit",
    429: "over the client's rate limit or quota (Retry-After says when to come back)",
    502: "the ERP refused",
    503: "unavailable: not configured, or a store or peer cannot be reached; nothing done",
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``codes``, each with the Problem body."""
    return {code: {"model": Problem, "description": DESCRIPTIONS[code]} for code in codes}


KEYED = answers(401, 403, 413, 429)
