"""Sign-in, the session and CSRF.

A client signs in with its name and key (the API's clients: no second user store). The
session cookie, signed by Starlette's ``SessionMiddleware`` (itsdangerous), keeps the client's
name, a fingerprint of its key and a CSRF token; every request looks the client up again
(``ClientRegistry.current``, cached a few seconds), so a revoked client or a re-issued key ends
the session, and roles or facilities changed take effect. Every POST must carry the session's
CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``), sign-in included.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from medbridge.console.backend import Backend
from medbridge.console.rendering import link, render
from medbridge.governance.permissions import Permission, Principal
from medbridge.observability.logging import get_logger

log = get_logger(__name__)
router = APIRouter()


class SignInNeeded(Exception):
    """No valid session: the console answers with the sign-in page (a redirect)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def backend(request: Request) -> Backend:
    found: Backend = request.app.state.backend()
    return found


async def checked(request: Request) -> None:
    """The dependency of every POST: 403 unless it carries the session's CSRF token."""
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()  # cached by the request: the route reads it again
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    expected = request.session.get("csrf")
    if not sent or not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        raise HTTPException(
            403, detail="the form's CSRF token is missing or stale: reload the page"
        )


Csrf = Depends(checked)


def viewer(request: Request) -> Principal:
    name, fingerprint = request.session.get("client"), request.session.get("key")
    if isinstance(name, str) and isinstance(fingerprint, str):
        principal = backend(request).clients.current(name, fingerprint)
        if principal is not None:
            request.state.client = principal
            return principal
        request.session.clear()
    raise SignInNeeded(request.url.path + (f"?{request.url.query}" if request.url.query else ""))


Viewer = Annotated[Principal, Depends(viewer)]


def needs(permission: Permission, *, shared: bool = False) -> Callable[..., Principal]:
    """The dependency of a page that needs ``permission`` (``shared``: what it shows belongs to
    every facility, so a client bound to facilities may not see it), as ``api.auth.require``."""

    def dependency(principal: Viewer) -> Principal:
        if not principal.may(permission):
            raise HTTPException(
                403, detail=f"client {principal.name} lacks the permission {permission.value}"
            )
        if shared and principal.scoped:
            raise HTTPException(
                403,
                detail=f"this page spans every facility: client {principal.name} is bound to"
                f" {', '.join(sorted(principal.facilities or ()))}",
            )
        return principal

    dependency.__name__ = f"needs_{permission.name.lower()}"
    return dependency


def _safe_next(target: str | None) -> str:
    """Only a path of the console itself (never another host: an open redirect)."""
    if not target:
        return ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/console/"):
        return ""
    return target


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: str | None = None) -> Response:
    return render(request, "sign_in.html", {"next": _safe_next(next), "error": None})


@router.post("/sign-in", response_class=HTMLResponse, dependencies=[Csrf])
async def sign_in(
    request: Request,
    client: Annotated[str, Form(min_length=1, max_length=100)],
    key: Annotated[str, Form(min_length=1, max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    registry = backend(request).clients
    found = await run_in_threadpool(registry.session, client, key)
    if found is None:
        log.info("console.sign_in_refused", client=client)
        return render(
            request,
            "sign_in.html",
            {"next": _safe_next(next), "error": "unknown client or wrong key"},
            status_code=401,
        )
    principal, fingerprint = found
    request.session.clear()  # a new session: nothing of the anonymous one is kept
    request.session.update(
        {"client": principal.name, "key": fingerprint, "csrf": secrets.token_urlsafe(24)}
    )
    log.info("console.signed_in", client=principal.name)
    return RedirectResponse(_safe_next(next) or link(request, "dashboard"), 303)


@router.post("/sign-out", dependencies=[Csrf])
def sign_out(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse(link(request, "sign_in_page"), 303)


def sign_in_redirect(request: Request, error: SignInNeeded) -> Response:
    target = link(request, "sign_in_page")
    return RedirectResponse(f"{target}?next={quote(error.path)}", 303)
