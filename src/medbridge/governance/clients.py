"""API clients: keys mapped to roles and facilities, stored hashed.

Keys are 32 random bytes (urlsafe base64), so a plain SHA-256 is the right hash: there is no
low-entropy password to stretch, and a lookup by hash stays one indexed query. A client's key
is also its OAuth2 client secret (``api.oauth``): the client id is its name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update

from medbridge.governance.permissions import Principal, Role, permissions_of
from medbridge.store import audit
from medbridge.store.sql import upsert
from medbridge.store.tables import api_clients

__all__ = [
    "Client",
    "ClientRecord",
    "ClientRegistry",
    "Role",
    "SenderScopes",
    "hash_key",
    "new_key",
]

Client = Principal
"""The principal of an API key (kept under its old name for the routes' signatures)."""


@dataclass(frozen=True)
class ClientRecord:
    name: str
    roles: tuple[Role, ...]
    facilities: frozenset[str] | None
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint(key_hash: str) -> str:
    """What a console session keeps of its client's key: enough to notice a re-issued key,
    never enough to use it (a prefix of a hash of the hash)."""
    return hashlib.sha256(f"session:{key_hash}".encode()).hexdigest()[:16]


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _memo(key: str) -> str:
    """How ``authenticate`` remembers a key it looked up: a key of our length as it is (a
    SHA-256 per request was 1.7% of a single ingest request), anything longer by its hash,
    so that a flood of long wrong keys cannot fill memory."""
    return key if len(key) <= 64 else hash_key(key)


def _roles(roles: Role | Iterable[Role]) -> tuple[Role, ...]:
    found = (roles,) if isinstance(roles, Role) else tuple(dict.fromkeys(Role(r) for r in roles))
    if not found:
        raise ValueError("a client needs at least one role")
    return found


def _principal(row: Any, via: str = "api_key") -> Principal:
    roles = tuple(Role(r) for r in row.roles.split())
    facilities = None if row.facilities is None else frozenset(row.facilities.split())
    return Principal(row.name, permissions_of(roles), facilities, roles, via)


class SenderScopes:
    """The facilities an inbound sender may post for: the facilities of the client it is
    bound to. A source (as connectors name it: ``hl7v2/PYXIS@H1``, ``fhir/<client>``...) is
    bound by ``bindings`` (source -> client name); a FHIR source is bound to the API client
    that sent it. An unbound source is not restricted; a source bound to an unknown or
    revoked client may post for no facility."""

    def __init__(self, registry: ClientRegistry, bindings: Mapping[str, str]) -> None:
        self.registry, self.bindings = registry, dict(bindings)

    def client_of(self, source: str) -> str | None:
        if source in self.bindings:
            return self.bindings[source]
        kind, _, name = source.partition("/")
        return name if kind == "fhir" and name else None

    def facilities(self, source: str) -> frozenset[str] | None:
        name = self.client_of(source)
        return None if name is None else self.client_facilities(name)

    def client_facilities(self, client: str) -> frozenset[str] | None:
        """The facilities of the client ``client`` (none at all when it is unknown or
        revoked: a binding to a client that is gone refuses everything)."""
        found, facilities = self.registry.facilities_of(client)
        return facilities if found else frozenset()


class ClientRegistry:
    """The API clients. ``authenticate`` answers from memory for ``ttl`` seconds after it
    looked a key up (found or not): a request does not cost a query. A key revoked or
    re-issued through this registry takes effect at once; through another process (the CLI
    beside a running server), within ``ttl`` seconds."""

    def __init__(self, engine: Engine, ttl: float = 5.0) -> None:
        self.engine, self.ttl = engine, ttl
        self._seen: dict[str, tuple[float, Principal | None]] = {}
        self._bound: dict[str, tuple[float, bool, frozenset[str] | None]] = {}
        self._sessions: dict[str, tuple[float, tuple[Principal, str] | None]] = {}

    def register(
        self,
        name: str,
        roles: Role | Iterable[Role],
        key: str | None = None,
        facilities: Sequence[str] | None = None,
        *,
        actor: str = "system:clients",
    ) -> str:
        """Create or re-key the client ``name`` with ``roles``, bound to ``facilities`` (None:
        every facility); return its key (shown once, stored hashed). Audited as ``actor``'s
        (the key's hash is in the state digest, never in the log)."""
        key = key or new_key()
        if facilities is not None and not facilities:
            raise ValueError("bind a client to at least one facility, or to none (every one)")
        bad = [f for f in facilities or () if not f or any(c.isspace() for c in f)]
        if bad:
            raise ValueError(f"not facility codes: {bad}")
        row = {
            "name": name,
            "roles": " ".join(_roles(roles)),
            "facilities": None if facilities is None else " ".join(sorted(set(facilities))),
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
        self._bound.clear()
        self._sessions.clear()
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
        self._bound.clear()
        self._sessions.clear()
        return bool(result.rowcount)

    def known(self, key: str | None) -> tuple[bool, Principal | None]:
        """(True, the client or None) when the answer is in memory; (False, None) if not."""
        if not key:
            return True, None
        seen = self._seen.get(_memo(key))
        if seen is None or time.monotonic() >= seen[0]:
            return False, None
        return True, seen[1]

    def authenticate(self, key: str | None) -> Principal | None:
        if not key:
            return None
        known, client = self.known(key)
        if known:
            return client
        client = self._lookup(key)
        if len(self._seen) > 10_000:  # many wrong keys: forget them all, not grow forever
            self._seen.clear()
        self._bound.clear()
        self._seen[_memo(key)] = (time.monotonic() + self.ttl, client)
        return client

    def _lookup(self, key: str) -> Principal | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_clients.c.name, api_clients.c.roles, api_clients.c.facilities).where(
                    api_clients.c.key_hash == hash_key(key), api_clients.c.revoked_at.is_(None)
                )
            ).first()
        return None if row is None else _principal(row)

    def facilities_of(self, name: str) -> tuple[bool, frozenset[str] | None]:
        """(whether ``name`` is an active client, its facilities); from memory for ``ttl``."""
        now = time.monotonic()
        cached = self._bound.get(name)
        if cached is not None and now < cached[0]:
            return cached[1], cached[2]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_clients.c.facilities).where(
                    api_clients.c.name == name, api_clients.c.revoked_at.is_(None)
                )
            ).first()
        facilities = (
            None if row is None or row.facilities is None else frozenset(row.facilities.split())
        )
        if len(self._bound) > 10_000:
            self._bound.clear()
        self._bound[name] = (now + self.ttl, row is not None, facilities)
        return row is not None, facilities

    def _active(self, name: str) -> Any:
        """The row (name, roles, facilities, key hash) of the active client ``name``, or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(
                    api_clients.c.name,
                    api_clients.c.roles,
                    api_clients.c.facilities,
                    api_clients.c.key_hash,
                ).where(api_clients.c.name == name, api_clients.c.revoked_at.is_(None))
            ).first()

    def verify_secret(self, name: str, secret: str) -> Principal | None:
        """The client ``name`` if ``secret`` is its current key (OAuth2 client credentials);
        compared in constant time, the same answer for an unknown name and a wrong secret."""
        row = self._active(name)
        stored = row.key_hash if row is not None else hash_key(new_key())
        if not hmac.compare_digest(stored, hash_key(secret)) or row is None:
            return None
        return _principal(row, via="token")

    def session(self, name: str, secret: str) -> tuple[Principal, str] | None:
        """Sign-in to the console with a client's name and key: the principal and the key's
        fingerprint the session keeps (``current`` ends the session when the key changes)."""
        principal = self.verify_secret(name, secret)
        if principal is None:
            return None
        return replace(principal, via="session"), fingerprint(hash_key(secret))

    def current(self, name: str, key_fingerprint: str) -> Principal | None:
        """The principal of a console session: None once the client is revoked or its key
        re-issued; its roles and facilities as they are now. From memory for ``ttl``."""
        now = time.monotonic()
        cached = self._sessions.get(name)
        if cached is None or now >= cached[0]:
            row = self._active(name)
            found = None if row is None else (_principal(row, via="session"), row.key_hash)
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            self._sessions[name] = cached = (now + self.ttl, found)
        found = cached[1]
        if found is None or not hmac.compare_digest(fingerprint(found[1]), key_fingerprint):
            return None
        return found[0]

    def list(self) -> list[ClientRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    api_clients.c.name,
                    api_clients.c.roles,
                    api_clients.c.facilities,
                    api_clients.c.created_at,
                    api_clients.c.revoked_at,
                ).order_by(api_clients.c.name)
            )
            return [
                ClientRecord(
                    r.name,
                    tuple(Role(x) for x in r.roles.split()),
                    None if r.facilities is None else frozenset(r.facilities.split()),
                    r.created_at,
                    r.revoked_at,
                )
                for r in rows
            ]
