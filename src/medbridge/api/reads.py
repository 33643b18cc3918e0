"""Read side: on-hand stock (negative where a dispense took more than the ledger held, flagged
``discrepancy``), journal entries, the ledger-vs-GL checkpoint."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import refuse_outside, require, services
from medbridge.api.params import Offset, QueryCode
from medbridge.api.problems import answers
from medbridge.canonical.masterdata import AccountRole
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import erp_postings
from medbridge.store import ledger as ledger_store
from medbridge.store import trace as trace_store

router = APIRouter(prefix="/v1", tags=["read"])
StockReader = Annotated[Principal, Depends(require(Permission.STOCK_READ))]
LedgerReader = Annotated[Principal, Depends(require(Permission.LEDGER_READ))]
Code = QueryCode


@router.get("/stock")
async def get_stock(
    request: Request,
    client: StockReader,
    item: Code = None,
    location: Code = None,
    lot: Code = None,
    include_empty: bool = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Offset = 0,
) -> dict[str, Any]:
    def query() -> list[ledger_store.StockRow]:
        with services(request).engine.connect() as conn:
            return ledger_store.stock(
                conn,
                item=item,
                location=location,
                lot=lot,
                include_empty=include_empty,
                facilities=client.facilities,
                limit=limit,
                offset=offset,
            )

    rows = await run_in_threadpool(query)
    return {
        "items": [
            {
                "item": r.item,
                "location": r.location,
                "lot": r.lot,
                "expiry": r.expiry.isoformat() if r.expiry else None,
                "quantity": f"{r.quantity.normalize():f}",
                # more dispensed than the ledger ever held: a fact applied all the same, with
                # a stock_discrepancy task in the pharmacy queue (shown as is, never hidden)
                "discrepancy": r.quantity < 0,
            }
            for r in rows
        ]
    }


@router.get("/journal-entries")
async def get_journal_entries(
    request: Request,
    client: LedgerReader,
    correlation_id: Annotated[str | None, Query(max_length=36)] = None,
    account: Code = None,
    period: Annotated[
        str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    ] = None,
    location: Code = None,
    item: Code = None,
    order: Annotated[
        Literal["desc", "asc"],
        Query(description="desc: the newest entries first (default); asc: the oldest first"),
    ] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Journal entries, the newest first unless ``order=asc``; ``period`` (the posting
    date's month), ``account`` (any line on it), ``location`` and ``item`` (its movement's)
    filter."""

    def query() -> list[dict[str, Any]]:
        with services(request).engine.connect() as conn:
            entries = ledger_store.journal(
                conn,
                correlation_id=correlation_id,
                account=account,
                period=period,
                facilities=client.facilities,
                location=location,
                item=item,
                newest_first=order == "desc",
                limit=limit,
                offset=offset,
            )
            postings = {
                p.entry_id: p
                for p in erp_postings.postings(
                    conn, entry_ids=[e.entry_id for e in entries], limit=len(entries) or 1
                )
            }
        return [
            e.model_dump(mode="json")
            | {
                "period": e.period,
                "posting_status": p.status.value if p else None,
                "erp_id": p.erp_id if p else None,
            }
            for e in entries
            for p in (postings.get(e.entry_id),)
        ]

    return {"items": await run_in_threadpool(query)}


@router.get("/ledger/reconciliation")
async def get_reconciliation(request: Request, client: LedgerReader) -> dict[str, Any]:
    """Per facility: stock ledger value vs the GL inventory balance (should be equal)."""

    def query() -> list[ledger_store.FacilityCheck]:
        svc = services(request)
        with svc.engine.connect() as conn:
            accounts = svc.masterdata.account_map(conn)
            inventory = {f: a for (f, role), a in accounts.items() if role is AccountRole.INVENTORY}
            return ledger_store.facility_checks(conn, inventory)

    checks = await run_in_threadpool(query)
    return {
        "facilities": [
            {
                "facility": c.facility,
                "ledger_value": str(c.ledger_value),
                "gl_inventory": str(c.gl_inventory),
                "difference": str(c.difference),
            }
            for c in checks
            if client.covers(c.facility)
        ],
        "balanced": all(c.difference == 0 for c in checks if client.covers(c.facility)),
    }


@router.get("/trace/{correlation_id}", responses=answers(404))
async def get_trace(
    request: Request,
    client: LedgerReader,
    correlation_id: Annotated[str, Path(max_length=36)],
) -> dict[str, Any]:
    """Everything recorded under one correlation id, in time order: events, documents
    exchanged with trading partners, journal entries and their ERP postings."""

    def query() -> tuple[list[trace_store.TraceStep], set[str]]:
        with services(request).engine.connect() as conn:
            facilities = (
                ledger_store.correlation_facilities(conn, correlation_id)
                if client.scoped
                else set()
            )
            return trace_store.trace(conn, correlation_id), facilities

    steps, facilities = await run_in_threadpool(query)
    if steps and client.scoped:  # a scoped client sees a trace its facilities' entries make
        refuse_outside(client, facilities or {None}, f"the trace {correlation_id}")
    if not steps:
        raise HTTPException(404, detail=f"nothing recorded under correlation id {correlation_id}")
    return {
        "correlation_id": correlation_id,
        "steps": [
            {"at": s.at.isoformat(), "kind": s.kind, "ref": s.ref, "detail": s.detail}
            for s in steps
        ],
    }
