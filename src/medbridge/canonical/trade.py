"""Canonical trade documents (v1): what MedBridge exchanges with a trading partner (supplier,
procurement network), in the PARTNER's identifiers.

These are the documents the X12 and cXML connectors parse and render, one model per business
document whatever the wire format:

- ``OrderDocument``         purchase order (X12 850, cXML OrderRequest)
- ``AcknowledgementDocument`` PO acknowledgement (X12 855, cXML ConfirmationRequest)
- ``ShipNoticeDocument``    advance ship notice (X12 856, cXML ShipNoticeRequest)
- ``InvoiceDocument``       supplier invoice or credit memo (X12 810, cXML InvoiceDetailRequest)
- ``CatalogDocument``       price catalog with contract prices and pack levels (X12 832)

Items stay as the partner names them (``PartnerItem``: supplier part, buyer part, GTIN, NDC):
``masterdata`` resolves them through the partner's cross-references; what does not resolve is
parked in the exception queue, never guessed here. Units are the wire's unit codes (X12 355 /
UN/CEFACT rec 20: EA, BX, CA ...), resolved the same way.

Rule for every field: it must survive a render -> parse round trip in EVERY wire format that
carries the document (property-tested per connector). A field a format has no place for is
carried in that format's agreed extension point (cXML ``Extrinsic``, X12 ``REF``), never
dropped. Dates are calendar dates; amounts are Decimals in ``currency``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from medbridge.canonical.base import CanonicalModel, CurrencyCode

_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
PartnerId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=35, pattern=_PRINTABLE)
]
"""An identifier as a trading partner sends it (PO number, part number, party id)."""

TradeText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80, pattern=_PRINTABLE)
]
"""Free text (a name, a description): X12 and cXML both carry it; kept to 80 characters."""

TradeUnit = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{2}$")]
"""A unit of measure code as X12 (element 355) and cXML (UN/CEFACT rec. 20) send it."""

Quantity = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=4)]
Amount = Annotated[Decimal, Field(max_digits=15, decimal_places=4)]
Gtin = Annotated[str, StringConstraints(pattern=r"^\d{14}$")]
"""A GTIN-14 (shorter GTINs are zero-padded to 14 digits by the parsers)."""
Ndc = Annotated[str, StringConstraints(pattern=r"^\d{11}$")]
"""An 11-digit NDC (5-4-2), no dashes."""


class PartyRole(StrEnum):
    BUYER = "buyer"
    SUPPLIER = "supplier"
    SHIP_TO = "ship_to"
    BILL_TO = "bill_to"
    MANUFACTURER = "manufacturer"
    GROUP = "group"  # a buying group (GPO) a contract price belongs to


class Party(CanonicalModel):
    role: PartyRole
    id: PartnerId
    """The party's identifier in the scheme the two partners agreed (GLN, DUNS, account)."""
    name: TradeText | None = None


class PartnerItem(CanonicalModel):
    """An item as a trading partner names it: by an identifier, or at least a description
    (an invoice line that names only its order line and says what it is: the order line
    identifies the item, and master data cannot resolve it otherwise)."""

    supplier_part: PartnerId | None = None
    buyer_part: PartnerId | None = None
    gtin: Gtin | None = None
    ndc: Ndc | None = None
    description: TradeText | None = None

    @model_validator(mode="after")
    def _identified(self) -> PartnerItem:
        identified = self.supplier_part or self.buyer_part or self.gtin or self.ndc
        if not (identified or self.description):
            raise ValueError("an item needs a supplier part, buyer part, GTIN, NDC or text")
        return self


def _unique_lines(numbers: list[int]) -> None:
    if len(set(numbers)) != len(numbers):
        raise ValueError("line numbers must be unique")


def _unique_roles(parties: tuple[Party, ...]) -> None:
    roles = [party.role for party in parties]
    if len(set(roles)) != len(roles):
        raise ValueError("at most one party per role")


# --- purchase order -------------------------------------------------------------------------


class OrderLine(CanonicalModel):
    line_number: int = Field(ge=1, le=999_999)
    item: PartnerItem
    quantity: Quantity = Field(gt=0)
    unit: TradeUnit
    unit_price: Amount = Field(ge=0)
    requested_delivery: date | None = None


