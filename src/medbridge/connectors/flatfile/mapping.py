"""Snapshot rows <-> canonical: counted quantities in the item's base unit, checked against
master data, and the signed count adjustment that turns a variance into a movement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from medbridge.canonical.masterdata import Item
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.flatfile.codec import SnapshotKey, SnapshotRow
from medbridge.connectors.flatfile.config import FlatFileConfig
from medbridge.connectors.flatfile.errors import UnknownReference
from medbridge.domain.errors import UnknownUnit
from medbridge.domain.units import to_base_quantity


@dataclass(frozen=True)
class Counted:
    """One counted lot, in the item's base unit."""

    line: int
    quantity: Decimal
    unit: str
    expiry: date | None


def counted(
    rows: Sequence[SnapshotRow],
    items: Mapping[str, Item],
    locations: set[str],
    config: FlatFileConfig,
) -> dict[SnapshotKey, Counted]:
    """The file's counts by item/location/lot; ``UnknownReference`` on the first row naming an
    item, location or unit master data does not know."""
    cols = config.columns
    result: dict[SnapshotKey, Counted] = {}
    for row in rows:
        item = items.get(row.item)
        if item is None:
            raise UnknownReference("unknown item", line=row.line, column=cols.item)
        if row.location not in locations:
            raise UnknownReference("unknown location", line=row.line, column=cols.location)
        try:
            quantity = to_base_quantity(item, row.quantity, row.unit or item.base_unit)
        except UnknownUnit:
            raise UnknownReference(
                f"unit not defined for item {item.code}", line=row.line, column=cols.unit
            ) from None
        result[row.key] = Counted(row.line, quantity, item.base_unit, row.expiry)
    return result


def adjustment_key(source: str, file_name: str, sha256: str, key: SnapshotKey) -> str:
    """Frozen: never change this derivation. The same file (same name, same bytes) processed
    again yields the same keys, so the intake applies each adjustment once."""
    item, location, lot = key
    return f"flatfile:{source}:{file_name}:{sha256}:{item}@{location}#{lot or ''}"


def count_adjustment(
    key: SnapshotKey,
    difference: Decimal,
    unit: str,
    expiry: date | None,
    occurred_at: datetime,
    file_name: str,
) -> StockMovement:
    """The signed movement that brings the ledger to the counted quantity."""
    item, location, lot = key
    return StockMovement(
        kind=MovementKind.COUNT_ADJUSTMENT,
        item=item,
        location=location,
        lot=lot,
        quantity=difference,
        unit=unit,
        expiry=expiry,
        occurred_at=occurred_at,
        reason=f"flat-file count {file_name}"[:200],
    )
