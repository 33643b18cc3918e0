"""The event envelope every canonical event travels in: a CloudEvents 1.0 event in structured
mode. The context attributes are the spec's (``specversion``, ``id``, ``type``, ``source``,
``subject``, ``time``, ``datacontenttype``); MedBridge's own are extension attributes, named as
the spec requires (lowercase letters and digits only): ``correlationid``, ``causationid``,
``idempotencykey``. In Python they are ``correlation_id``, ``causation_id`` and
``idempotency_key``; envelopes written before the rename (snake_case keys) still read.

``correlation_id`` is the id of the first event of the business transaction (an event that
starts one carries its own id); ``causation_id`` is the event that caused this one;
``idempotency_key`` is derived from the source's own identity (sending facility + HL7 MSH-10,
X12 sender + ISA13 + GS06 + ST02, cXML payloadID, or the API client's key). The derivation of
an idempotency key is frozen once published: changing it would re-apply old messages.

``traceparent`` and ``tracestate`` are the CloudEvents Distributed Tracing extension: the W3C
trace context of the span that produced the event (the MLLP receipt, the HTTP request), set
only when tracing is on. Plain strings here: the canonical model knows no tracing library.
Consumers continue that trace; an event without them is traced under its correlation id
(``bus.port.trace_parent``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import AliasChoices, AwareDatetime, ConfigDict, Field, model_validator
from uuid_utils.compat import uuid7

from medbridge.canonical.base import CanonicalModel

DataT = TypeVar("DataT", bound=CanonicalModel)

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\.v[0-9]+$"
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
"""W3C trace context ``traceparent``: version, trace id, parent span id, flags."""


def new_event_id() -> UUID:
    """A time-ordered UUIDv7."""
    return uuid7()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _extension(name: str, legacy: str) -> Any:
    """A CloudEvents extension attribute: ``name`` on the wire, ``legacy`` still read."""
    return {
        "serialization_alias": name,
        "validation_alias": AliasChoices(name, legacy),
    }


class EventEnvelope(CanonicalModel, Generic[DataT]):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        str_strip_whitespace=True,
        serialize_by_alias=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    specversion: Literal["1.0"] = "1.0"
    id: UUID = Field(default_factory=new_event_id)
    type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=120)
    source: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=200)
    time: AwareDatetime = Field(default_factory=utcnow)
    correlation_id: UUID | None = Field(
        default=None, **_extension("correlationid", "correlation_id")
    )
    causation_id: UUID | None = Field(default=None, **_extension("causationid", "causation_id"))
    idempotency_key: str = Field(
        min_length=1, max_length=200, **_extension("idempotencykey", "idempotency_key")
    )
    datacontenttype: Literal["application/json"] = "application/json"
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT_PATTERN)
    tracestate: str | None = Field(default=None, max_length=512)
    data: DataT

    @model_validator(mode="after")
    def _correlation_defaults_to_self(self) -> EventEnvelope[DataT]:
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.id)
        return self

    @property
    def correlation(self) -> UUID:
        assert self.correlation_id is not None  # set by the validator
        return self.correlation_id
