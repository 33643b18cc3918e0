"""Shared base for canonical models: immutable, strict about unknown fields, JSON-friendly."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
"""A business identifier (item code, location code, account code)."""

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class CanonicalModel(BaseModel):
    """Every canonical model is frozen and refuses unknown fields, so a typo is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Money(CanonicalModel):
    """An amount of money: a Decimal with an explicit ISO 4217 currency."""

    amount: Decimal = Field(max_digits=18, decimal_places=6)
    currency: CurrencyCode = "USD"
