"""The message store behind the message browser: one row per message that crossed the edge
(``messages``), its raw body apart (``message_bodies``) so that retention can drop the body
and keep the row.

Every search runs newest first on the keyset (received_at, id): each filter has an index that
ends in those two columns, so a filtered page is an index range read on SQLite and
PostgreSQL alike, however many rows are stored. Each index costs the hot path about 3 us a
message on SQLite (measured): there is none on ``idempotency_key`` (only an exception's
replay looks it up, among the parked rows of ``ix_messages_status``).
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from medbridge.store.tables.base import metadata
from medbridge.store.types import UTCDateTime

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),  # UUIDv7: time-ordered
    Column("received_at", UTCDateTime, nullable=False),
    Column("direction", String(3), nullable=False),  # in | out
    Column("protocol", String(16), nullable=False),  # hl7v2 fhir x12 cxml flatfile scan erp
    Column("connector", String(64), nullable=False),
    Column("sender", String(200), nullable=False),  # partner, sender or destination
    Column("message_type", String(64), nullable=False),  # e.g. RDS^O13, 810, MedicationDispense
    Column("control_id", String(200), nullable=False),  # MSH-10, ISA13, payloadID ...
    Column("business_key", String(200), nullable=False),  # item@location, PO number ...
    Column("facility", String(64)),
    Column("status", String(16), nullable=False),
    Column("correlation_id", String(36)),
    Column("idempotency_key", String(200)),
    Column("event_count", Integer, nullable=False),
    Column("ack", Text),  # the acknowledgement sent (inbound) or received (outbound)
    Column("error", Text),
    Index("ix_messages_received", "received_at", "id"),
    Index("ix_messages_control_id", "control_id", "received_at", "id"),
    Index("ix_messages_business_key", "business_key", "received_at", "id"),
    Index("ix_messages_sender_status", "sender", "status", "received_at", "id"),
    Index("ix_messages_type", "message_type", "received_at", "id"),
    Index("ix_messages_status", "status", "received_at", "id"),
    Index("ix_messages_protocol", "protocol", "received_at", "id"),
    Index("ix_messages_facility", "facility", "received_at", "id"),
    Index("ix_messages_correlation", "correlation_id"),
)

message_bodies = Table(
    "message_bodies",
    metadata,
    Column("message_id", String(36), primary_key=True),  # messages.id
    Column("connector", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("media_type", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_message_bodies_connector_received", "connector", "received_at"),
)

__all__ = ["message_bodies", "messages"]
