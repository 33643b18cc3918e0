"""Canonical procurement documents (v1): purchase order, goods receipt, supplier invoice.

Each carries ``reference``: MedBridge's idempotency key of the document, written into the
ERP's reference field so that a retry never creates it twice. Never change how a document's
reference is derived once it has been sent.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from pydantic import Field, model_validator

from medbridge.canonical.base import CanonicalModel, Code, Money
from medbridge.canonical.masterdata import UnitCode


class OrderLine(CanonicalModel):
    item: Code
    """The item as the ERP knows it (its product code)."""
    quantity: Decimal = Field(gt=0, max_digits=18, decimal_places=6)
    unit: UnitCode
    unit_price: Money


class PurchaseOrder(CanonicalModel):
    reference: str = Field(min_length=1, max_length=120)
    supplier: Code
    order_date: date
    lines: tuple[OrderLine, ...] = Field(min_length=1)
    delivery_location: Code | None = None
    cost_center: Code | None = None


class ReceiptLine(CanonicalModel):
    item: Code
    quantity: Decimal = Field(gt=0, max_digits=18, decimal_places=6)
    unit: UnitCode
    lot: str | None = Field(default=None, max_length=64)
    expiry: date | None = None
    unit_price: Money | None = None


class GoodsReceipt(CanonicalModel):
    reference: str = Field(min_length=1, max_length=120)
    supplier: Code
    purchase_order: str | None = None
    """The reference of the order received against, when there is one."""
    received_on: date
    lines: tuple[ReceiptLine, ...] = Field(min_length=1)


class InvoiceLine(CanonicalModel):
    item: Code
    quantity: Decimal = Field(gt=0, max_digits=18, decimal_places=6)
    unit: UnitCode
    unit_price: Money
    account: Code | None = None
    """The GL account the line is booked on (GRNI of the facility); None: the ERP's default
    for the product."""


class InvoiceCharge(CanonicalModel):
    """A line of a supplier invoice that is no item: tax, a total difference, a credit."""

    description: str = Field(min_length=1, max_length=200)
    account: Code
    amount: Money


class SupplierInvoice(CanonicalModel):
    """A supplier invoice (or, with ``credit_memo``, a credit note) as the ERP books it.

    The ERP's own document accounting books it: debit each line's ``account`` (and each
    charge's), credit ``payable_account`` with the supplier as party, dated
    ``accounting_date``. A credit memo books the same lines the other way round.
    """

    reference: str = Field(min_length=1, max_length=120)
    supplier: Code
    invoice_number: str = Field(min_length=1, max_length=64)
    invoice_date: date
    purchase_order: str | None = None
    lines: tuple[InvoiceLine, ...] = ()
    charges: tuple[InvoiceCharge, ...] = ()
    credit_memo: bool = False
    facility: Code | None = None
    payable_account: Code | None = None
    """The accounts payable account (per facility); None: the supplier's default payable."""
    accounting_date: date | None = None
    """The date the ERP books it on; None: the invoice date."""

    @model_validator(mode="after")
    def _not_empty(self) -> SupplierInvoice:
        if not self.lines and not self.charges:
            raise ValueError("a supplier invoice has at least one line or charge")
        return self

    @property
    def total(self) -> Decimal:
        """What the supplier is owed (a credit memo: what it owes back), before sign: each
        line's amount rounded to the cent on its own, as an ERP rounds invoice lines."""
        cent = Decimal("0.01")
        return sum(
            (
                (ln.quantity * ln.unit_price.amount).quantize(cent, ROUND_HALF_EVEN)
                for ln in self.lines
            ),
            Decimal(0),
        ) + sum((c.amount.amount.quantize(cent, ROUND_HALF_EVEN) for c in self.charges), Decimal(0))
