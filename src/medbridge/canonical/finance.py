"""Canonical journal entries (v1). An entry is valid only when it balances."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field, model_validator

from medbridge.canonical.base import CanonicalModel, Code, CurrencyCode


class JournalLine(CanonicalModel):
    account: Code
    debit: Decimal = Field(default=Decimal(0), ge=0, decimal_places=2)
    credit: Decimal = Field(default=Decimal(0), ge=0, decimal_places=2)
    cost_center: Code | None = None
    facility: Code

    @model_validator(mode="after")
    def _one_side(self) -> JournalLine:
        if (self.debit == 0) == (self.credit == 0):
            raise ValueError("a journal line has exactly one of debit and credit")
        return self


class JournalEntry(CanonicalModel):
    """A balanced set of lines posted for one business event (a stock movement)."""

    entry_id: str = Field(min_length=1, max_length=80)
    posting_date: date
    currency: CurrencyCode = "USD"
    description: str = Field(max_length=200)
    source_event_id: str
    correlation_id: str
    lines: tuple[JournalLine, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _balanced(self) -> JournalEntry:
        debits = sum((line.debit for line in self.lines), Decimal(0))
        credits = sum((line.credit for line in self.lines), Decimal(0))
        if debits != credits:
            raise ValueError(
                f"journal entry does not balance: debits {debits} != credits {credits}"
            )
        return self

    @property
    def period(self) -> str:
        """The accounting period, ``YYYY-MM``."""
        return f"{self.posting_date:%Y-%m}"
