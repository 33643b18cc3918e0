"""Operations: dead letters (replay by id or by filter), parked inbound messages (map the
code that did not resolve, then replay; or discard with a reason) and the alert rules' states.
What these pages show belongs to every facility: a client bound to facilities is refused."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from medbridge.bus.port import DeadLetterFilter
from medbridge.canonical.codes import CodeError
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.console.rendering import flash, link, render
from medbridge.console.session import Csrf, backend, needs
from medbridge.flows.inbound import FILLABLE, ExceptionNotOpen, NotFillable
from medbridge.governance.permissions import Permission, Principal
from medbridge.masterdata.repository import CrossReferences, MasterDataError
from medbridge.store import alerts as alert_store
from medbridge.store import exceptions as exception_store
from medbridge.store.tables import items as items_table

router = APIRouter()
Reader = Annotated[Principal, Depends(needs(Permission.OPERATIONS_READ, shared=True))]
Replayer = Annotated[Principal, Depends(needs(Permission.DEAD_LETTERS_REPLAY, shared=True))]
Decider = Annotated[Principal, Depends(needs(Permission.EXCEPTIONS_DECIDE, shared=True))]
Mapper = Annotated[Principal, Depends(needs(Permission.XREF_WRITE, shared=True))]


@router.get("/dead-letters", response_class=HTMLResponse, name="dead_letters")
def dead_letters(
    request: Request,
    viewer: Reader,
    group: str | None = None,
    status: str = "dead",
    event_type: str | None = None,
) -> HTMLResponse:
    if status not in ("dead", "replayed"):
        raise HTTPException(422, detail="status: dead or replayed")
    b = backend(request)
    letters = b.bus.dead_letters(
        DeadLetterFilter(group=group or None, status=status, event_type=event_type or None)
    )
    return render(
        request,
        "dead_letters.html",
        {
            "letters": letters,
            "groups": sorted(b.consumers),
            "group": group,
            "status": status,
            "event_type": event_type,
            "may_replay": viewer.may(Permission.DEAD_LETTERS_REPLAY),
        },
    )


@router.post("/dead-letters/replay", dependencies=[Csrf], name="replay_dead_letters")
def replay_dead_letters(
    request: Request,
    viewer: Replayer,
    group: Annotated[str, Form(min_length=1, max_length=100)],
    ids: Annotated[list[int] | None, Form()] = None,
    event_type: Annotated[str, Form(max_length=120)] = "",
) -> Response:
    """Replay the ticked dead letters of ``group``, or, with none ticked, every dead letter of
    the group of ``event_type`` (the filter the page shows)."""
    consumer = backend(request).consumers.get(group)
    if consumer is None:
        raise HTTPException(422, detail=f"group: no consumer group {group!r}")
    if not ids and not event_type:
        raise HTTPException(422, detail="ids: tick the dead letters to replay, or filter by type")
    selection = DeadLetterFilter(ids=tuple(ids) if ids else None, event_type=event_type or None)
    report = consumer.replay(selection, actor=viewer.name)
    failed = "; ".join(f"#{i}: {why}" for i, why in report.failed.items())
    flash(
        request,
        f"{group}: {len(report.applied)} replayed"
        + (f", {len(report.failed)} failed again ({failed})" if report.failed else ""),
    )
    return RedirectResponse(link(request, "dead_letters") + f"?group={group}", 303)


@router.get("/exceptions", response_class=HTMLResponse, name="exceptions")
def exceptions(request: Request, viewer: Reader, status: str = "open") -> HTMLResponse:
    if status not in ("open", "applied", "discarded"):
        raise HTTPException(422, detail="status: open, applied or discarded")
    with backend(request).engine.connect() as conn:
        found = exception_store.listing(conn, status=status, limit=500)
    return render(request, "exceptions.html", {"exceptions": found, "status": status})


def _mapping(parked: exception_store.InboundException, problem: dict[str, Any]) -> dict[str, Any]:
    """What mapping a problem's code takes: an item code (its system and issuer, from the
    draft), or a source cross-reference of a location, cost center or unit."""
    field, index = str(problem.get("field")), int(problem.get("index", -1))
    draft = parked.drafts[index] if 0 <= index < len(parked.drafts) else {}
    if field == "item":
        item = draft.get("item") or {}
        kind = str(item.get("kind", "local"))
        issuer = item.get("issuer") or (parked.source_system if kind == "local" else None)
        return {"kind": "item", "system": kind, "issuer": issuer or ""}
    if field in FILLABLE and not problem.get("value") and draft.get(field) is None:
        return {"kind": "fill"}  # the message leaves it out: nothing to map, a place to name
    if field in ("location", "to_location"):
        return {"kind": "location"}
    if field in ("cost_center", "unit"):
        return {"kind": field}
    return {"kind": None}


@router.get("/exceptions/{exception_id}", response_class=HTMLResponse, name="exception")
def exception(request: Request, viewer: Reader, exception_id: int) -> HTMLResponse:
    b = backend(request)
    with b.engine.connect() as conn:
        parked = exception_store.get(conn, exception_id)
        items = conn.execute(
            select(items_table.c.code, items_table.c.name).order_by(items_table.c.code).limit(5000)
        ).all()
    if parked is None:
        raise HTTPException(404, detail=f"no parked message {exception_id}")
    problems = [(p, _mapping(parked, p)) for p in parked.problems]
    return render(
        request,
        "exception.html",
        {
            "parked": parked,
            "problems": problems,
            "items": items,
            "may_map": viewer.may(Permission.XREF_WRITE),
            "may_decide": viewer.may(Permission.EXCEPTIONS_DECIDE),
        },
    )


@router.post("/exceptions/{exception_id}/map", dependencies=[Csrf], name="map_code")
def map_code(
    request: Request,
    viewer: Mapper,
    exception_id: int,
    kind: Annotated[str, Form(pattern="^(item|location|cost_center|unit)$")],
    code: Annotated[str, Form(min_length=1, max_length=120)],
    target: Annotated[str, Form(min_length=1, max_length=64)],
    system: Annotated[str, Form(max_length=20)] = "",
    issuer: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Map the code of a parked message's problem (audited as the viewer's change)."""
    b = backend(request)
    with b.engine.connect() as conn:
        parked = exception_store.get(conn, exception_id)
    if parked is None:
        raise HTTPException(404, detail=f"no parked message {exception_id}")
    try:
        with b.engine.begin() as conn:
            if kind == "item":
                item_code = ItemCode(system=CodeSystem(system), code=code, issuer=issuer or None)
                if not b.masterdata.items(conn, [target]):
                    raise MasterDataError("target", f"unknown item {target!r}")
                b.masterdata.link_code(conn, target, item_code, actor=viewer.name)
            else:
                writer = {
                    "location": CrossReferences.map_location,
                    "cost_center": CrossReferences.map_cost_center,
                    "unit": CrossReferences.map_unit,
                }[kind]
                writer(conn, parked.source_system, code, target, actor=viewer.name)
    except (CodeError, ValueError, ValidationError, MasterDataError) as error:
        flash(request, f"not mapped: {error}")
    except IntegrityError:  # an unknown target breaks its foreign key
        flash(request, f"not mapped: unknown {kind.replace('_', ' ')} {target!r}")
    else:
        flash(request, f"{kind.replace('_', ' ')} {code} mapped to {target}: now replay")
    return RedirectResponse(link(request, "exception", exception_id=exception_id), 303)


