"""The audit log's hash chain, pure: canonical JSON, state digests, row hashes, verification.

A row's ``hash`` is SHA-256 over its predecessor's hash followed by the canonical JSON of the
row's own fields (``seq``, ``at``, ``actor``, ``action``, ``target_type``, ``target_id``,
``before_digest``, ``after_digest``, ``detail``); the first row's predecessor is
``GENESIS``. The chain head (the last row's ``seq`` and ``hash``, kept apart from the rows)
closes the chain at its end, so that removing the last rows is detected as well as changing
or removing any other.

Frozen: the canonical serialization and the field list are part of every stored hash; a
change to either makes every existing chain fail verification. Add a field only with a new
hash version.

What the chain does not do: anyone who can write the database can recompute every hash
after a change (there is no key outside the database); the chain proves that the log was
not changed by someone who did not also rewrite everything after the change and the head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

GENESIS = "0" * 64
"""The ``prev_hash`` of the first row."""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in audited state: times are timezone-aware")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=canonical_json)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> str:
    """One text per value: keys sorted, no whitespace, UTF-8 as is; times in UTC ISO 8601,
    decimals as their normalized digits (``1.50`` and ``1.5`` are the same amount)."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_plain,
    )


def plain(value: Any) -> Any:
    """``value`` as the JSON it is hashed as (what the database stores in ``detail``)."""
    return json.loads(canonical_json(value))


def digest(state: Mapping[str, Any] | None) -> str | None:
    """SHA-256 of a state's canonical JSON; None for no state (before a creation)."""
    if state is None:
        return None
    return hashlib.sha256(canonical_json(state).encode()).hexdigest()


REDACTED = "<redacted>"


def changes(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    redact: Collection[str] = (),
) -> dict[str, Any]:
    """The fields that differ, each side's values: ``{"before": {...}, "after": {...}}``;
    a field in ``redact`` shows that it changed, not its values."""
    old, new = plain(dict(before or {})), plain(dict(after or {}))
    fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    for side in (old, new):
        for name in redact:
            if side.get(name) is not None:
                side[name] = REDACTED
    return {
        "before": {k: old[k] for k in fields if k in old} if before is not None else None,
        "after": {k: new[k] for k in fields if k in new} if after is not None else None,
    }


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log, as stored."""

    seq: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    before_digest: str | None
    after_digest: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def row_hash(
    prev_hash: str,
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    before_digest: str | None,
    after_digest: str | None,
    detail: Mapping[str, Any],
) -> str:
    fields = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "before_digest": before_digest,
        "after_digest": after_digest,
        "detail": detail,
    }
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode()).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """The hash ``entry`` should carry, given its fields and its ``prev_hash``."""
    return row_hash(
        entry.prev_hash,
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        before_digest=entry.before_digest,
        after_digest=entry.after_digest,
        detail=entry.detail,
    )


@dataclass(frozen=True)
class ChainHead:
    """The last row's ``seq`` and ``hash`` (``0`` and ``GENESIS`` for an empty log)."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Verification:
    """``broken_at`` is None for an intact chain; else the seq of the first broken link and
    ``reason`` says what is wrong there."""

    verified: int
    broken_at: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(entries: Iterable[AuditEntry], head: ChainHead | None) -> Verification:
    """Walk the rows in ``seq`` order: each must follow the previous one (no gap), name its
    predecessor's hash and carry the hash of its own fields; the last must be the head.
    ``head`` None: the head record is missing (only an empty log may lack it)."""
    expected_seq, prev_hash, verified = 1, GENESIS, 0
    for entry in entries:
        if entry.seq != expected_seq:
            missing = (
                f"row {expected_seq} is missing (the next row is {entry.seq})"
                if entry.seq > expected_seq
                else f"row {entry.seq} is out of order (expected {expected_seq})"
            )
            return Verification(verified, expected_seq, missing)
        if entry.prev_hash != prev_hash:
            return Verification(
                verified,
                entry.seq,
                f"row {entry.seq}: prev_hash {entry.prev_hash[:12]}... does not match the hash "
                f"of row {entry.seq - 1} ({prev_hash[:12]}...)",
            )
        recomputed = entry_hash(entry)
        if entry.hash != recomputed:
            return Verification(
                verified,
                entry.seq,
                f"row {entry.seq}: its content does not match its hash (a field was changed)",
            )
        expected_seq, prev_hash, verified = entry.seq + 1, entry.hash, verified + 1
    last = expected_seq - 1
    if head is None:
        if last == 0:
            return Verification(0)
        return Verification(verified, last, "the chain head record is missing")
    if head.seq != last:
        if head.seq > last:
            return Verification(
                verified,
                last + 1,
                f"row {last + 1} is missing: the chain head records {head.seq} row(s), "
                f"the log ends at row {last}",
            )
        return Verification(
            verified, head.seq + 1, f"the chain head records {head.seq} row(s), the log has {last}"
        )
    if head.hash != prev_hash:
        return Verification(
            verified, last, f"the chain head's hash does not match the hash of row {last}"
        )
    return Verification(verified)
