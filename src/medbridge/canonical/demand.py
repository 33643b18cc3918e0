"""Expected demand (v1): pharmacy orders that will be dispensed, not stock movements yet.
Travels as ``pharmacy.order_received.v1``; replenishment reads it."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, Field

from medbridge.canonical.base import CanonicalModel, Code
from medbridge.canonical.inbound import ExternalItem

ORDER_RECEIVED = "pharmacy.order_received.v1"


class PharmacyOrder(CanonicalModel):
    source_system: Code
    order_ref: str = Field(min_length=1, max_length=120)
    """The placer/filler order number (never a patient identifier)."""
    item: ExternalItem
    quantity: Decimal | None = Field(default=None, max_digits=18, decimal_places=6)
    unit: str | None = Field(default=None, max_length=32)
    location: str | None = Field(default=None, max_length=120)
    ordered_at: AwareDatetime
    encounter_ref: str | None = Field(default=None, max_length=128)