@router.post("/exceptions/{exception_id}/replay", dependencies=[Csrf], name="replay_exception")
def replay_exception(request: Request, viewer: Decider, exception_id: int) -> Response:
    try:
        result = backend(request).inbound.replay(exception_id, actor=viewer.name)
    except ExceptionNotOpen as error:
        flash(request, str(error))
    else:
        still = "; ".join(f"{p.field} {p.value}: {p.reason}" for p in result.problems)
        flash(
            request,
            f"parked message {exception_id}: {result.outcome.value}"
            + (f" (still: {still})" if still else ""),
        )
    return RedirectResponse(link(request, "exception", exception_id=exception_id), 303)


@router.post("/exceptions/{exception_id}/fill", dependencies=[Csrf], name="fill_exception")
def fill_exception(
    request: Request,
    viewer: Decider,
    exception_id: int,
    value: Annotated[str, Form(min_length=1, max_length=120, pattern=r"^[^\x00-\x1f\x7f]*$")],
    index: Annotated[int, Form(ge=0, le=10_000)] = 0,
) -> Response:
    """Fill in the place a parked message leaves out (the sender's code), then replay it."""
    try:
        result = backend(request).inbound.fill(
            exception_id, index, "location", value, actor=viewer.name
        )
    except (ExceptionNotOpen, NotFillable) as error:
        flash(request, f"not filled in: {error}")
    else:
        still = "; ".join(f"{p.field} {p.value}: {p.reason}" for p in result.problems)
        flash(
            request,
            f"parked message {exception_id}: {result.outcome.value}"
            + (f" (still: {still})" if still else ""),
        )
    return RedirectResponse(link(request, "exception", exception_id=exception_id), 303)


@router.post("/exceptions/{exception_id}/discard", dependencies=[Csrf], name="discard_exception")
def discard_exception(
    request: Request,
    viewer: Decider,
    exception_id: int,
    reason: Annotated[str, Form(min_length=3, max_length=500)],
) -> Response:
    try:
        backend(request).inbound.discard(
            exception_id, f"{viewer.name}: {reason}", actor=viewer.name
        )
    except ExceptionNotOpen as error:
        flash(request, str(error))
    else:
        flash(request, f"parked message {exception_id} discarded")
    return RedirectResponse(link(request, "exception", exception_id=exception_id), 303)


@router.get("/alerts", response_class=HTMLResponse, name="alerts")
def alerts(request: Request, viewer: Reader) -> HTMLResponse:
    with backend(request).engine.connect() as conn:
        states = sorted(alert_store.states(conn).values(), key=lambda s: s.rule)
    return render(request, "alerts.html", {"states": states})
