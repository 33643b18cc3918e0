"""A message as it crossed MedBridge's edge: one inbound or outbound message of any protocol,
with its status, for the message browser (``flows.messages``) and its store
(``store.messages``).

A connector describes the message it received in a ``MessageRecord`` and hands it over with
its movements (``InboundSink.receive(message=...)``); the store writes its row in the same
transaction as the message's events (the group commit), so a message is never ``applied``
without its row, nor has a row saying ``applied`` without its events. A message that stores
nothing (refused, or a bad one answered with a negative acknowledgement) is recorded through
a ``MessageLog``.

PHI rule: ``raw`` is the message as received, patient fields included; it is stored apart
(the bodies table, pruned by retention) and shown only masked (``flows.messages``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from uuid_utils.compat import uuid7


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class WireProtocol(StrEnum):
    """The wire protocol of a message (the value is stored: frozen)."""

    HL7V2 = "hl7v2"
    FHIR = "fhir"
    X12 = "x12"
    CXML = "cxml"
    FLATFILE = "flatfile"
    SCAN = "scan"
    ERP = "erp"


class MessageStatus(StrEnum):
    """What became of a message (the value is stored: frozen).

    ``dead_lettered`` is never stored: a message is shown so when a consumer dead-lettered an
    event of its correlation (a join on ``correlation_id`` with the dead letters)."""

    APPLIED = "applied"  # its events were appended (inbound)
    DUPLICATE = "duplicate"  # a resend: every event of it was appended before
    PARKED = "parked"  # valid, but incomplete for the business: in the exception queue
    REFUSED = "refused"  # malformed, or not the sender's to send: nothing stored, NAK sent
    DEAD_LETTERED = "dead_lettered"  # a consumer gave up on one of its events (derived)
    SENT = "sent"  # outbound: handed to the peer
    ACKNOWLEDGED = "acknowledged"  # outbound: the peer confirmed it
    FAILED = "failed"  # outbound: the peer refused it, or it could not be sent


def new_message_id() -> str:
    """A time-ordered UUIDv7, as text (the row's key)."""
    return str(uuid7())


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class MessageRecord:
    """One message, as its connector saw it. ``status``/``ack``/``error`` are left unset for
    a message whose events go through the group commit: the writer sets ``applied`` or
    ``duplicate`` from the append's results, and asks ``acknowledge`` (if given) for the
    acknowledgement that status gets, so that the connector sends exactly what is stored.
    ``facility`` and ``business_key`` default to those of its first movement."""

    protocol: str
    connector: str
    raw: str
    direction: Direction = Direction.IN
    sender: str = ""
    message_type: str = ""
    control_id: str = ""
    business_key: str = ""
    facility: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    media_type: str = "text/plain"
    status: MessageStatus | None = None
    ack: str | None = None
    error: str | None = None
    event_count: int = 0
    received_at: datetime = field(default_factory=_now)
    id: str = field(default_factory=new_message_id)
    acknowledge: Callable[[MessageStatus], str | None] | None = field(default=None, repr=False)

    def settle(self, status: MessageStatus) -> None:
        """Set the status and, if the connector said how, the acknowledgement it gets."""
        self.status = status
        if self.acknowledge is not None and self.ack is None:
            try:
                self.ack = self.acknowledge(status)
            except Exception as problem:  # the row must still be written
                self.ack = f"(acknowledgement not recorded: {type(problem).__name__})"


@dataclass(frozen=True)
class MessageFilter:
    """Selects messages; every field given must match (None: any). ``since`` inclusive,
    ``until`` exclusive. ``facilities``: the caller's facility scope (None: every facility;
    a scoped caller never sees a message of no facility). ``status`` may be
    ``dead_lettered`` (derived: a dead letter of the message's correlation is waiting)."""

    control_id: str | None = None
    business_key: str | None = None
    sender: str | None = None
    protocol: str | None = None
    message_type: str | None = None
    status: str | None = None
    direction: str | None = None
    connector: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    facilities: frozenset[str] | None = None


@runtime_checkable
class MessageLog(Protocol):
    """Where a connector records a message that stores nothing else (a refusal: a parse
    error, a sender outside its scope, with the negative acknowledgement sent), and the
    acknowledgement of a message recorded without one (parked: its row is written with the
    exception, before the acknowledgement is built). Both are queued for the next group
    commit and not waited for: the sender's answer never waits on the browser's row."""

    def record_message(self, record: MessageRecord) -> object: ...

    def record_ack(self, message_id: str, ack: str) -> object: ...


__all__ = [
    "Direction",
    "MessageFilter",
    "MessageLog",
    "MessageRecord",
    "MessageStatus",
    "WireProtocol",
    "new_message_id",
]
