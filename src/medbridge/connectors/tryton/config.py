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
    warehouse: str | None = None
    """Code of the ``stock.location`` warehouse receipts go to; None: the first warehouse."""

    @property
    def rpc_url(self) -> str:
        return f"{str(self.url).rstrip('/')}/{self.database}/"
