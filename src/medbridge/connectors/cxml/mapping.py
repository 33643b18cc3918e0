"""cXML request <-> canonical trade document: which request carries which document, and the
dispatch to the per-request mappings (``order``, ``confirmation``, ``ship_notice``,
``invoice``; shared element helpers in ``wire``).

Every canonical field survives render -> parse (property-tested): where cXML 1.2 has no
standard place for a field, an ``Extrinsic`` carries it and is read back first. Each mapping
module's docstring lists its elements and extensions. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from medbridge.canonical.trade import (
    AcknowledgementDocument,
    InvoiceDocument,
    OrderDocument,
    ShipNoticeDocument,
)
from medbridge.connectors.cxml import confirmation, invoice, order, ship_notice
from medbridge.connectors.cxml.wire import Element

CxmlDocument = OrderDocument | AcknowledgementDocument | ShipNoticeDocument | InvoiceDocument
"""The canonical documents cXML carries (``CatalogDocument`` is X12 only)."""


class RequestKind(StrEnum):
    """The cXML requests MedBridge maps (the element under ``Request``)."""

    ORDER = "OrderRequest"
    CONFIRMATION = "ConfirmationRequest"
    SHIP_NOTICE = "ShipNoticeRequest"
    INVOICE = "InvoiceDetailRequest"


READERS: dict[RequestKind, Callable[[Element], CxmlDocument]] = {
    RequestKind.ORDER: order.read,
    RequestKind.CONFIRMATION: confirmation.read,
    RequestKind.SHIP_NOTICE: ship_notice.read,
    RequestKind.INVOICE: invoice.read,
}
KIND_OF: dict[type[Any], RequestKind] = {
    OrderDocument: RequestKind.ORDER,
    AcknowledgementDocument: RequestKind.CONFIRMATION,
    ShipNoticeDocument: RequestKind.SHIP_NOTICE,
    InvoiceDocument: RequestKind.INVOICE,
}
DTD: dict[RequestKind, str] = {
    RequestKind.ORDER: "cXML.dtd",
    RequestKind.CONFIRMATION: "Fulfill.dtd",
    RequestKind.SHIP_NOTICE: "Fulfill.dtd",
    RequestKind.INVOICE: "InvoiceDetail.dtd",
}
"""The DTD of each request's DOCTYPE (cXML 1.2 splits them by transaction family)."""


def to_canonical(kind: RequestKind, body: Element) -> CxmlDocument:
    """The canonical document of a request element (``Request/<kind>``)."""
    return READERS[kind](body)


def write_request(request: Element, document: CxmlDocument, notice_date: str) -> None:
    """Write ``document`` as the request element under ``Request``; ``notice_date`` (the
    envelope timestamp) fills a ship notice's noticeDate, which the canonical model lacks."""
    if isinstance(document, OrderDocument):
        order.write(request, document)
    elif isinstance(document, AcknowledgementDocument):
        confirmation.write(request, document)
    elif isinstance(document, ShipNoticeDocument):
        ship_notice.write(request, document, notice_date)
    else:
        invoice.write(request, document)