class OrderDocument(CanonicalModel):
    """A purchase order sent to a supplier (X12 850, cXML OrderRequest)."""

    order_number: PartnerId
    order_date: date
    currency: CurrencyCode = "USD"
    parties: tuple[Party, ...] = ()
    lines: tuple[OrderLine, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> OrderDocument:
        _unique_lines([line.line_number for line in self.lines])
        _unique_roles(self.parties)
        return self


# --- PO acknowledgement ---------------------------------------------------------------------


class AckStatus(StrEnum):
    """The supplier's answer to the whole order."""

    ACCEPTED = "accepted"  # every line as ordered
    ACCEPTED_WITH_CHANGES = "accepted_with_changes"
    REJECTED = "rejected"


class LineStatus(StrEnum):
    """The supplier's answer to one order line."""

    ACCEPTED = "accepted"
    BACKORDERED = "backordered"  # accepted, ships later (``ship_date``)
    SUBSTITUTED = "substituted"  # another item ships (``substitute``)
    PRICE_CHANGED = "price_changed"  # ships at ``unit_price``, not the ordered price
    QUANTITY_CHANGED = "quantity_changed"  # ships ``quantity``, not the ordered quantity
    REJECTED = "rejected"


class AckLine(CanonicalModel):
    line_number: int = Field(ge=1, le=999_999)
    """The order line answered."""
    item: PartnerItem
    status: LineStatus
    quantity: Quantity
    """What the supplier commits to ship (0 for a rejected line)."""
    unit: TradeUnit
    unit_price: Amount | None = Field(default=None, ge=0)
    ship_date: date | None = None
    substitute: PartnerItem | None = None

    @model_validator(mode="after")
    def _check(self) -> AckLine:
        if (self.status is LineStatus.SUBSTITUTED) != (self.substitute is not None):
            raise ValueError("a substitute is given exactly when the line is substituted")
        if self.status is LineStatus.PRICE_CHANGED and self.unit_price is None:
            raise ValueError("a price change needs the new unit price")
        if self.status is LineStatus.REJECTED and self.quantity != 0:
            raise ValueError("a rejected line commits quantity 0")
        return self


class AcknowledgementDocument(CanonicalModel):
    """A supplier's acknowledgement of a purchase order (X12 855, cXML ConfirmationRequest)."""

    acknowledgement_id: PartnerId
    order_number: PartnerId
    """The purchase order acknowledged."""
    acknowledged_on: date
    status: AckStatus
    currency: CurrencyCode = "USD"
    lines: tuple[AckLine, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> AcknowledgementDocument:
        _unique_lines([line.line_number for line in self.lines])
        return self


# --- advance ship notice --------------------------------------------------------------------


class ShipLine(CanonicalModel):
    line_number: int = Field(ge=1, le=999_999)
    """The order line shipped."""
    item: PartnerItem
    quantity: Quantity = Field(gt=0)
    unit: TradeUnit
    lot: PartnerId | None = None
    expiry: date | None = None
    serials: tuple[PartnerId, ...] = ()


class Pack(CanonicalModel):
    """A shipping container (pallet, case) and what it holds. ``sscc`` None: the lines are
    not packed into identified containers (an order/item ship notice, no pack level)."""

    sscc: Annotated[str, StringConstraints(pattern=r"^\d{18}$")] | None = None
    lines: tuple[ShipLine, ...] = Field(min_length=1)


class ShippedOrder(CanonicalModel):
    order_number: PartnerId
    packs: tuple[Pack, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ShippedOrder:
        if len(self.packs) > 1 and any(pack.sscc is None for pack in self.packs):
            raise ValueError("an order shipped in several packs identifies each by its SSCC")
        return self


class ShipNoticeDocument(CanonicalModel):
    """An advance ship notice (X12 856, cXML ShipNoticeRequest)."""

    shipment_id: PartnerId
    shipped_on: date
    expected_delivery: date | None = None
    carrier: PartnerId | None = None
    """The carrier's SCAC."""
    tracking_number: PartnerId | None = None
    parties: tuple[Party, ...] = ()
    orders: tuple[ShippedOrder, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ShipNoticeDocument:
        _unique_roles(self.parties)
        numbers = [order.order_number for order in self.orders]
        if len(set(numbers)) != len(numbers):
            raise ValueError("each order appears once in a ship notice")
        ssccs = [p.sscc for o in self.orders for p in o.packs if p.sscc is not None]
        if len(set(ssccs)) != len(ssccs):
            raise ValueError("an SSCC identifies one pack")
        return self


# --- supplier invoice -----------------------------------------------------------------------


class InvoicePurpose(StrEnum):
    INVOICE = "invoice"
    CREDIT_MEMO = "credit_memo"


class InvoiceLine(CanonicalModel):
    line_number: int = Field(ge=1, le=999_999)
    item: PartnerItem
    quantity: Quantity = Field(gt=0)
    unit: TradeUnit
    unit_price: Amount = Field(ge=0)
    order_number: PartnerId | None = None
    """The purchase order this line bills; None for a line not backed by an order."""
    order_line: int | None = Field(default=None, ge=1, le=999_999)


class InvoiceDocument(CanonicalModel):
    """A supplier invoice or credit memo (X12 810, cXML InvoiceDetailRequest).

    ``total`` is the amount due as the supplier states it (lines + tax + charges -
    allowances); the three-way match compares it, the parser does not recompute it.
    """

    invoice_number: PartnerId
    invoice_date: date
    purpose: InvoicePurpose = InvoicePurpose.INVOICE
    currency: CurrencyCode = "USD"
    parties: tuple[Party, ...] = ()
    lines: tuple[InvoiceLine, ...] = Field(min_length=1)
    tax: Amount = Decimal(0)
    total: Amount

    @model_validator(mode="after")
    def _check(self) -> InvoiceDocument:
        _unique_lines([line.line_number for line in self.lines])
        _unique_roles(self.parties)
        return self

    @property
    def order_numbers(self) -> tuple[str, ...]:
        """The purchase orders billed, in first-line order."""
        seen: dict[str, None] = {}
        for line in self.lines:
            if line.order_number is not None:
                seen.setdefault(line.order_number)
        return tuple(seen)


# --- price catalog --------------------------------------------------------------------------


class CatalogPrice(CanonicalModel):
    """A price of one ``unit`` of the item: a list price (``tier`` None) or a contract tier."""

    tier: PartnerId | None = None
    amount: Amount = Field(ge=0)
    unit: TradeUnit
    effective_from: date | None = None


class PackLevel(CanonicalModel):
    """One packaging level: ``quantity`` of ``unit`` make the catalog's ordering unit
    (CA = 1, BX = 4, EA = 20: a case holds 4 boxes of 5 each), with that level's GTIN."""

    unit: TradeUnit
    quantity: Quantity = Field(gt=0)
    gtin: Gtin | None = None


class CatalogItem(CanonicalModel):
    item: PartnerItem
    prices: tuple[CatalogPrice, ...] = Field(min_length=1)
    packs: tuple[PackLevel, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> CatalogItem:
        units = [pack.unit for pack in self.packs]
        if len(set(units)) != len(units):
            raise ValueError("one pack level per unit")
        return self


class CatalogDocument(CanonicalModel):
    """A supplier's price catalog (X12 832): list and contract prices, pack levels, GTINs."""

    catalog_id: PartnerId
    issued_on: date | None = None
    effective_from: date | None = None
    effective_to: date | None = None
    currency: CurrencyCode = "USD"
    parties: tuple[Party, ...] = ()
    items: tuple[CatalogItem, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> CatalogDocument:
        _unique_roles(self.parties)
        if self.effective_from and self.effective_to and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self


TradeDocument = (
    OrderDocument | AcknowledgementDocument | ShipNoticeDocument | InvoiceDocument | CatalogDocument
)


class TradeDocumentKind(StrEnum):
    ORDER = "order"
    ACKNOWLEDGEMENT = "acknowledgement"
    SHIP_NOTICE = "ship_notice"
    INVOICE = "invoice"
    CATALOG = "catalog"


KIND_OF: dict[type[CanonicalModel], TradeDocumentKind] = {
    OrderDocument: TradeDocumentKind.ORDER,
    AcknowledgementDocument: TradeDocumentKind.ACKNOWLEDGEMENT,
    ShipNoticeDocument: TradeDocumentKind.SHIP_NOTICE,
    InvoiceDocument: TradeDocumentKind.INVOICE,
    CatalogDocument: TradeDocumentKind.CATALOG,
}


def document_number(document: TradeDocument) -> str:
    """The partner's own number of the document (PO, acknowledgement, shipment, invoice ...)."""
    if isinstance(document, OrderDocument):
        return document.order_number
    if isinstance(document, AcknowledgementDocument):
        return document.acknowledgement_id
    if isinstance(document, ShipNoticeDocument):
        return document.shipment_id
    if isinstance(document, InvoiceDocument):
        return document.invoice_number
    return document.catalog_id
