"""The FastAPI application. Only /health and /metrics are open; every /v1 route declares the
role it needs (a test walks the routes to keep it so)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import medbridge
from medbridge.api import (
    audit,
    catalog,
    contracts,
    dashboard,
    erp,
    exceptions,
    fhir,
    kpis,
    lots,
    masterdata,
    messages,
    movements,
    oauth,
    operations,
    periods,
    procurement,
    reads,
    receiving,
    trade,
    work_items,
)
from medbridge.api.auth import Access
from medbridge.api.catalog import BusLayout
from medbridge.api.docs import mount_docs
from medbridge.api.minimise import Minimise
from medbridge.api.problems import KEYED
from medbridge.api.services import Services
from medbridge.governance import catalog as catalog_model
from medbridge.observability import metrics, tracing
from medbridge.observability.logging import correlation, get_logger

log = get_logger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@functools.cache
def _counter(route: str, status: int) -> Any:
    """The request counter's child for (route, status), looked up once."""
    return metrics.HTTP_REQUESTS.labels(route=route, status=str(status))


_DEPRECATED = {
    (d.method, d.path): [(k.lower().encode(), v.encode("latin-1")) for k, v in d.headers().items()]
    for d in catalog_model.DEPRECATIONS
}


class Observe:
    """Per request: the correlation id bound to every log line, the request counter by route
    and status, and a log line for each request that failed (4xx/5xx; a 2xx is a debug line).

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) runs each
    request through a task group and memory streams, which measured (py-spy, 32 keep-alive
    connections posting single movements) as a third of the API's time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        headers = dict(scope.get("headers") or ())

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                sunset = _DEPRECATED.get((str(scope.get("method")), str(scope.get("path"))))
                if sunset is not None:  # a deprecated route says so on every answer
                    message = {**message, "headers": [*message.get("headers", ()), *sunset]}
            await send(message)

        raw_correlation = headers.get(b"x-correlation-id")
        with correlation(raw_correlation.decode("latin-1") if raw_correlation else None):
            try:
                await self.app(scope, receive, record)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                _counter(path, status).inc()
                if path not in ("/metrics", "/health"):
                    (log.info if status >= 400 else log.debug)(
                        "http.request",
                        method=scope.get("method"),
                        route=path,
                        status=status,
                        ms=round((time.perf_counter() - started) * 1000, 1),
                    )


def _document_raw_bodies(api: FastAPI) -> None:
    """The models of the bodies routes read raw (no FastAPI parameter names them, so FastAPI
    would not put them in the document): added to ``components.schemas``, where the routes'
    request bodies refer to them."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schemas = generate().setdefault("components", {}).setdefault("schemas", {})
            for model in (movements.MovementIn,):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
        assert api.openapi_schema is not None
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def create_api(
    svc: Services,
    access: Access,
    lifespan: Lifespan | None = None,
    max_body: int | None = None,
    bus_layout: tuple[str, int] = ("medbridge.events", 8),
) -> FastAPI:
    api = FastAPI(
        title="MedBridge",
        version=medbridge.__version__,
        description=(
            "Healthcare ERP middleware. Every /v1, /fhir and trading-partner route needs an"
            " API key (X-API-Key) or an OAuth2 bearer token (POST /oauth/token), and names"
            " the permission it needs."
        ),
        lifespan=lifespan,
        max_body_size=max_body,
        docs_url=None,  # served from the package by mount_docs, not from a CDN
        redoc_url=None,
        # MedBridge observes its own requests (Observe); FastAPI's native OpenTelemetry hooks
        # looked up the providers on every request (environment reads: measured under load),
        # so only its request spans are on, and only when tracing is (a SERVER span per
        # request, continuing a caller's traceparent: the ingest's bus.append is its child)
        telemetry={
            "tracing": tracing.enabled(),
            "tracer_provider": tracing.provider(),
            "operation_spans": False,
            "metrics": False,
            "logs": False,
        },
    )
    api.state.services, api.state.access = svc, access
    api.state.bus_layout = BusLayout(bus_layout[0], bus_layout[1])
    api.include_router(oauth.router)
    keyed = (
        movements,
        reads,
        operations,
        dashboard,
        exceptions,
        messages,
        erp,
        work_items,
        procurement,
        receiving,
        catalog,
        audit,
        periods,
        kpis,
        lots,
        masterdata,
        contracts,
    )
    for module in keyed:
        api.include_router(module.router, responses=KEYED)
    api.include_router(fhir.router)  # answers OperationOutcomes, documented per route
    api.include_router(trade.router)  # X12 and cXML answer in their own formats

    _document_raw_bodies(api)
    mount_docs(api)
    api.add_middleware(Minimise, policy=access.data)
    api.add_middleware(Observe)

    @api.get(
        "/health",
        tags=["open"],
        responses={503: {"description": "the database cannot be reached"}},
    )
    async def health() -> JSONResponse:
        def probe() -> bool:
            try:
                with svc.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except Exception:
                return False
            return True

        ok = await run_in_threadpool(probe)
        body: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "database": "ok" if ok else "unreachable",
            "version": medbridge.__version__,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @api.get(
        "/metrics",
        tags=["open"],
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus_metrics() -> Response:
        payload = await run_in_threadpool(generate_latest)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    return api
