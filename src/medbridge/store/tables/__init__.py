"""The tables (SQLAlchemy Core): master data, cross-references, clients, the event log, the
stock ledger and journal, the ERP outbox here; the business processes' tables in
``tables.processes`` and the message store's in ``tables.messages``, re-exported below
(import every table from ``medbridge.store.tables``).
Migrations in ``store/migrations`` must match them: a test compares them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from medbridge.store.tables.base import SeqId, metadata
from medbridge.store.tables.contracts import contract_price_proposals, contract_price_tiers
from medbridge.store.tables.messages import message_bodies, messages
from medbridge.store.tables.periods import periods
from medbridge.store.tables.processes import (
    alert_states,
    audit_chain_head,
    audit_log,
    goods_receipts,
    invoice_matches,
    purchase_orders,
    replenishment_lines,
    replenishment_policies,
    trade_control_numbers,
    trade_documents,
    trade_interchanges,
    work_items,
)
from medbridge.store.tables.recall import (
    ledger_movement_lots,
    lot_held_movements,
    lot_quarantines,
)
from medbridge.store.tables.receiving_scans import receiving_scans
from medbridge.store.types import MONEY, QUANTITY, UNIT_COST, ExactDecimal, UTCDateTime

# --- master data -------------------------------------------------------------------------

units = Table(
    "units",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("name", String(64), nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("category", String(16), nullable=False),
    Column("base_unit", String(16), ForeignKey("units.code"), nullable=False),
    Column("strength", String(64)),
)

item_packs = Table(
    "item_packs",
    metadata,
    Column("item", String(64), ForeignKey("items.code"), primary_key=True),
    Column("unit", String(16), ForeignKey("units.code"), primary_key=True),
    Column("factor", QUANTITY, nullable=False),
    Column("gtin", String(14)),
)

item_codes = Table(
    "item_codes",
    metadata,
    Column("system", String(16), primary_key=True),
    Column("issuer", String(64), primary_key=True),  # "" when the code system is global
    Column("code", String(64), primary_key=True),
    Column("item", String(64), ForeignKey("items.code"), nullable=False, index=True),
)

cost_centers = Table(
    "cost_centers",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("facility", String(64), nullable=False),
)

locations = Table(
    "locations",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("parent", String(64), ForeignKey("locations.code")),
    Column("facility", String(64)),  # derived from the hierarchy on write
    Column("cost_center", String(64), ForeignKey("cost_centers.code")),
)

gl_accounts = Table(
    "gl_accounts",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("type", String(16), nullable=False),
)

account_assignments = Table(
    "account_assignments",
    metadata,
    Column("facility", String(64), ForeignKey("locations.code"), primary_key=True),
    Column("role", String(32), primary_key=True),
    Column("account", String(64), ForeignKey("gl_accounts.code"), nullable=False),
)

suppliers = Table(
    "suppliers",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("lead_time_days", Integer, nullable=False),
)

contracts = Table(
    "contracts",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("supplier", String(64), ForeignKey("suppliers.code"), nullable=False),
    Column("item", String(64), ForeignKey("items.code"), nullable=False, index=True),
    Column("unit", String(16), nullable=False),
    Column("price", UNIT_COST, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date),
    Column("minimum_order_quantity", QUANTITY, nullable=False),
)

# --- cross-references per source system ---------------------------------------------------

location_xrefs = Table(
    "location_xrefs",
    metadata,
    Column("source_system", String(64), primary_key=True),
    Column("code", String(120), primary_key=True),
    Column("location", String(64), ForeignKey("locations.code"), nullable=False),
)

cost_center_xrefs = Table(
    "cost_center_xrefs",
    metadata,
    Column("source_system", String(64), primary_key=True),
    Column("code", String(120), primary_key=True),  # a patient location (ward, point of care)
    Column("cost_center", String(64), ForeignKey("cost_centers.code"), nullable=False),
)

unit_xrefs = Table(
    "unit_xrefs",
    metadata,
    Column("source_system", String(64), primary_key=True),
    Column("code", String(32), primary_key=True),
    Column("unit", String(16), ForeignKey("units.code"), nullable=False),
)

inbound_exceptions = Table(
    "inbound_exceptions",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False),  # the connector and sender
    Column("source_system", String(64), nullable=False, index=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("problems", JSON, nullable=False),  # [{index, field, value, reason}]
    Column("drafts", JSON, nullable=False),  # the InboundMovements, as received
    Column("status", String(16), nullable=False, index=True),  # open | applied | discarded
    Column("created_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    Column("resolution", Text),
)

# --- governance ----------------------------------------------------------------------------

api_clients = Table(
    "api_clients",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("roles", String(200), nullable=False),  # space-separated (governance.permissions)
    Column("facilities", String(1000)),  # space-separated; NULL = every facility
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

# --- event backbone (embedded SQL log) ---------------------------------------------------

bus_events = Table(
    "bus_events",
    metadata,
    Column("seq", SeqId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("type", String(120), nullable=False),
    Column("source", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("correlation_id", String(36), nullable=False, index=True),
    Column("causation_id", String(36)),
    Column("time", UTCDateTime, nullable=False),
    Column("appended_at", UTCDateTime, nullable=False),
    Column("payload", Text, nullable=False),  # the whole envelope, JSON
    # the envelope's W3C trace context (CloudEvents distributed tracing), when it has one
    Column("traceparent", String(55)),
    Column("tracestate", String(512)),
    Index("ix_bus_events_partition_seq", "partition", "seq"),
)

bus_positions = Table(
    "bus_positions",
    metadata,
    Column("group", String(100), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("position", SeqId, nullable=False),
)

bus_dead_letters = Table(
    "bus_dead_letters",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("group", String(100), nullable=False),
    Column("event_seq", SeqId, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(120), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("correlation_id", String(36), nullable=False),
    Column("error_type", String(200), nullable=False),
    Column("error", Text, nullable=False),
    Column("traceback", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("context", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # dead | replayed
    Column("dead_at", UTCDateTime, nullable=False),
    Column("replayed_at", UTCDateTime),
    UniqueConstraint("group", "event_id", name="uq_bus_dead_letters_group_event"),
    Index("ix_bus_dead_letters_status", "group", "status"),
    Index("ix_bus_dead_letters_correlation", "correlation_id"),  # the message browser's
)

consumer_dedup = Table(
    "consumer_dedup",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("idempotency_key", String(200), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

# --- stock ledger and journal -------------------------------------------------------------

stock_lots = Table(
    "stock_lots",
    metadata,
    Column("item", String(64), primary_key=True),
    Column("location", String(64), primary_key=True),
    Column("lot", String(64), primary_key=True),  # "" = held without lot
    Column("expiry", Date),
    Column("quantity", QUANTITY, nullable=False),
)

stock_valuations = Table(
    "stock_valuations",
    metadata,
    Column("item", String(64), primary_key=True),
    Column("location", String(64), primary_key=True),
    Column("quantity", QUANTITY, nullable=False),
    Column("value", MONEY, nullable=False),
    # the unit cost the item@location last moved at: what a dispense is valued at when it
    # holds nothing (medbridge.domain.ledger.StockBook.current_cost)
    Column("last_unit_cost", UNIT_COST),
)

ledger_movements = Table(
    "ledger_movements",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("item", String(64), nullable=False, index=True),
    Column("location", String(64), nullable=False, index=True),
    Column("to_location", String(64)),
    Column("quantity", QUANTITY, nullable=False),  # base unit, signed for adjustments
    Column("amount", MONEY, nullable=False),
    Column("correlation_id", String(36), nullable=False, index=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

masterdata_revision = Table(
    "masterdata_revision",
    metadata,
    Column("id", Integer, primary_key=True),  # one row: id 1
    Column("revision", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
)
"""Incremented by every master-data and cross-reference write (masterdata.cache)."""

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("entry_id", String(80), primary_key=True),
    Column("source_event_id", String(36), nullable=False, unique=True),
    Column("correlation_id", String(36), nullable=False, index=True),
    Column("posting_date", Date, nullable=False),
    Column("period", String(7), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("description", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # which system books it in the ERP's ledger (canonical.finance.BookedBy)
    Column("booked_by", String(16), nullable=False, server_default="medbridge"),
    Column("erp_document", String(200)),  # the ERP document that books it (erp_document only)
)

journal_lines = Table(
    "journal_lines",
    metadata,
    Column("entry_id", String(80), ForeignKey("journal_entries.entry_id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("account", String(64), nullable=False, index=True),
    Column("facility", String(64), nullable=False),
    Column("cost_center", String(64)),
    Column("debit", MONEY, nullable=False),
    Column("credit", MONEY, nullable=False),
    Column("party", String(64)),  # the supplier, on accounts payable lines
)

# --- outbound to the ERP (outbox) ----------------------------------------------------------

erp_postings = Table(
    "erp_postings",
    metadata,
    # the ERP outbox: one row per (document, destination), for every outbound ERP call
    Column("document", String(120), primary_key=True),  # a journal entry id, a PO reference..
    Column("destination", String(64), primary_key=True),  # a named ERP ([erps.NAME])
    Column("kind", String(32), nullable=False),  # journal_entry | purchase_order | ...
    Column("role", String(8), nullable=False),  # record | shadow
    Column("domain", String(24), nullable=False),  # gl | purchase_orders | ...
    Column("facility", String(64)),  # what routed it (None: no facility)
    Column("status", String(16), nullable=False),  # pending | posted | failed | summarising
    Column("erp_id", String(80)),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("posted_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    # the W3C trace context of the ledger posting that wrote it: the ERP call joins its trace
    Column("traceparent", String(55)),
    Column("tracestate", String(512)),
    Column("payload", Text),  # the document, as JSON, when it is no journal entry
    Column("after", String(120)),  # posted only once this document is, on the same ERP
    Column("result", Text),  # what the ERP answered besides its id (a state)
    Index("ix_erp_postings_destination_due", "destination", "status", "next_attempt_at"),
    Index("ix_erp_postings_status_due", "status", "next_attempt_at"),
)

erp_routes = Table(
    "erp_routes",
    metadata,
    # cutovers: from effective_at, a domain's documents of a facility (or "*") go to ``record``
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("domain", String(24), nullable=False),
    Column("facility", String(64), nullable=False),  # a facility code, or "*" for all
    Column("record", String(64), nullable=False),
    Column("shadows", String(400), nullable=False),  # comma-separated destinations
    Column("effective_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", String(500)),
    Index("ix_erp_routes_domain_effective", "domain", "effective_at"),
)

gl_summaries = Table(
    "gl_summaries",
    metadata,
    # summarised GL posting (domain.gl_summary): one row per closed slice and destination,
    # its own outbox row; the same summary id in every ERP
    Column("summary_id", String(120), primary_key=True),  # from the slice: frozen
    Column("destination", String(64), primary_key=True),
    Column("facility", String(64), nullable=False),
    Column("slice_start", UTCDateTime, nullable=False),
    Column("period", String(8), nullable=False),  # minute | hour | day
    Column("status", String(16), nullable=False),  # pending | posted | failed | empty
    Column("erp_id", String(80)),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("posted_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("destination", "facility", "slice_start", "period"),
    Index("ix_gl_summaries_status_due", "status", "next_attempt_at"),
)

gl_summary_entries = Table(
    "gl_summary_entries",
    metadata,
    # the drill-down: each summarised journal entry, the summary it went into (exactly one
    # per destination)
    Column("entry_id", String(80), ForeignKey("journal_entries.entry_id"), primary_key=True),
    Column("destination", String(64), primary_key=True),
    Column("summary_id", String(120), nullable=False, index=True),
    Column("event_slice", UTCDateTime, nullable=False),  # its event's slice; later when late
)

erp_circuits = Table(
    "erp_circuits",
    metadata,
    Column("erp", String(64), primary_key=True),
    Column("state", String(12), nullable=False),  # closed | open | half_open
    Column("changed_at", UTCDateTime, nullable=False),
    Column("unhealthy_since", UTCDateTime),  # left closed at; NULL while closed
)
"""The ERP circuit breaker's state as its posting worker last recorded it, readable by every
process (the dashboard, the alert monitor); ``store.erp_circuits``."""


__all__ = [
    "ExactDecimal",
    "SeqId",
    "alert_states",
    "audit_chain_head",
    "audit_log",
    "contract_price_proposals",
    "contract_price_tiers",
    "goods_receipts",
    "invoice_matches",
    "ledger_movement_lots",
    "lot_held_movements",
    "lot_quarantines",
    "message_bodies",
    "messages",
    "metadata",
    "periods",
    "purchase_orders",
    "receiving_scans",
    "replenishment_lines",
    "replenishment_policies",
    "trade_control_numbers",
    "trade_documents",
    "trade_interchanges",
    "work_items",
]
