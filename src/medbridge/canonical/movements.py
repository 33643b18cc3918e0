"""Canonical stock movements (v1)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, Field, model_validator

from medbridge.canonical.base import CanonicalModel, Code, Money
from medbridge.canonical.masterdata import UnitCode


class MovementKind(StrEnum):
    DISPENSE = "dispense"
    CLINICAL_CONSUMPTION = "clinical_consumption"
    RECEIPT = "receipt"
    TRANSFER = "transfer"
    WASTAGE = "wastage"
    RETURN_TO_SUPPLIER = "return_to_supplier"
    COUNT_ADJUSTMENT = "count_adjustment"


EVENT_TYPES: dict[MovementKind, str] = {
    MovementKind.DISPENSE: "inventory.dispensed.v1",
    MovementKind.CLINICAL_CONSUMPTION: "inventory.consumed.v1",
    MovementKind.RECEIPT: "inventory.received.v1",
    MovementKind.TRANSFER: "inventory.transferred.v1",
    MovementKind.WASTAGE: "inventory.wasted.v1",
    MovementKind.RETURN_TO_SUPPLIER: "inventory.returned_to_supplier.v1",
    MovementKind.COUNT_ADJUSTMENT: "inventory.count_adjusted.v1",
}
"""The event type each movement kind travels as. Published names: never change them."""


class StockMovement(CanonicalModel):
    """One physical movement of stock at a location.

    ``quantity`` is in ``unit`` (any unit the item defines); it is positive, except for a count
    adjustment, where its sign says gain (+) or loss (-). A receipt carries its ``unit_cost``
    (per ``unit``); a transfer names its ``to_location``. ``cost_center`` overrides the
    location's own for consumption. ``encounter_ref`` is a keyed pseudonym, never patient data.
    """

    kind: MovementKind
    item: Code
    location: Code
    quantity: Decimal = Field(max_digits=18, decimal_places=6)
    unit: UnitCode
    lot: str | None = Field(default=None, min_length=1, max_length=64)
    expiry: date | None = None
    to_location: Code | None = None
    unit_cost: Money | None = None
    cost_center: Code | None = None
    occurred_at: AwareDatetime
    reason: str | None = Field(default=None, max_length=200)
    encounter_ref: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _consistent(self) -> StockMovement:
        if self.kind is MovementKind.COUNT_ADJUSTMENT:
            if self.quantity == 0:
                raise ValueError("quantity: a count adjustment cannot be zero")
        elif self.quantity <= 0:
            raise ValueError("quantity: must be greater than zero")
        if (self.kind is MovementKind.TRANSFER) != (self.to_location is not None):
            raise ValueError("to_location: required for a transfer and only for a transfer")
        if self.kind is MovementKind.TRANSFER and self.to_location == self.location:
            raise ValueError("to_location: a transfer must go to another location")
        if self.kind is MovementKind.RECEIPT and self.unit_cost is None:
            raise ValueError("unit_cost: a receipt must carry its unit cost")
        if self.unit_cost is not None and self.unit_cost.amount < 0:
            raise ValueError("unit_cost: cannot be negative")
        return self

    @property
    def event_type(self) -> str:
        return EVENT_TYPES[self.kind]
