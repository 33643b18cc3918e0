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


class TrytonSeries(StrEnum):
    """The Tryton series of the server: what differs on the wire between them, as MedBridge
    meets it (measured on 7.0.59 and 8.0.12 against the adapter's whole contract suite):

    | | 7.0 | 8.0 |
    | --- | --- | --- |
    | JSON-RPC route | ``<url>/<database>/`` | ``<url>/<database>/rpc/`` |
    | ``stock.shipment.in`` last step | button ``done`` | button ``do`` |

    (trytond's sources: ``/<database>/`` and ``done`` through 7.8, the others from 8.0.0.)
    Each series answers the other's route with HTTP 405 or 401, and the other's button with
    403. Everything else the adapter calls (models, fields, buttons) is the same."""

    V7_0 = "7.0"
    V8_0 = "8.0"

    @classmethod
    def of(cls, version: str) -> TrytonSeries:
        """The series of a trytond version (``"7.0.59"``, ``"8.0"`` ...)."""
        major, minor = (int(part) for part in [*version.split("."), "0"][:2])
        return cls.V8_0 if (major, minor) >= (8, 0) else cls.V7_0

    @property
    def rpc_suffix(self) -> str:
        return "rpc/" if self is TrytonSeries.V8_0 else ""

    @property
    def receipt_done_button(self) -> str:
        return "do" if self is TrytonSeries.V8_0 else "done"


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
    series: TrytonSeries = TrytonSeries.V7_0
    """The server's Tryton series (``7.0``, ``8.0``): its JSON-RPC route and button names."""
    warehouse: str | None = None
    """Code of the ``stock.location`` warehouse receipts go to; None: the first warehouse."""

    @property
    def rpc_url(self) -> str:
        return f"{str(self.url).rstrip('/')}/{self.database}/{self.series.rpc_suffix}"
