"""The message browser: search every message that crossed MedBridge's edge (keyset pages,
newest first), open one (raw form with patient fields masked, its events, the acknowledgement
sent, its dead letters and trace), and reprocess one or a filtered set (a preview count first,
a reason always; audited; exactly once in effect). The work is ``flows.messages``'s, shared
with ``/v1/messages``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from medbridge.canonical.messages import MessageFilter, MessageStatus, WireProtocol
from medbridge.console.rendering import flash, link, render
from medbridge.console.session import Csrf, backend, needs
from medbridge.flows.messages import BrowserError, MessageBrowser
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import messages as message_store

router = APIRouter()
Reader = Annotated[Principal, Depends(needs(Permission.MESSAGES_READ))]
Reprocessor = Annotated[Principal, Depends(needs(Permission.MESSAGES_REPROCESS))]
PAGE = 50
FILTERS = ("control_id", "business_key", "sender", "protocol", "message_type", "status")


def browser_of(request: Request) -> MessageBrowser:
    found = backend(request).messages
    if found is None:
        raise HTTPException(503, detail="the message store is not configured")
    return found


def _moment(name: str, value: str) -> datetime | None:
    """A time from a ``datetime-local`` input (the browser's local form, taken as UTC)."""
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as error:
        raise HTTPException(422, detail=f"{name}: {value!r} is not a date and time") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def message_filter(values: dict[str, str], viewer: Principal) -> MessageFilter:
    """The filter of a search form; 422 naming the field for a value out of its range."""
    given = {k: values.get(k, "").strip() or None for k in FILTERS}
    for name, value in given.items():
        if value is not None and len(value) > 200:
            raise HTTPException(422, detail=f"{name}: at most 200 characters")
        if value is not None and not value.isprintable():
            raise HTTPException(422, detail=f"{name}: no control characters")
    if given["status"] and given["status"] not in {s.value for s in MessageStatus}:
        raise HTTPException(422, detail=f"status: {given['status']!r} is not a status")
    if given["protocol"] and given["protocol"] not in {p.value for p in WireProtocol}:
        raise HTTPException(422, detail=f"protocol: {given['protocol']!r} is not a protocol")
    return MessageFilter(
        **given,
        since=_moment("since", values.get("since", "")),
        until=_moment("until", values.get("until", "")),
        facilities=viewer.facilities,
    )


def _form_values(request: Request) -> dict[str, str]:
    keys = (*FILTERS, "since", "until")
    return {k: str(request.query_params.get(k, "")) for k in keys}


@router.get("/messages", response_class=HTMLResponse, name="messages")
def messages(
    request: Request, viewer: Reader, after: str | None = None, preview: str | None = None
) -> HTMLResponse:
    """The search page. ``preview`` (the "Reprocess these" button submitted without htmx, say
    clicked before its script has loaded) shows the reprocess preview on the page itself."""
    values = _form_values(request)
    selection = message_filter(values, viewer)
    may_reprocess = viewer.may(Permission.MESSAGES_REPROCESS)
    try:
        page = browser_of(request).search(selection, after=after or None, limit=PAGE)
        count = browser_of(request).preview(selection) if preview and may_reprocess else None
    except BrowserError as error:
        raise HTTPException(422, detail=f"{error.field}: {error}") from error
    query = "&".join(f"{k}={v}" for k, v in values.items() if v)
    return render(
        request,
        "messages.html",
        {
            "page": page,
            "values": values,
            "query": query,
            "statuses": [s.value for s in MessageStatus],
            "protocols": [p.value for p in WireProtocol],
            "may_reprocess": may_reprocess,
            "max_reprocess": browser_of(request).max_reprocess,
            "count": count,
        },
    )


@router.get("/messages/preview", response_class=HTMLResponse, name="reprocess_preview")
def preview(request: Request, viewer: Reprocessor) -> HTMLResponse:
    """How many messages the filter selects (an htmx fragment of the search page)."""
    values = _form_values(request)
    count = browser_of(request).preview(message_filter(values, viewer))
    return render(
        request,
        "messages_preview.html",
        {"count": count, "values": values, "max_reprocess": browser_of(request).max_reprocess},
    )


@router.post("/messages/reprocess", dependencies=[Csrf], name="reprocess_messages")
async def reprocess_filtered(request: Request, viewer: Reprocessor) -> Response:
    form = await request.form()
    values = {k: str(form.get(k, "")) for k in (*FILTERS, "since", "until")}
    reason = str(form.get("reason", "")).strip()
    expected = str(form.get("expected", ""))
    selection = message_filter(values, viewer)
    messages = browser_of(request)

    def run() -> str:
        count = messages.preview(selection)
        if expected != str(count):  # the set changed since the preview: show it again
            return f"the filter now selects {count} messages, not {expected}: preview again"
        report = messages.reprocess(
            filters=selection, reason=reason, actor=viewer.name, facilities=viewer.facilities
        )
        return _summary(report.selected, report.counts())

    try:
        flash(request, await run_in_threadpool(run))
    except BrowserError as error:
        raise HTTPException(422, detail=f"{error.field}: {error}") from error
    query = "&".join(f"{k}={v}" for k, v in values.items() if v)
    return RedirectResponse(link(request, "messages") + (f"?{query}" if query else ""), 303)


def _summary(selected: int, counts: dict[str, int]) -> str:
    outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    return f"{selected} reprocessed: {outcomes or 'nothing'}"


@router.get("/partners", response_class=HTMLResponse, name="partners")
def partners(request: Request, viewer: Reader, hours: int = 24) -> HTMLResponse:
    """Partners and connectors: every sender (and outbound partner) heard from in the last
    ``hours``, its messages by status, its last message and its last error."""
    if not 1 <= hours <= 24 * 31:
        raise HTTPException(422, detail="hours: 1 to 744")
    since = datetime.now(UTC) - timedelta(hours=hours)
    with backend(request).engine.connect() as conn:
        found = message_store.senders(conn, since, viewer.facilities)
    statuses = [s.value for s in MessageStatus if s is not MessageStatus.DEAD_LETTERED]
    return render(
        request, "partners.html", {"senders": found, "hours": hours, "statuses": statuses}
    )


@router.get("/messages/{message_id}", response_class=HTMLResponse, name="message")
def message(request: Request, viewer: Reader, message_id: str) -> HTMLResponse:
    if len(message_id) > 36:
        raise HTTPException(422, detail="message_id: at most 36 characters")
    detail = browser_of(request).get(message_id, viewer.facilities)
    if detail is None:
        raise HTTPException(404, detail=f"no message {message_id}")
    return render(
        request,
        "message.html",
        {"detail": detail, "may_reprocess": viewer.may(Permission.MESSAGES_REPROCESS)},
    )


@router.post("/messages/{message_id}/reprocess", dependencies=[Csrf], name="reprocess_message")
def reprocess_one(
    request: Request,
    viewer: Reprocessor,
    message_id: str,
    reason: Annotated[str, Form(min_length=3, max_length=500)],
) -> Response:
    try:
        report = browser_of(request).reprocess(
            ids=[message_id], reason=reason, actor=viewer.name, facilities=viewer.facilities
        )
    except BrowserError as error:
        raise HTTPException(422, detail=f"{error.field}: {error}") from error
    outcome: dict[str, Any] = report.outcomes[0].__dict__ if report.outcomes else {}
    flash(
        request,
        f"reprocessed: {outcome.get('outcome', 'nothing selected')}"
        + (f" ({outcome['detail']})" if outcome.get("detail") else ""),
    )
    target = outcome.get("new_message_id") or message_id
    return RedirectResponse(link(request, "message", message_id=target), 303)
