"""The Recall page: the lots in quarantine, a lot's trace (``flows.recall.trace``: where it
came from, where it is on hand, where it went, what its quarantine holds) and, with
``lots:quarantine``, the quarantine and release forms, as ``/v1/lots`` does.

A viewer bound to facilities sees what happened at their locations; a quarantine spans every
facility, so only a viewer bound to none may set or release one. Encounter pseudonyms show
only with ``encounters:read``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from medbridge.console.rendering import flash, link, render
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


def _checked(**values: str) -> None:
    for name, value in values.items():
        if not value.isprintable():
            raise HTTPException(422, detail=f"{name}: no control characters")


def _item(request: Request, code: str) -> str | None:
    try:
        return recall.resolve_item(backend(request).masterdata, code.strip())
    except recall.UnknownItem:
        return None


def _back(request: Request, item: str, lot: str) -> Response:
    target = link(request, "lots")
    return RedirectResponse(f"{target}?code={item}&lot={lot}", 303)


@router.get("/lots", response_class=HTMLResponse, name="lots")
def lots(request: Request, viewer: Reader, code: str = "", lot: str = "") -> HTMLResponse:
    """The lots in quarantine; with ``code`` (an item or a GTIN) and ``lot``: its trace."""
    _checked(code=code, lot=lot)
    if len(code) > 64 or len(lot) > 64:
        raise HTTPException(422, detail="code and lot: at most 64 characters")
    svc = backend(request)
    with svc.engine.connect() as conn:
        quarantined = recall_store.quarantines(conn)
    context: dict[str, Any] = {
        "quarantined": quarantined,
        "code": code,
        "lot": lot,
        "trace": None,
        "unknown": None,
        "may_quarantine": viewer.may(Permission.LOTS_QUARANTINE) and not viewer.scoped,
    }
    if code.strip() and lot.strip():
        item = _item(request, code)
        if item is None:
            context["unknown"] = f"no item has the code or GTIN {code.strip()!r}"
        else:
            context["trace"] = recall.trace(
                svc.engine,
                svc.masterdata,
                item,
                lot.strip(),
                with_encounters=viewer.may(Permission.ENCOUNTERS_READ),
                facilities=viewer.facilities,
            )
    return render(request, "lots.html", context)


@router.post("/lots/quarantine", dependencies=[Csrf], name="quarantine_lot")
def quarantine(request: Request, viewer: Keeper, item: Code, lot: Code, reason: Note) -> Response:
    """As ``POST /v1/lots/{code}/{lot}/quarantine``: audited as the viewer's."""
    _checked(item=item, lot=lot, reason=reason)
    if not reason.strip():
        flash(request, f"lot {lot} not quarantined: say why (the recall notice, say)")
        return _back(request, item, lot)
    found = _item(request, item)
    if found is None:
        raise HTTPException(404, detail=f"no item has the code or GTIN {item!r}")
    changed = recall.quarantine(backend(request).engine, found, lot, reason.strip(), viewer.name)
    flash(request, f"lot {lot} of {found} " + ("quarantined" if changed else "was in quarantine"))
    return _back(request, found, lot)


@router.post("/lots/release", dependencies=[Csrf], name="release_lot")
def release(request: Request, viewer: Keeper, item: Code, lot: Code, note: Note = "") -> Response:
    """As ``POST /v1/lots/{code}/{lot}/release``: what the lot held applies, exactly once."""
    _checked(item=item, lot=lot, note=note)
    found = _item(request, item)
    if found is None:
        raise HTTPException(404, detail=f"no item has the code or GTIN {item!r}")
    svc = backend(request)
    posting = LedgerPosting(svc.engine, svc.masterdata, svc.router())
    try:
        done = recall.release(posting, found, lot, viewer.name, note.strip())
    except (recall.NotQuarantined, recall.UnresolvableMovement) as error:
        flash(request, f"lot {lot} not released: {error}")
    else:
        flash(
            request,
            f"lot {lot} of {found} released: {len(done.applied)} held movement(s) applied,"
            f" {len(done.refused)} refused",
        )
    return _back(request, found, lot)
