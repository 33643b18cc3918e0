"""The tables of the business processes (SQLAlchemy Core): trading partners, human tasks,
replenishment and procure-to-pay, the audit log and the alert states. Part of
``medbridge.store.tables`` (one metadata), which re-exports them; import from there."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from medbridge.store.tables.base import SeqId, metadata
from medbridge.store.types import MONEY, QUANTITY, UNIT_COST, UTCDateTime

# --- trading partners (X12, cXML) ----------------------------------------------------------

trade_interchanges = Table(
    "trade_interchanges",
    metadata,
    Column("key", String(200), primary_key=True),  # x12:<qual>:<sender>:<ISA13> | cxml:<payloadID>
    Column("partner", String(64), nullable=False, index=True),
    Column("wire_format", String(8), nullable=False),  # x12 | cxml
    Column("direction", String(3), nullable=False),  # in | out
    Column("status", Integer, nullable=False),  # the HTTP status answered (or sent back)
    Column("answer", Text, nullable=False),  # the 997 / cXML Response given, resent on a resend
    Column("received_at", UTCDateTime, nullable=False),
)

trade_documents = Table(
    "trade_documents",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("interchange", String(200), nullable=False, index=True),
    Column("partner", String(64), nullable=False),
    Column("direction", String(3), nullable=False),  # in | out
    Column("wire_format", String(8), nullable=False),
    Column("kind", String(20), nullable=False),  # order | acknowledgement | ship_notice ...
    Column("number", String(35), nullable=False),  # the partner's document number
    Column("document", JSON, nullable=False),  # the canonical document
    Column("event_id", String(36)),  # its event on the bus (inbound)
    Column("correlation_id", String(36), nullable=False, index=True),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_trade_documents_lookup", "partner", "kind", "number"),
)

trade_control_numbers = Table(
    "trade_control_numbers",
    metadata,
    Column("partner", String(64), primary_key=True),
    Column("name", String(16), primary_key=True),  # isa | gs | st
    Column("last", BigInteger, nullable=False),
)

# --- human tasks (exception work queues) ---------------------------------------------------

work_items = Table(
    "work_items",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),
    Column("queue", String(16), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("context", JSON, nullable=False),
    Column("actions", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # open | decided
    Column("correlation_id", String(36), index=True),
    Column("workflow_id", String(200)),
    Column("decision", JSON),  # {action, quantity, unit_price, note}
    Column("decided_by", String(100)),
    Column("decided_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("facility", String(64)),  # what the task is about; NULL: several or none
    Index("ix_work_items_queue_status", "queue", "status"),
)

# --- replenishment and procure-to-pay (durable workflows) ----------------------------------

replenishment_policies = Table(
    "replenishment_policies",
    metadata,
    Column("item", String(64), ForeignKey("items.code"), primary_key=True),
    Column("location", String(64), ForeignKey("locations.code"), primary_key=True),
    Column("par_level", QUANTITY, nullable=False),  # base units
    Column("reorder_point", QUANTITY),  # None: computed from usage and lead time
    Column("safety_stock", QUANTITY),  # None: computed
)

replenishment_lines = Table(
    "replenishment_lines",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("trigger", String(120), nullable=False, unique=True),  # item:location:<event id>
    Column("item", String(64), nullable=False),
    Column("location", String(64), nullable=False),
    Column("facility", String(64), nullable=False),
    Column("supplier", String(64), nullable=False),
    Column("contract", String(64), nullable=False),
    Column("unit", String(16), nullable=False),  # the contract unit
    Column("quantity", QUANTITY, nullable=False),  # contract units
    Column("unit_price", UNIT_COST, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("pack_factor", QUANTITY, nullable=False),
    Column("pack_multiple", QUANTITY, nullable=False),
    Column("minimum_order_quantity", QUANTITY, nullable=False),
    Column("lead_time_days", Integer, nullable=False),
    Column("urgency", String(8), nullable=False),  # routine | stat
    Column("correlation_id", String(36), nullable=False),  # the dispense that crossed the ROP
    Column("proposed_at", UTCDateTime, nullable=False),
    Column("order_reference", String(64), index=True),  # None until released in a PO
    Column("status", String(12), nullable=False),  # open | ordered | received | cancelled
    Index("ix_replenishment_lines_position", "item", "location", "status"),
)

purchase_orders = Table(
    "purchase_orders",
    metadata,
    Column("reference", String(64), primary_key=True),  # our order number, at the supplier too
    Column("supplier", String(64), nullable=False),
    Column("facility", String(64), nullable=False),
    Column("urgency", String(8), nullable=False),
    Column("lines", JSON, nullable=False),  # [{line, item, location, unit, wire_unit, ...}]
    Column("correlation_id", String(36), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("erp_id", String(64)),
    Column("workflow_started", Integer, nullable=False),  # 0 | 1
    Column("note", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

goods_receipts = Table(
    "goods_receipts",
    metadata,
    Column("reference", String(120), primary_key=True),  # <order>:<shipment id>
    Column("order_reference", String(64), nullable=False, index=True),
    Column("shipment_id", String(64), nullable=False),
    Column("lines", JSON, nullable=False),  # [{line, item, unit, quantity, base_quantity, lot..}]
    Column("status", String(12), nullable=False),  # noticed | received | rejected | counted
    Column("received_by", String(100), nullable=False),
    Column("erp_id", String(64)),
    Column("correlation_id", String(36), nullable=False, index=True),
    Column("received_at", UTCDateTime, nullable=False),
)

invoice_matches = Table(
    "invoice_matches",
    metadata,
    Column("reference", String(200), primary_key=True),  # the invoice's wire identity
    Column("supplier", String(64), nullable=False),
    Column("number", String(64), nullable=False),  # stripped, upper-cased
    Column("total", MONEY, nullable=False),
    Column("order_reference", String(64), index=True),
    Column("status", String(20), nullable=False),
    Column("result", JSON, nullable=False),  # exceptions, matched lines, posting
    Column("erp_id", String(64)),
    Column("correlation_id", String(36), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_invoice_matches_number", "supplier", "number"),
)

# --- the audit log (hash-chained: medbridge.domain.audit) --------------------------------

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", SeqId, primary_key=True, autoincrement=False),  # 1, 2, 3 ... no gaps
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),  # client name | cli:<user> | system:<part>
    Column("action", String(64), nullable=False),  # e.g. masterdata.item.save
    Column("target_type", String(64), nullable=False),
    Column("target_id", String(300), nullable=False),
    Column("before_digest", String(64)),
    Column("after_digest", String(64)),
    Column("detail", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_actor", "actor", "seq"),
    Index("ix_audit_log_action", "action", "seq"),
    Index("ix_audit_log_target", "target_type", "target_id", "seq"),
    Index("ix_audit_log_at", "at"),
)

audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True),  # one row: id 1
    Column("seq", SeqId, nullable=False),  # the last row's seq (0: empty log)
    Column("hash", String(64), nullable=False),  # the last row's hash
)
"""Updated with every append, in its transaction; on PostgreSQL the append locks this row
(``FOR UPDATE``), which keeps the chain linear under concurrent writers."""

# --- alerts (medbridge.domain.alerts) --------------------------------------------------------

alert_states = Table(
    "alert_states",
    metadata,
    Column("rule", String(100), primary_key=True),
    Column("state", String(8), nullable=False),  # ok | firing
    Column("incident", Integer, nullable=False),  # incidents opened so far; the current one
    Column("reading", String(40), nullable=False),  # the reading that moved it
    Column("since", UTCDateTime, nullable=False),
    Column("notified", Integer, nullable=False),  # 1 once the notice of this state went out
)
"""One row per rule. A transition is a compare-and-set on ``state`` (one process wins it and
sends its notice); ``notified`` stays 0 until the notice was delivered, so a failed delivery
is retried by the next round, of whichever process."""
