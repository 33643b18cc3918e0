"""Canonical procurement documents (v1): purchase order, goods receipt, supplier invoice.

Each carries ``reference``: MedBridge's idempotency key of the document, written into the
ERP's reference field so that a retry never creates it twice. Never change how a document's
reference is derived once it has been sent.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field

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


class SupplierInvoice(CanonicalModel):
    reference: str = Field(min_length=1, max_length=120)
    supplier: Code
    invoice_number: str = Field(min_length=1, max_length=64)
    invoice_date: date
    purchase_order: str | None = None
    lines: tuple[InvoiceLine, ...] = Field(min_length=1)
