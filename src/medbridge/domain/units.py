"""Unit conversion to an item's base unit."""

from __future__ import annotations

from decimal import Decimal

from medbridge.canonical.masterdata import Item
from medbridge.domain.errors import UnknownUnit


def base_factor(item: Item, unit: str) -> Decimal:
    """How many base units one ``unit`` of ``item`` holds (1 for the base unit itself)."""
    if unit == item.base_unit:
        return Decimal(1)
    for pack in item.packs:
        if pack.unit == unit:
            return pack.factor
    raise UnknownUnit(item.code, unit, [item.base_unit, *(p.unit for p in item.packs)])


def to_base_quantity(item: Item, quantity: Decimal, unit: str) -> Decimal:
    return quantity * base_factor(item, unit)
