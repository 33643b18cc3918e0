"""``POST /oauth/token``: the OAuth2 client credentials grant (RFC 6749 §4.4).

The client authenticates with its name as ``client_id`` and its API key as ``client_secret``,
in the form or with HTTP Basic (§2.3.1). The answer is a bearer token of MedBridge
(``governance.tokens``) carrying the requested scopes (permission names), or every permission
the client holds, and its facilities. Errors are RFC 6749 §5.2 JSON: ``invalid_client`` (401,
the same for an unknown client and a wrong secret), ``unsupported_grant_type``,
``invalid_request`` and ``invalid_scope`` (400). Tokens are never cached (``Cache-Control:
no-store``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import access, services
from medbridge.governance.tokens import InvalidToken

router = APIRouter(tags=["oauth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenAnswer(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme, not a secret)
    expires_in: int
    scope: str


class TokenError(BaseModel):
    error: Literal["invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope"]
    error_description: str


def _error(code: str, description: str, status: int = 400) -> JSONResponse:
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="medbridge"'
    return JSONResponse(
        {"error": code, "error_description": description}, status_code=status, headers=headers
    )


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, secret = decoded.partition(":")
    return (unquote(name), unquote(secret)) if sep else None


@router.post(
    "/oauth/token",
    response_model=TokenAnswer,
    responses={400: {"model": TokenError}, 401: {"model": TokenError}},
)
async def token(
    request: Request,
    grant_type: Annotated[str, Form(max_length=64)],
    client_id: Annotated[str | None, Form(max_length=100)] = None,
    client_secret: Annotated[str | None, Form(max_length=200)] = None,
    scope: Annotated[str | None, Form(max_length=2000)] = None,
) -> JSONResponse:
    if grant_type != "client_credentials":
        return _error("unsupported_grant_type", "only client_credentials is offered")
    basic = _basic(request)
    if basic is not None and (client_id or client_secret):
        return _error("invalid_request", "client credentials given twice (Basic and form)")
    name, secret = basic if basic is not None else (client_id, client_secret)
    if not name or not secret:
        return _error("invalid_client", "client_id and client_secret needed", 401)
    client = await run_in_threadpool(services(request).clients.verify_secret, name, secret)
    if client is None:
        return _error("invalid_client", "unknown client or wrong secret", 401)
    try:
        issued = access(request).tokens.issue(client, scope)
    except InvalidToken as error:
        return _error("invalid_scope", str(error))
    answer = TokenAnswer(
        access_token=issued.access_token, expires_in=issued.expires_in, scope=issued.scope
    )
    return JSONResponse(answer.model_dump(), headers=NO_STORE)
