"""Every /v1 route requires an API key (``X-API-Key``) whose client has the route's role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from medbridge.api.services import Services
from medbridge.governance.clients import Client, Role

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def require(role: Role) -> Callable[..., Awaitable[Client]]:
    async def dependency(
        request: Request,
        key: Annotated[str | None, Depends(api_key_header)],
    ) -> Client:
        clients = services(request).clients
        known, client = clients.known(key)
        if not known:  # a query: on a worker thread, never on the event loop
            client = await run_in_threadpool(clients.authenticate, key)
        if client is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or unknown API key (header X-API-Key)",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        if not client.may(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"client {client.name} is {client.role.value}; this needs {role.value}",
            )
        request.state.client = client
        return client

    dependency.__name__ = f"require_{role.value}"
    return dependency
