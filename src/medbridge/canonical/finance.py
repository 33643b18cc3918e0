"""Canonical journal entries (v1). An entry is valid only when it balances."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import Field, model_validator

from medbridge.canonical.base import CanonicalModel, Code, CurrencyCode


class JournalLine(CanonicalModel):
    account: Code
    debit: Decimal = Field(default=Decimal(0), ge=0, decimal_places=2)
    credit: Decimal = Field(default=Decimal(0), ge=0, decimal_places=2)
    cost_center: Code | None = None
    facility: Code
    party: Code | None = None
    """The supplier, on accounts payable lines (the ERP keeps AP per party)."""

    @model_validator(mode="after")
    def _one_side(self) -> JournalLine:
        if (self.debit == 0) == (self.credit == 0):
            raise ValueError("a journal line has exactly one of debit and credit")
        return self


class BookedBy(StrEnum):
    """Which system books an entry in the ERP's general ledger: exactly one, never both.

    The README's finance table says which, per business event.
    """

    MEDBRIDGE = "medbridge"
    """MedBridge's journal entry is posted to the ERP (the ERP posting outbox)."""
    ERP_DOCUMENT = "erp_document"
    """The ERP's own document accounting books it (a posted supplier invoice or credit
    note); MedBridge keeps the same entry in its own journal, never sends it, and reconciles
    it with the document's move (``erp_document``)."""


class JournalEntry(CanonicalModel):
    """A balanced set of lines posted for one business event."""

    entry_id: str = Field(min_length=1, max_length=80)
    posting_date: date
    currency: CurrencyCode = "USD"
    description: str = Field(max_length=200)
    source_event_id: str
    correlation_id: str
    lines: tuple[JournalLine, ...] = Field(min_length=2)
    booked_by: BookedBy = BookedBy.MEDBRIDGE
    erp_document: str | None = Field(default=None, max_length=200)
    """The reference of the ERP document that books this entry (``ERP_DOCUMENT`` only)."""

    @model_validator(mode="after")
    def _booked_once(self) -> JournalEntry:
        if (self.booked_by is BookedBy.ERP_DOCUMENT) != (self.erp_document is not None):
            raise ValueError("an entry booked by an ERP document names it, and only then")
        return self

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
