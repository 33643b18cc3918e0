"""The Recall page: the lots in quarantine, a lot's trace (``flows.recall.trace``: where it
came from, where it is on hand, where it went, what its quarantine holds) and, with
``lots:quarantine``, the quarantine and release forms, as ``/v1/lots`` does.

A viewer bound to facilities sees what happened at their locations; a quarantine spans every
facility, so only a viewer bound to none may set or release one. Encounter pseudonyms show
only with ``encounters:read``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from medbridge.console.rendering import code_filter, flash, link, render
from medbridge.console.session import Csrf, backend, needs
from medbridge.flows import recall
from medbridge.flows.ledger_posting import LedgerPosting
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import recall as recall_store

router = APIRouter()
Reader = Annotated[Principal, Depends(needs(Permission.LOTS_READ))]
Keeper = Annotated[Principal, Depends(needs(Permission.LOTS_QUARANTINE, shared=True))]
Code = Annotated[str, Form(min_length=1, max_length=64)]
Note = Annotated[str, Form(max_length=500)]


def _note(name: str, value: str) -> str:
    if not value.isprintable():
        raise HTTPException(422, detail=f"{name}: no control characters")
    return value.strip()


def _item(request: Request, code: str) -> str:
    """The item of ``code`` (an item code or a GTIN); 404 when none has it."""
    try:
        return recall.resolve_item(backend(request).masterdata, code)
    except recall.UnknownItem:
        raise HTTPException(404, detail=f"no item has the code or GTIN {code!r}") from None


def _form(request: Request, item: str, lot: str) -> tuple[str, str]:
    """The posted item (resolved) and lot."""
    found, lot_ = code_filter("item", item), code_filter("lot", lot)
    if found is None or lot_ is None:
        raise HTTPException(422, detail="item and lot: both are needed")
    return _item(request, found), lot_


def _back(request: Request, item: str, lot: str) -> Response:
    query = urlencode({"code": item, "lot": lot})
    return RedirectResponse(f"{link(request, 'lots')}?{query}", 303)


@router.get("/lots", response_class=HTMLResponse, name="lots")
def lots(request: Request, viewer: Reader, code: str = "", lot: str = "") -> HTMLResponse:
    """The lots in quarantine; with ``code`` (an item or a GTIN) and ``lot``: its trace."""
    asked, lot_ = code_filter("code", code), code_filter("lot", lot)
    svc = backend(request)
    with svc.engine.connect() as conn:
        quarantined = recall_store.quarantines(conn)
    context: dict[str, Any] = {
        "quarantined": quarantined,
        "code": asked or "",
        "lot": lot_ or "",
        "trace": None,
        "unknown": None,
        "may_quarantine": viewer.may(Permission.LOTS_QUARANTINE) and not viewer.scoped,
    }
    if asked and lot_:
        try:
            item = recall.resolve_item(svc.masterdata, asked)
        except recall.UnknownItem:
            context["unknown"] = f"no item has the code or GTIN {asked!r}"
        else:
            context["trace"] = recall.trace(
                svc.engine,
                svc.masterdata,
                item,
                lot_,
                with_encounters=viewer.may(Permission.ENCOUNTERS_READ),
                facilities=viewer.facilities,
            )
    return render(request, "lots.html", context)


@router.post("/lots/quarantine", dependencies=[Csrf], name="quarantine_lot")
def quarantine(request: Request, viewer: Keeper, item: Code, lot: Code, reason: Note) -> Response:
    """As ``POST /v1/lots/{code}/{lot}/quarantine``: audited as the viewer's."""
    found, lot = _form(request, item, lot)
    why = _note("reason", reason)
    if not why:
        flash(request, f"lot {lot} not quarantined: say why (the recall notice, say)")
    else:
        changed = recall.quarantine(backend(request).engine, found, lot, why, viewer.name)
        done = "quarantined" if changed else "was in quarantine already"
        flash(request, f"lot {lot} of {found} {done}")
    return _back(request, found, lot)


@router.post("/lots/release", dependencies=[Csrf], name="release_lot")
def release(request: Request, viewer: Keeper, item: Code, lot: Code, note: Note = "") -> Response:
    """As ``POST /v1/lots/{code}/{lot}/release``: what the lot held applies, exactly once."""
    found, lot = _form(request, item, lot)
    note = _note("note", note)
    svc = backend(request)
    posting = LedgerPosting(svc.engine, svc.masterdata, svc.router())
    try:
        done = recall.release(posting, found, lot, viewer.name, note)
    except (recall.NotQuarantined, recall.UnresolvableMovement) as error:
        flash(request, f"lot {lot} not released: {error}")
    else:
        flash(
            request,
            f"lot {lot} of {found} released: {len(done.applied)} held movement(s) applied,"
            f" {len(done.refused)} refused",
        )
    return _back(request, found, lot)
