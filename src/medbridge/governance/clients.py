"""API clients: keys mapped to roles, stored hashed.

Keys are 32 random bytes (urlsafe base64), so a plain SHA-256 is the right hash: there is no
low-entropy password to stretch, and a lookup by hash stays one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Engine, select, update

from medbridge.store import audit
from medbridge.store.sql import upsert
from medbridge.store.tables import api_clients


class Role(StrEnum):
    """What a client may do. Each role includes the ones below it."""

    READER = "reader"  # read stock, journals, dead letters
    INTEGRATION = "integration"  # + submit movements
    ADMIN = "admin"  # + replay dead letters, manage clients and master data


ROLE_RANK = {Role.READER: 1, Role.INTEGRATION: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Client:
    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


class ClientRegistry:
    """The API clients. ``authenticate`` answers from memory for ``ttl`` seconds after it
    looked a key up (found or not): a request does not cost a query. A key revoked or
    re-issued through this registry takes effect at once; through another process (the CLI
    beside a running server), within ``ttl`` seconds."""

    def __init__(self, engine: Engine, ttl: float = 5.0) -> None:
        self.engine, self.ttl = engine, ttl
        self._seen: dict[str, tuple[float, Client | None]] = {}

    def register(
        self, name: str, role: Role, key: str | None = None, *, actor: str = "system:clients"
    ) -> str:
        """Create or re-key the client ``name``; return its key (shown once, stored hashed).
        Audited as ``actor``'s (the key's hash is in the state digest, never in the log)."""
        key = key or new_key()
        row = {
            "name": name,
            "role": role.value,
            "key_hash": hash_key(key),
            "created_at": datetime.now(UTC),
            "revoked_at": None,
        }
        with self.engine.begin() as conn:
            before = audit.row_state(conn, api_clients, exclude=("created_at",), name=name)
            upsert(conn, api_clients, [row], keys=("name",))
            audit.record_change(
                conn,
                actor=actor,
                action="client.register",
                target_type="api_client",
                target_id=name,
                before=before,
                after=audit.row_state(conn, api_clients, exclude=("created_at",), name=name),
                redact=("key_hash",),
            )
        self._seen.clear()
        return key

    def revoke(self, name: str, *, actor: str = "system:clients") -> bool:
        with self.engine.begin() as conn:
            before = audit.row_state(conn, api_clients, exclude=("created_at",), name=name)
            result = conn.execute(
                update(api_clients)
                .where(api_clients.c.name == name, api_clients.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if result.rowcount:
                audit.record_change(
                    conn,
                    actor=actor,
                    action="client.revoke",
                    target_type="api_client",
                    target_id=name,
                    before=before,
                    after=audit.row_state(conn, api_clients, exclude=("created_at",), name=name),
                    redact=("key_hash",),
                )
        self._seen.clear()
        return bool(result.rowcount)

    def known(self, key: str | None) -> tuple[bool, Client | None]:
        """(True, the client or None) when the answer is in memory; (False, None) if not."""
        if not key:
            return True, None
        seen = self._seen.get(hash_key(key))
        if seen is None or time.monotonic() >= seen[0]:
            return False, None
        return True, seen[1]

    def authenticate(self, key: str | None) -> Client | None:
        if not key:
            return None
        known, client = self.known(key)
        if known:
            return client
        client = self._lookup(key)
        if len(self._seen) > 10_000:  # many wrong keys: forget them all, not grow forever
            self._seen.clear()
        self._seen[hash_key(key)] = (time.monotonic() + self.ttl, client)
        return client

    def _lookup(self, key: str) -> Client | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_clients.c.name, api_clients.c.role).where(
                    api_clients.c.key_hash == hash_key(key), api_clients.c.revoked_at.is_(None)
                )
            ).first()
        return None if row is None else Client(row.name, Role(row.role))

    def list(self) -> list[tuple[str, Role, datetime, datetime | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    api_clients.c.name,
                    api_clients.c.role,
                    api_clients.c.created_at,
                    api_clients.c.revoked_at,
                ).order_by(api_clients.c.name)
            )
            return [(r.name, Role(r.role), r.created_at, r.revoked_at) for r in rows]
