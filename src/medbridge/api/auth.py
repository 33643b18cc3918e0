"""Who calls, and whether they may: every keyed route declares the one permission it needs
with ``require(Permission.X)``.

A caller proves who it is with an API key (``X-API-Key``) or an OAuth2 bearer token
(``Authorization: Bearer ...``, from ``POST /oauth/token`` or the trusted external issuer).
Then, in this order:

- 401 (``WWW-Authenticate`` naming both schemes) without valid credentials;
- 429 with ``Retry-After`` when the client is over its rate limit or quota;
- 403 when it lacks the permission (the message names it and the client).

The principal is left in ``request.state.client`` for the route (its name is the actor of what
it changes; its facilities scope what it reads and writes, see ``FacilityScope``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from medbridge.api.services import Services
from medbridge.governance.limits import RateLimits
from medbridge.governance.minimisation import DataPolicy
from medbridge.governance.permissions import Permission, Principal
from medbridge.governance.tokens import InvalidToken, TokenAuthority

_F = TypeVar("_F", bound=Callable[..., Any])

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
bearer = HTTPBearer(auto_error=False, description="a token from POST /oauth/token")
CHALLENGE = 'ApiKey, Bearer realm="medbridge"'


@dataclass(frozen=True)
class Access:
    """What authentication needs besides the clients: the token authority and the limits."""

    tokens: TokenAuthority
    limits: RateLimits
    data: DataPolicy = field(default_factory=DataPolicy)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def access(request: Request) -> Access:
    found: Access = request.app.state.access
    return found


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": CHALLENGE}
    )


async def authenticate(
    request: Request, key: str | None, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller's principal (401 without valid credentials, 429 over its limits)."""
    principal: Principal | None
    if key:
        clients = services(request).clients
        known, principal = clients.known(key)
        if not known:  # a query: on a worker thread, never on the event loop
            principal = await run_in_threadpool(clients.authenticate, key)
        if principal is None:
            raise unauthorized("unknown or revoked API key (header X-API-Key)")
    elif credentials is not None:
        try:
            principal = access(request).tokens.verify(credentials.credentials)
        except InvalidToken as error:
            raise unauthorized(str(error)) from error
    else:
        raise unauthorized("credentials needed: header X-API-Key, or Authorization: Bearer")
    refused = access(request).limits.hit(principal.name)
    if refused is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"client {principal.name} is over its limit of {refused.limit}",
            headers={"Retry-After": str(refused.retry_after)},
        )
    request.state.client = principal
    return principal


def require(permission: Permission, *, shared: bool = False) -> Callable[..., Awaitable[Principal]]:
    """The dependency of a route that needs ``permission``. ``shared``: what the route reads or
    changes belongs to every facility (master data, dead letters...), so a client bound to
    facilities is refused (403)."""

    async def dependency(
        request: Request,
        key: Annotated[str | None, Depends(api_key_header)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        return permit(await authenticate(request, key, credentials), permission, shared)

    dependency.__name__ = f"require_{permission.name.lower()}"
    return requires(permission, shared=shared)(dependency)


def permit(principal: Principal, permission: Permission, shared: bool = False) -> Principal:
    """``principal`` if it holds ``permission`` (and, for a ``shared`` resource, is bound to
    no facility), else 403."""
    if not principal.may(permission):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"client {principal.name} lacks the permission {permission.value}",
        )
    if shared:
        unscoped_only(principal, "this resource")
    return principal


SECURITY: list[dict[str, list[str]]] = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
"""The OpenAPI ``security`` of a route that authorizes itself (``authorize``)."""


async def authorize(request: Request, permission: Permission) -> Principal:
    """What ``require(permission)`` does, called by the route itself: for the ingest route,
    where FastAPI's dependency solving (two header dependencies and the request) was 23% of a
    single request's time (py-spy, 32 connections posting single movements). The route is
    marked with ``requires`` so that the route table still knows its permission."""
    header = request.headers.get("authorization")
    credentials = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    principal = await authenticate(request, request.headers.get("x-api-key"), credentials)
    return permit(principal, permission)


def requires(permission: Permission, *, shared: bool = False) -> Callable[[_F], _F]:
    """Marks what decides a route's access (its ``require`` dependency, or a route that calls
    ``authorize`` itself) with the permission it needs: the route table reads it."""

    def mark(endpoint: _F) -> _F:
        endpoint.permission = permission  # type: ignore[attr-defined]
        endpoint.shared = shared  # type: ignore[attr-defined]
        return endpoint

    return mark


def refuse_outside(principal: Principal, facilities: Iterable[str | None], what: str) -> None:
    """403 when ``what`` touches a facility ``principal`` is not bound to (or, for a client
    bound to facilities, something of no facility at all)."""
    outside = principal.outside(facilities)
    if outside:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"client {principal.name} may not act on {what} of {', '.join(outside)}",
        )


def unscoped_only(principal: Principal, what: str) -> None:
    """403 for a client bound to facilities: ``what`` is shared by every facility."""
    if principal.scoped:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"{what} spans every facility: client {principal.name} is bound to"
            f" {', '.join(sorted(principal.facilities or ()))}",
        )
