"""Canonical data model (v1): pydantic models of master data, movements, journal entries and
the event envelope. Pure: no I/O, no framework (an import-linter contract checks it)."""

from medbridge.canonical.base import CanonicalModel, Money
from medbridge.canonical.events import EventEnvelope, new_event_id
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import (
    AccountAssignment,
    AccountRole,
    AccountType,
    CodeSystem,
    Contract,
    CostCenter,
    GLAccount,
    Item,
    ItemCategory,
    ItemCode,
    Location,
    LocationKind,
    PackConversion,
    Supplier,
    UnitOfMeasure,
)
from medbridge.canonical.movements import EVENT_TYPES, MovementKind, StockMovement

__all__ = [
    "EVENT_TYPES",
    "AccountAssignment",
    "AccountRole",
    "AccountType",
    "CanonicalModel",
    "CodeSystem",
    "Contract",
    "CostCenter",
    "EventEnvelope",
    "GLAccount",
    "Item",
    "ItemCategory",
    "ItemCode",
    "JournalEntry",
    "JournalLine",
    "Location",
    "LocationKind",
    "Money",
    "MovementKind",
    "PackConversion",
    "StockMovement",
    "Supplier",
    "UnitOfMeasure",
    "new_event_id",
]
