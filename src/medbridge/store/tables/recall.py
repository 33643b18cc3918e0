"""The tables of lot recall (SQLAlchemy Core): which lots each applied movement took or
brought, lots in quarantine, and the movements a quarantine holds. Part of
``medbridge.store.tables`` (one metadata), which re-exports them; import from there."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Date, Index, Integer, String, Table, Text

from medbridge.store.tables.base import metadata
from medbridge.store.types import QUANTITY, UTCDateTime

ledger_movement_lots = Table(
    "ledger_movement_lots",
    metadata,
    # one row per lot a ledger movement changed at one location (``domain.ledger.LotChange``):
    # a dispense drawn FEFO from two lots has two rows, a transfer of one lot two (out of the
    # source, into the destination); the rows of an event sum to what it moved
    # the key leads with (item, lot), what a trace asks for: no index besides it (every
    # movement writes here, so each b-tree costs the ledger consumer)
    Column("item", String(64), primary_key=True),
    Column("lot", String(64), primary_key=True),  # "" = held without lot
    Column("event_id", String(36), primary_key=True),  # ledger_movements.event_id
    Column("seq", Integer, primary_key=True),  # 1, 2 ... in the order the ledger drew them
    Column("location", String(64), nullable=False),
    Column("expiry", Date),
    Column("quantity", QUANTITY, nullable=False),  # base unit, signed: < 0 leaves the location
    # of the movement (the same on each of its rows): the cost center it was booked to, and
    # for a dispense the encounter pseudonym (never patient identity; minimised on reads)
    Column("cost_center", String(64)),
    Column("encounter_ref", String(128)),
)
"""Movements applied before this table existed have no rows here (their lots are unknown)."""

lot_quarantines = Table(
    "lot_quarantines",
    metadata,
    Column("item", String(64), primary_key=True),
    Column("lot", String(64), primary_key=True),
    Column("status", String(12), nullable=False),  # quarantined | released
    Column("reason", Text, nullable=False),
    Column("quarantined_by", String(200), nullable=False),
    Column("quarantined_at", UTCDateTime, nullable=False),
    Column("released_by", String(200)),
    Column("released_at", UTCDateTime),
    Column("release_note", Text),
)
"""The current state of a lot's quarantine; every change is in the audit log too."""

lot_held_movements = Table(
    "lot_held_movements",
    metadata,
    # a transfer or receipt naming a quarantined lot: claimed by the ledger consumer but not
    # applied; applied exactly once when the lot is released (status applied), or refused
    # then by the ledger's rules (status refused, with a pharmacy task)
    Column("event_id", String(36), primary_key=True),
    Column("item", String(64), nullable=False),
    Column("lot", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("location", String(64), nullable=False),
    Column("to_location", String(64)),
    Column("correlation_id", String(36), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("movement", JSON, nullable=False),  # the canonical StockMovement
    Column("status", String(12), nullable=False),  # held | applied | refused
    Column("held_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime),
    Column("settled_by", String(200)),
    Column("error", Text),
    Index("ix_lot_held_movements_lot", "item", "lot", "status"),
)
