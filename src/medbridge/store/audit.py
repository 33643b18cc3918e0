"""The audit log in the database: append a row in the caller's transaction, read, verify.

``append`` (and ``record_change``) run inside the transaction of the change they record:
a change rolled back leaves no audit row, and no change commits without its row. Appends are
serialized by the chain head row: on PostgreSQL ``SELECT ... FOR UPDATE`` of that row waits
for the previous appender's commit and then reads its new seq and hash (READ COMMITTED
re-reads a locked row once it is released); on SQLite every writing transaction holds the
database's write lock from its ``BEGIN IMMEDIATE`` (``store.db``). A transaction appends
last, after its own writes: the head is the last lock it takes, so waiting for it never
closes a cycle with the rows the change itself locked.

Actors: an API client's name, ``cli:<os user>`` (``cli_actor``), or ``system:<component>``.
Rows are never updated or deleted here; ``verify`` finds it if anyone did.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from medbridge.domain.audit import (
    GENESIS,
    AuditEntry,
    ChainHead,
    Verification,
    changes,
    digest,
    plain,
    row_hash,
    verify_chain,
)
from medbridge.store.db import read_only
from medbridge.store.sql import BulkInsert, upsert
from medbridge.store.tables import audit_chain_head as head_table
from medbridge.store.tables import audit_log as t

State = Mapping[str, Any]

VERIFY_CHUNK = 1000


def system_actor(component: str) -> str:
    return f"system:{component}"


def cli_actor() -> str:
    """``cli:<the operating-system user running the command>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's anonymous uid)
        user = "unknown"
    return f"cli:{user}"


class AuditError(Exception):
    """An audit row that cannot be written as given (an empty actor, an over-long field)."""


def _locked_head(conn: Connection) -> ChainHead:
    query = select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is not None:
        return ChainHead(int(row.seq), row.hash)
    # No head row (a schema emptied by hand): start it from the log's last row, once.
    last = conn.execute(select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
    start = {"id": 1, "seq": 0, "hash": GENESIS}
    if last is not None:
        start |= {"seq": int(last.seq), "hash": last.hash}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(head_table).values(start).on_conflict_do_nothing())
    return _locked_head(conn)


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | int,
    before: State | None = None,
    after: State | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one row in ``conn``'s transaction: ``before``/``after`` are the target's state
    (stored as digests only), ``detail`` a small JSON of the change (never patient data)."""
    if not actor or len(actor) > 200:
        raise AuditError(f"an audit actor is 1 to 200 characters, not {actor!r}")
    head = _locked_head(conn)
    fields: dict[str, Any] = {
        "seq": head.seq + 1,
        "at": datetime.now(UTC),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": str(target_id)[:300],
        "before_digest": digest(before),
        "after_digest": digest(after),
        "detail": plain(dict(detail or {})),
    }
    entry = AuditEntry(**fields, prev_hash=head.hash, hash=row_hash(head.hash, **fields))
    conn.execute(insert(t).values(**fields, prev_hash=entry.prev_hash, hash=entry.hash))
    conn.execute(
        update(head_table).where(head_table.c.id == 1).values(seq=entry.seq, hash=entry.hash)
    )
    return entry


@dataclass(frozen=True)
class Change:
    """One row of ``append_many``: what ``append`` takes, for one target."""

    action: str
    target_type: str
    target_id: str | int
    before: State | None = None
    after: State | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


_BULK_ROWS = BulkInsert(
    t,
    (
        "seq",
        "at",
        "actor",
        "action",
        "target_type",
        "target_id",
        "before_digest",
        "after_digest",
        "detail",
        "prev_hash",
        "hash",
    ),
    dialect_binds=True,
    copy=True,
)


def append_many(conn: Connection, changes_: Sequence[Change], *, actor: str) -> int:
    """Append one row per change, chained in order, in ``conn``'s transaction: the head is
    locked once and the rows go in as one executemany (a bulk import's per-item rows: 100,000
    ``append`` calls cost a head read and update each). The rows are exactly what ``append``
    would have written one by one. Returns the number of rows appended."""
    if not changes_:
        return 0
    if not actor or len(actor) > 200:
        raise AuditError(f"an audit actor is 1 to 200 characters, not {actor!r}")
    head = _locked_head(conn)
    seq, prev = head.seq, head.hash
    at = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for change in changes_:
        seq += 1
        fields: dict[str, Any] = {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": change.action,
            "target_type": change.target_type,
            "target_id": str(change.target_id)[:300],
            "before_digest": digest(change.before),
            "after_digest": digest(change.after),
            "detail": plain(dict(change.detail)),
        }
        hashed = row_hash(prev, **fields)
        rows.append(fields | {"prev_hash": prev, "hash": hashed})
        prev = hashed
    _BULK_ROWS(conn, rows)
    conn.execute(update(head_table).where(head_table.c.id == 1).values(seq=seq, hash=prev))
    return len(rows)


def record_change(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | int,
    before: State | None,
    after: State | None,
    detail: Mapping[str, Any] | None = None,
    redact: tuple[str, ...] = (),
) -> AuditEntry | None:
    """Append a row for a write whose state went from ``before`` to ``after``; nothing when
    the write changed nothing (a re-seed, an idempotent re-sync). ``detail`` gets the fields
    that differ, each side's values (those in ``redact``: only that they changed)."""
    if before is not None and after is not None and digest(before) == digest(after):
        return None
    return append(
        conn,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        before=before,
        after=after,
        detail={"changes": changes(before, after, redact)} | dict(detail or {}),
    )


