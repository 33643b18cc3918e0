"""The console as its own ASGI application, mounted by the composition root at ``/console``
(its session middleware and security headers apply to it alone, never to the API's hot
routes)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medbridge.console import (
    dashboard,
    erp_routes,
    ledger,
    lots,
    messages,
    operations,
    periods,
    work,
)
from medbridge.console.backend import BackendGetter
from medbridge.console.rendering import HERE, render
from medbridge.console.session import SignInNeeded, sign_in_redirect
from medbridge.console.session import router as session_router

SESSION_COOKIE = "medbridge_console"
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """Every answer of the console: nothing loads from another host (``default-src 'self'``:
    the browser refuses it, so an asset accidentally taken from a CDN fails the browser
    tests), no framing, no referrer; pages are never cached (they show patient-adjacent
    operational data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [] if static else [(b"cache-control", b"no-store")]
                message = {**message, "headers": [*message.get("headers", ()), *HEADERS, *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_console(
    backend: BackendGetter, secret: str, *, https_only: bool = False, session_hours: int = 8
) -> FastAPI:
    """The console; ``secret`` signs its session cookies (every process serving it must share
    it), ``https_only`` marks them ``Secure`` (set when the API is served over TLS)."""
    console = FastAPI(title="MedBridge console", docs_url=None, redoc_url=None, openapi_url=None)
    console.state.backend = backend
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    console.include_router(session_router)
    for module in (dashboard, messages, work, operations, ledger, lots, erp_routes, periods):
        console.include_router(module.router)

    @console.exception_handler(SignInNeeded)
    async def signed_out(request: Request, error: SignInNeeded) -> Response:
        return sign_in_redirect(request, error)

    @console.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return render(
            request,
            "error.html",
            {"status": error.status_code, "detail": error.detail},
            status_code=error.status_code,
        )

    @console.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(part) for part in e['loc'][1:]) or 'request'}: {e['msg']}"
            for e in error.errors()
        ]
        return render(
            request, "error.html", {"status": 422, "detail": "; ".join(problems)}, status_code=422
        )

    console.add_middleware(SecurityHeaders)
    console.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=session_hours * 3600,
        path="/console",
        same_site="strict",
        https_only=https_only,
    )
    return console
