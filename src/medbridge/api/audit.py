"""The audit log for auditors: ``GET /v1/audit``, filtered, in keyset pages.

Read-only (on SQLite its transaction never takes the write lock). Admin only for now."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medbridge.api.auth import require, services
from medbridge.domain.audit import AuditEntry
from medbridge.governance.permissions import Permission, Principal
from medbridge.store import audit as audit_store
from medbridge.store.db import read_only

router = APIRouter(prefix="/v1", tags=["audit"])
Auditor = Annotated[Principal, Depends(require(Permission.AUDIT_READ, shared=True))]

MAX_SEQ = 2**63 - 1


class AuditRow(BaseModel):
    """One change: who, when, what, the target's state digests and the change itself."""

    seq: int = Field(description="Position in the chain: 1, 2, 3 ... without gaps.")
    at: datetime = Field(description="When the change's transaction wrote it (UTC).")
    actor: str = Field(description="The API client's name, cli:<os user>, or system:<component>.")
    action: str = Field(description="What was done, e.g. xref.location.map, client.revoke.")
    target_type: str
    target_id: str
    before_digest: str | None = Field(
        description="SHA-256 of the target's canonical JSON before the change (null: none)."
    )
    after_digest: str | None = Field(
        description="SHA-256 of the target's canonical JSON after the change (null: none)."
    )
    detail: dict[str, Any] = Field(description="The change itself (never patient data).")
    prev_hash: str = Field(description="The previous row's hash (64 zeros for the first).")
    hash: str = Field(description="SHA-256 over prev_hash and this row's canonical fields.")

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditRow:
        return cls.model_validate(entry, from_attributes=True)


class AuditPage(BaseModel):
    items: list[AuditRow]
    next_cursor: int | None = Field(
        description="Pass as ``cursor`` for the next page; null when this page is the last."
    )


@router.get("/audit", response_model=AuditPage)
async def list_audit(
    request: Request,
    _client: Auditor,
    actor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    action: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    target_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    target_id: Annotated[str | None, Query(min_length=1, max_length=300)] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="From this time (inclusive, with its offset).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Before this time (exclusive, with its offset).")
    ] = None,
    cursor: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="The previous page's next_cursor.")
    ] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="By seq.")] = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Audit rows matching every filter given, by ``seq`` (oldest first, or newest first
    with ``order=desc``), ``limit`` at a time."""

    def query() -> list[AuditEntry]:
        with read_only(services(request).engine).connect() as conn:
            return audit_store.entries(
                conn,
                actor=actor,
                action=action,
                target_type=target_type,
                target_id=target_id,
                since=since,
                until=until,
                cursor=cursor,
                order=order,
                limit=limit,
            )

    found = await run_in_threadpool(query)
    return AuditPage(
        items=[AuditRow.of(e) for e in found],
        next_cursor=found[-1].seq if len(found) == limit else None,
    )