def upsert_audited(
    conn: Connection,
    table: Table,
    row: dict[str, Any],
    keys: Sequence[str],
    *,
    actor: str,
    action: str,
    target_type: str,
) -> AuditEntry | None:
    """Upsert one row and record its change (one audit row; none if nothing changed); the
    target's id is its key's values joined by ``/``."""
    key = {k: row[k] for k in keys}
    before = row_state(conn, table, **key)
    upsert(conn, table, [row], keys=keys)
    return record_change(
        conn,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id="/".join(str(key[k]) for k in keys),
        before=before,
        after=row_state(conn, table, **key),
    )


def row_state(
    conn: Connection, table: Table, *, exclude: tuple[str, ...] = (), **key: Any
) -> dict[str, Any] | None:
    """The row of ``table`` with ``key`` as a dict (its columns but ``exclude``), or None."""
    columns = [c for c in table.c if c.name not in exclude]
    row = conn.execute(select(*columns).filter_by(**key)).first()
    return None if row is None else dict(row._mapping)


# --- read side -----------------------------------------------------------------------------


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=int(row.seq),
        at=row.at,
        actor=row.actor,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        before_digest=row.before_digest,
        after_digest=row.after_digest,
        detail=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def entries(
    conn: Connection,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int | None = None,
    order: Literal["asc", "desc"] = "asc",
    limit: int = 100,
) -> list[AuditEntry]:
    """Rows matching every filter given (``since`` inclusive, ``until`` exclusive), by seq;
    ``cursor``: only rows after it in that order (keyset pagination)."""
    conditions = []
    for column, value in (
        (t.c.actor, actor),
        (t.c.action, action),
        (t.c.target_type, target_type),
        (t.c.target_id, target_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if since is not None:
        conditions.append(t.c.at >= since)
    if until is not None:
        conditions.append(t.c.at < until)
    if cursor is not None:
        conditions.append(t.c.seq > cursor if order == "asc" else t.c.seq < cursor)
    by = t.c.seq.asc() if order == "asc" else t.c.seq.desc()
    rows = conn.execute(select(t).where(*conditions).order_by(by).limit(limit))
    return [_entry(r) for r in rows]


def chain_head(conn: Connection) -> ChainHead | None:
    row = conn.execute(
        select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
    ).first()
    return None if row is None else ChainHead(int(row.seq), row.hash)


def _all_entries(conn: Connection, chunk: int) -> Iterator[AuditEntry]:
    cursor = None
    while True:
        found = entries(conn, cursor=cursor, limit=chunk)
        yield from found
        if len(found) < chunk:
            return
        cursor = found[-1].seq


def verify(engine: Engine, chunk: int = VERIFY_CHUNK) -> Verification:
    """Recompute the whole chain from one snapshot of the database (REPEATABLE READ on
    PostgreSQL, a deferred read transaction on SQLite): concurrent appends are not seen
    half-way."""
    reader: Engine = (
        engine.execution_options(isolation_level="REPEATABLE READ")
        if engine.dialect.name == "postgresql"
        else read_only(engine)
    )
    with reader.begin() as conn:
        head = chain_head(conn)
        return verify_chain(_all_entries(conn, chunk), head)
