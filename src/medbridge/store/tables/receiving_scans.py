"""The receiving scans (``POST /v1/receiving/scans``): one row per scan taken, keyed by its
frozen idempotency key (``medbridge.flows.scan_receiving``). Part of
``medbridge.store.tables`` (one metadata), which re-exports it; import from there."""

from __future__ import annotations

from sqlalchemy import Column, Date, Integer, String, Table, Text

from medbridge.store.tables.base import metadata
from medbridge.store.types import QUANTITY, UTCDateTime

receiving_scans = Table(
    "receiving_scans",
    metadata,
    # serial:<gtin>:<serial> | scan:<session>:<scan id> | scan:<session>#<index>  (frozen)
    Column("key", String(200), primary_key=True),
    Column("order_reference", String(64), nullable=False, index=True),
    Column("shipment_id", String(64)),  # the ship notice scanned against; None: the order
    Column("session", String(64), nullable=False),
    Column("dock", String(64)),
    Column("position", Integer, nullable=False),  # index in the request that recorded it
    Column("raw", Text, nullable=False),  # the scan as sent: a key reused for another scan
    Column("outcome", String(12), nullable=False),  # matched | over | substituted | unknown
    Column("received", Integer, nullable=False),  # 1: part of a goods receipt
    Column("gtin", String(14), nullable=False),
    Column("item", String(64)),
    Column("unit", String(16)),
    Column("line", Integer),
    Column("quantity", QUANTITY, nullable=False),  # count in the scanned GTIN's level
    Column("base_quantity", QUANTITY),
    Column("lot", String(20)),
    Column("expiry", Date),
    Column("serial", String(20)),
    Column("receipt", String(120)),  # the goods receipt (order:shipment) it went into
    Column("note", String(300)),
    Column("scanned_by", String(100), nullable=False),
    Column("scanned_at", UTCDateTime, nullable=False),
)
