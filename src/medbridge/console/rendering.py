"""Templates, the pages' common context, and errors as pages."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context

from medbridge.governance.permissions import Permission, Principal

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

NAV: tuple[tuple[str, str, Permission | None], ...] = (
    ("dashboard", "Dashboard", Permission.DASHBOARD_READ),
    ("messages", "Messages", Permission.MESSAGES_READ),
    ("partners", "Partners", Permission.MESSAGES_READ),
    ("work_items", "Work", Permission.WORK_READ),
    ("dead_letters", "Dead letters", Permission.OPERATIONS_READ),
    ("exceptions", "Exceptions", Permission.OPERATIONS_READ),
    ("alerts", "Alerts", Permission.OPERATIONS_READ),
    ("stock", "Stock", Permission.STOCK_READ),
    ("lots", "Recall", Permission.LOTS_READ),
    ("erp_postings", "ERP postings", Permission.ERP_READ),
    ("erp_summaries", "GL summaries", Permission.ERP_READ),
    ("reconciliation", "Reconciliation", Permission.ERP_READ),
    ("erp_compare", "ERP compare", Permission.ERP_READ),
    ("erp_routes", "ERP routes", Permission.ERP_READ),
    ("periods", "Close", Permission.PERIODS_READ),
)
"""The navigation: (route name, label, the permission that shows it)."""


def code_filter(name: str, value: str | None) -> str | None:
    """A code a page is asked for (an item, a location, a lot): stripped, None when blank;
    a 422 naming ``name`` when over 64 characters or holding a control character."""
    if value is None or not value.strip():
        return None
    if len(value) > 64:
        raise HTTPException(422, detail=f"{name}: at most 64 characters")
    if not value.isprintable():
        raise HTTPException(422, detail=f"{name}: no control characters")
    return value.strip()


def when(value: datetime | str | None) -> str:
    """A time as the console shows it: UTC, to the second."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def qty(value: Decimal) -> str:
    """A quantity without trailing zeros or an exponent (``5``, ``2.5``, ``1000``)."""
    return f"{value.normalize():f}"


templates.env.filters["when"] = when
templates.env.filters["qty"] = qty


def percent(value: Decimal | None) -> str:
    """A rate as a percentage to one decimal; a dash where there was nothing to measure."""
    return "-" if value is None else f"{value * 100:.1f} %"


templates.env.filters["percent"] = percent


MOUNT = "console"
"""The name the console is mounted under (``runtime.processes.mount_console``): its routes are
named ``console:<name>`` in the application's router."""


def link(request: Request, name: str, **params: Any) -> str:
    """The URL of the console's route ``name`` (as ``url_for`` inside a mounted app)."""
    return str(request.url_for(f"{MOUNT}:{name}", **params))


@pass_context
def _link(context: Any, name: str, **params: Any) -> str:
    return link(context["request"], name, **params)


templates.env.globals["link"] = _link


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use); every form of a page carries it."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    viewer: Principal | None = getattr(request.state, "client", None)
    nav = [
        (name, label)
        for name, label, permission in NAV
        if viewer is not None and (permission is None or viewer.may(permission))
    ]
    base = {"viewer": viewer, "nav": nav, "csrf": csrf_token(request), "flash": None}
    flash = request.session.pop("flash", None)
    if isinstance(flash, str):
        base["flash"] = flash
    return templates.TemplateResponse(
        request, template, base | dict(context or {}), status_code=status_code
    )


def flash(request: Request, message: str) -> None:
    """A one-line notice shown on the next page (after a POST's redirect)."""
    request.session["flash"] = message
