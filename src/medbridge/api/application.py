"""The FastAPI application. Only /health and /metrics are open; every /v1 route declares the
role it needs (a test walks the routes to keep it so)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

import medbridge
from medbridge.api import (
    erp,
    exceptions,
    fhir,
    movements,
    operations,
    procurement,
    reads,
    trade,
    work_items,
)
from medbridge.api.services import Services
from medbridge.observability import metrics
from medbridge.observability.logging import correlation, get_logger

log = get_logger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_api(svc: Services, lifespan: Lifespan | None = None) -> FastAPI:
    api = FastAPI(
        title="MedBridge",
        version=medbridge.__version__,
        description="Healthcare ERP middleware. Every /v1 route needs an X-API-Key.",
        lifespan=lifespan,
    )
    api.state.services = svc
    api.include_router(movements.router)
    api.include_router(reads.router)
    api.include_router(operations.router)
    api.include_router(exceptions.router)
    api.include_router(fhir.router)
    api.include_router(erp.router)
    api.include_router(trade.router)
    api.include_router(work_items.router)
    api.include_router(procurement.router)

    @api.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        with correlation(request.headers.get("x-correlation-id")):
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(route=path, status=str(response.status_code)).inc()
            if path not in ("/metrics", "/health"):
                log.info(
                    "http.request",
                    method=request.method,
                    route=path,
                    status=response.status_code,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
        return response

    @api.get("/health", tags=["open"])
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

    @api.get("/metrics", tags=["open"])
    async def prometheus_metrics() -> Response:
        payload = await run_in_threadpool(generate_latest)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    return api
