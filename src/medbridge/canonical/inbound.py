"""Inbound movements as connectors see them: still in the source system's own codes.

A connector maps its wire format to an ``InboundMovement`` and never resolves codes itself;
``masterdata`` resolves the item, locations and unit through the cross-references of the
source system. What cannot be resolved is parked in the exception queue, not dropped.

PHI rule: nothing here identifies a patient. ``encounter_ref`` is a keyed pseudonym (HMAC)
computed inside the connector; ``patient_location`` is a ward/bed code, used for the cost
center only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable
from uuid import UUID

from pydantic import AwareDatetime, Field

from medbridge.canonical.base import CanonicalModel, Code, Money
from medbridge.canonical.messages import MessageRecord
from medbridge.canonical.movements import MovementKind


class ItemCodeKind(StrEnum):
    """How a source names an item."""

    NDC = "ndc"  # any NDC spelling; normalised to 11 digits by the resolver
    GTIN = "gtin"
    LOCAL = "local"  # the source system's own code (issuer = the source system)


class ExternalItem(CanonicalModel):
    kind: ItemCodeKind
    code: str = Field(min_length=1, max_length=64)
    issuer: str | None = Field(default=None, max_length=64)
    """For a local code: whose code it is (e.g. ``RXNORM``); default: the source system."""
    text: str | None = Field(default=None, max_length=200)
    """The source's description, kept for the exception queue (never patient data)."""


class InboundMovement(CanonicalModel):
    """One movement in a source system's own codes (location, unit and item not yet mapped)."""

    source_system: Code
    """Whose codes these are: e.g. ``H1^PHARMACY`` (HL7 MSH-3/4), ``gnuhealth:health``."""
    kind: MovementKind
    item: ExternalItem
    location: str | None = Field(min_length=1, max_length=120)
    """None: the message does not say (valid by its standard, e.g. FHIR
    ``SupplyDelivery.supplier`` 0..1): the movement is parked for a reviewer, who fills it in
    (``InboundIntake.fill``) or discards it; never guessed."""
    quantity: Decimal = Field(max_digits=18, decimal_places=6)
    unit: str | None = Field(default=None, max_length=32)
    lot: str | None = Field(default=None, min_length=1, max_length=64)
    expiry: date | None = None
    to_location: str | None = Field(default=None, max_length=120)
    unit_cost: Money | None = None
    patient_location: str | None = Field(default=None, max_length=120)
    occurred_at: AwareDatetime
    encounter_ref: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=200)


# --- the inbound port: what a connector hands its movements to ------------------------------


class InboundOutcome(StrEnum):
    ACCEPTED = "accepted"  # durably appended
    DUPLICATE = "duplicate"  # appended before: no second effect
    EXCEPTION = "exception"  # parked in the exception queue, nothing appended
    REFUSED = "refused"  # the sender may not post for that facility: nothing stored at all


@dataclass(frozen=True)
class UnresolvedCode:
    """A code of an inbound movement that no cross-reference resolves."""

    index: int
    field: str
    value: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "field": self.field,
            "value": self.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class InboundReceipt:
    outcome: InboundOutcome
    event_ids: tuple[UUID, ...] = ()
    exception_id: int | None = None
    problems: tuple[UnresolvedCode, ...] = field(default_factory=tuple)


class InboundSink(Protocol):
    """Where a connector hands the movements of ONE source message, with that message's
    idempotency key. Returns only once the outcome is durable (appended, or parked), or
    ``REFUSED`` (nothing stored) for a movement of a facility the sender may not post for.
    ``sender``: the API client the connection is bound to (an MLLP source address), beside
    whatever the ``source`` itself is bound to. ``message``: the record of the message for
    the message store, written with the outcome (applied, duplicate, parked); a ``REFUSED``
    one the connector records itself (``canonical.messages.MessageLog``), with its NAK."""

    def receive(
        self,
        drafts: Sequence[InboundMovement],
        *,
        source: str,
        idempotency_key: str,
        correlation_id: UUID | None = None,
        sender: str | None = None,
        message: MessageRecord | None = None,
    ) -> InboundReceipt: ...


@runtime_checkable
class AsyncInboundSink(Protocol):
    """An ``InboundSink`` that can also wait on an event loop without a thread: the outcome
    is durable when the coroutine returns (a connector's listener checks for it once)."""

    async def receive_async(
        self,
        drafts: Sequence[InboundMovement],
        *,
        source: str,
        idempotency_key: str,
        correlation_id: UUID | None = None,
        sender: str | None = None,
        message: MessageRecord | None = None,
    ) -> InboundReceipt: ...
