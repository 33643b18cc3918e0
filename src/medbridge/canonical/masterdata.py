"""Canonical master data: items and their codes, units, locations, cost centers, accounts,
suppliers and contracts (v1)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator

from medbridge.canonical.base import CanonicalModel, Code, Money
from medbridge.canonical.codes import normalize_gtin, normalize_ndc

UnitCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\[\]/%-]{1,16}$")]
"""A unit of measure code (UCUM or HL7 table 0795 style: EA, BX, CA, mL, mg, TAB)."""


class ItemCategory(StrEnum):
    DRUG = "drug"
    SUPPLY = "supply"


class CodeSystem(StrEnum):
    """External code systems an item is known by."""

    NDC = "ndc"  # 11-digit NDC (5-4-2), no dashes
    GTIN = "gtin"  # GTIN-14
    SUPPLIER_SKU = "supplier_sku"  # scoped by ``issuer`` (the supplier code)
    ERP = "erp"  # the ERP's product id, scoped by ``issuer`` (the ERP instance)
    LOCAL = "local"  # a source system's own code, scoped by ``issuer``


class ItemCode(CanonicalModel):
    """One external identity of an item. NDC and GTIN are normalised on the way in."""

    system: CodeSystem
    code: Code
    issuer: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _normalise(self) -> ItemCode:
        if self.system is CodeSystem.NDC:
            object.__setattr__(self, "code", normalize_ndc(self.code))
        elif self.system is CodeSystem.GTIN:
            object.__setattr__(self, "code", normalize_gtin(self.code))
        elif self.issuer is None:
            raise ValueError(f"a {self.system.value} code needs an issuer")
        return self


class UnitOfMeasure(CanonicalModel):
    code: UnitCode
    name: str = Field(min_length=1, max_length=64)


class PackConversion(CanonicalModel):
    """``1 unit`` of this item equals ``factor`` base units (a box of 10: BX, 10)."""

    unit: UnitCode
    factor: Decimal = Field(gt=0)
    gtin: str | None = None

    @field_validator("gtin")
    @classmethod
    def _gtin(cls, value: str | None) -> str | None:
        return None if value is None else normalize_gtin(value)


class Item(CanonicalModel):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    category: ItemCategory
    base_unit: UnitCode
    packs: tuple[PackConversion, ...] = ()
    codes: tuple[ItemCode, ...] = ()
    strength: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _packs_unique(self) -> Item:
        units = [p.unit for p in self.packs]
        if self.base_unit in units or len(set(units)) != len(units):
            raise ValueError("pack units must be unique and differ from the base unit")
        return self


class LocationKind(StrEnum):
    NETWORK = "network"
    FACILITY = "facility"
    STORE = "store"
    BIN = "bin"


LOCATION_PARENT: dict[LocationKind, LocationKind | None] = {
    LocationKind.NETWORK: None,
    LocationKind.FACILITY: LocationKind.NETWORK,
    LocationKind.STORE: LocationKind.FACILITY,
    LocationKind.BIN: LocationKind.STORE,
}
"""The hierarchy network > facility > store > bin: the kind each kind's parent must have."""


class Location(CanonicalModel):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    kind: LocationKind
    parent: Code | None = None
    cost_center: Code | None = None

    @model_validator(mode="after")
    def _parent(self) -> Location:
        if (self.parent is None) != (LOCATION_PARENT[self.kind] is None):
            problem = "needs a" if self.parent is None else "has no"
            raise ValueError(f"parent: a {self.kind.value} location {problem} parent")
        return self


class CostCenter(CanonicalModel):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    facility: Code


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EXPENSE = "expense"
    REVENUE = "revenue"
    EQUITY = "equity"


class AccountRole(StrEnum):
    """What the default posting rules need an account for, per facility (DESIGN.md)."""

    INVENTORY = "inventory"
    GRNI = "grni"
    DRUG_EXPENSE = "drug_expense"
    SUPPLY_EXPENSE = "supply_expense"
    WASTAGE_EXPENSE = "wastage_expense"
    COUNT_ADJUSTMENT = "count_adjustment"
    PURCHASE_PRICE_VARIANCE = "purchase_price_variance"
    ACCOUNTS_PAYABLE = "accounts_payable"


class GLAccount(CanonicalModel):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    type: AccountType


class AccountAssignment(CanonicalModel):
    """Which GL account plays ``role`` for ``facility``."""

    facility: Code
    role: AccountRole
    account: Code


class SupplierStatus(StrEnum):
    ACTIVE = "active"
    ON_HOLD = "on_hold"
    INACTIVE = "inactive"


class Supplier(CanonicalModel):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    status: SupplierStatus = SupplierStatus.ACTIVE
    lead_time_days: int = Field(default=2, ge=0)


class PriceTier(CanonicalModel):
    """A quantity break: from ``minimum_quantity`` pack units on one order line, ``price``
    per pack unit (in the contract's currency)."""

    minimum_quantity: Decimal = Field(gt=0, max_digits=18, decimal_places=6)
    price: Decimal = Field(ge=0, max_digits=18, decimal_places=6)


class Contract(CanonicalModel):
    """A supplier's price for an item, per pack unit, between two dates.

    ``price`` is the price from the minimum order quantity; ``tiers`` are the quantity breaks
    above it (1+ at 12.00 is ``price``, 10+ at 11.50 a tier), in ascending quantity, none
    dearer than the one before. ``price_for(quantity)`` is the price a line of that many
    pack units pays."""

    code: Code
    supplier: Code
    item: Code
    unit: UnitCode
    price: Money
    valid_from: date
    valid_to: date | None = None
    minimum_order_quantity: Decimal = Field(default=Decimal(1), gt=0)
    tiers: tuple[PriceTier, ...] = ()

    @model_validator(mode="after")
    def _dates(self) -> Contract:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        if self.price.amount < 0:
            raise ValueError("price: a contract price is not negative")
        floor, previous = self.minimum_order_quantity, self.price.amount
        for tier in self.tiers:
            if tier.minimum_quantity <= floor:
                raise ValueError(
                    f"tiers: the tier from {tier.minimum_quantity} does not start above"
                    f" {floor} (tiers ascend, above the minimum order quantity, whose price"
                    " is ``price``)"
                )
            if tier.price > previous:
                raise ValueError(
                    f"tiers: the tier from {tier.minimum_quantity} costs {tier.price}, more"
                    f" than the {previous} of a smaller quantity"
                )
            floor, previous = tier.minimum_quantity, tier.price
        return self

    def price_for(self, quantity: Decimal) -> Money:
        """The price per pack unit of a line of ``quantity`` pack units: the tier with the
        largest minimum quantity it reaches, else ``price``."""
        amount = self.price.amount
        for tier in self.tiers:
            if quantity >= tier.minimum_quantity:
                amount = tier.price
        return Money(amount=amount, currency=self.price.currency)

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def overlaps(self, other: Contract) -> bool:
        """Both valid on at least one common day."""
        return (self.valid_to is None or other.valid_from <= self.valid_to) and (
            other.valid_to is None or self.valid_from <= other.valid_to
        )
