"""Contract price tiers and the price changes partners' 832 catalogs propose (imported from
``medbridge.store.tables``, one metadata).

``contract_price_tiers``: the quantity breaks of a contract above its minimum order quantity
(its ``price`` stays on ``contracts``: the tier from the minimum). ``contract_price_proposals``:
one row per (catalog, LIN line, unit) an 832 named, whatever became of it: applied at once
(within tolerance), pending a procurement task, approved, rejected, unchanged, or reported
(item unknown, no contract, no price for us, catalog expired). The catalog's wire identity
(``catalog_key``) with the line makes a resent catalog propose nothing twice."""

from __future__ import annotations

from sqlalchemy import (
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
from medbridge.store.types import QUANTITY, UNIT_COST, UTCDateTime

contract_price_tiers = Table(
    "contract_price_tiers",
    metadata,
    Column("contract", String(64), ForeignKey("contracts.code"), primary_key=True),
    Column("minimum_quantity", QUANTITY, primary_key=True),  # pack units on one line
    Column("price", UNIT_COST, nullable=False),  # per pack unit, the contract's currency
)

contract_price_proposals = Table(
    "contract_price_proposals",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("catalog_key", String(200), nullable=False),  # the 832's wire identity
    Column("line", Integer, nullable=False),  # the LIN's position in the catalog, from 1
    Column("unit", String(16), nullable=False),  # the contract's unit (the catalog's if none)
    Column("partner", String(64), nullable=False, index=True),  # the supplier
    Column("catalog_number", String(35), nullable=False),
    Column("partner_item", String(200), nullable=False),  # how the catalog names the item
    Column("item", String(64)),  # resolved; NULL: unknown
    Column("contract", String(64), index=True),  # NULL: none to change
    Column("currency", String(3), nullable=False),
    Column("current_price", UNIT_COST),
    Column("proposed_price", UNIT_COST),
    Column("change_percent", UNIT_COST),
    Column("effective_from", Date),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("task_id", BigInteger),  # the procurement work item deciding it
    Column("created_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime),
    Column("decided_by", String(200)),
    UniqueConstraint("catalog_key", "line", "unit"),
    Index("ix_contract_price_proposals_status", "status"),
)
