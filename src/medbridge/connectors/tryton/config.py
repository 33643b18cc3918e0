"""Typed configuration of the Tryton ERP adapter (one instance per Tryton database)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr

NAME = "tryton"


class MoveReferenceField(StrEnum):
    """Where MedBridge's ``entry_id`` goes on an ``account.move`` (its idempotency key).

    Tryton 7.0's ``account.move`` has no ``reference`` field: ``description`` (a free text
    field, searchable, never rewritten by Tryton) carries it; the entry's own description then
    goes on every move line. Frozen per database: changing it makes every posted entry look
    new, and a retry would post it again.
    """

    DESCRIPTION = "description"
    """``account.move.description`` = ``entry_id`` exactly (the default, 7.0)."""


class RpcRoute(StrEnum):
    """Where a trytond serves a database's JSON-RPC: the one wire difference MedBridge meets
    between the Tryton series it runs against (measured on 7.0.59 and 8.0.12; trytond's
    dispatcher routes ``/<database>/`` through 7.8 and ``/<database>/rpc/`` from 8.0.0 on).
    Each answers the other's route with HTTP 405 or 401."""

    DATABASE = "database"
    """``POST <url>/<database>/`` (Tryton 7.0, the default)."""
    DATABASE_RPC = "database-rpc"
    """``POST <url>/<database>/rpc/`` (Tryton 8.0)."""

    @classmethod
    def for_series(cls, series: str) -> RpcRoute:
        """The route of a Tryton series (``"7.0"``, ``"8.0"`` ...)."""
        major, _, minor = series.partition(".")
        return cls.DATABASE_RPC if (int(major), int(minor or 0)) >= (8, 0) else cls.DATABASE


class TrytonConfig(BaseModel):
    """Where the Tryton server is, who to log in as, and where MedBridge's postings go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: AnyHttpUrl
    """trytond's base URL, e.g. ``http://127.0.0.1:8000/``; calls go to ``<url>/<database>/``."""
    database: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.-]+$")
    user: str = Field(default="admin", min_length=1)
    password: SecretStr
    timeout: float = Field(default=30.0, gt=0)
    """Seconds per call. A call that times out raises ``ErpUnavailable``: it may have been
    applied, which the reference check before every create makes safe."""
    journal: str = Field(default="MB", min_length=1)
    """Code of the ``account.journal`` MedBridge's journal entries are posted in."""
    move_reference: MoveReferenceField = MoveReferenceField.DESCRIPTION
    rpc_route: RpcRoute = RpcRoute.DATABASE
    """Where the server serves JSON-RPC: ``database`` for Tryton 7.0, ``database-rpc`` for 8.0."""
    warehouse: str | None = None
    """Code of the ``stock.location`` warehouse receipts go to; None: the first warehouse."""

    @property
    def rpc_url(self) -> str:
        base = f"{str(self.url).rstrip('/')}/{self.database}/"
        return base + "rpc/" if self.rpc_route is RpcRoute.DATABASE_RPC else base
