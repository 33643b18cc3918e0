"""ConfirmationRequest <-> ``AcknowledgementDocument``.

ConfirmationHeader@confirmID/@noticeDate/@type -> acknowledgement_id/acknowledged_on/status
(accept -> accepted, reject -> rejected, detail/allDetail -> accepted when every line is,
else accepted_with_changes; backordered/except -> accepted_with_changes); OrderReference@orderID
-> order_number. One ConfirmationItem per line (@lineNumber), with ONE ConfirmationStatus:
@type accept/reject/backordered/detail, @quantity (0 when rejected), UnitOfMeasure, UnitPrice,
@shipmentDate -> ship_date, ItemIn -> substitute. ConfirmationItem carries no ItemID in cXML
1.2, so the line's item is read from the status' Extrinsics SupplierPartID, BuyerPartID, GTIN,
NDC, Description (as suppliers send it).

Extensions written only where cXML has no place (read back first when present):
header Extrinsic ``currency``; header Extrinsic ``ackStatus`` (accepted_with_changes whose
lines are all accepted); status Extrinsic ``lineStatus`` on a ``detail`` status
(substituted, price_changed, quantity_changed).
"""

from __future__ import annotations

from decimal import Decimal

from medbridge.canonical.trade import (
    AckLine,
    AcknowledgementDocument,
    AckStatus,
    LineStatus,
    PartnerItem,
)
from medbridge.connectors.cxml.errors import InvalidValue, MissingData, UnsupportedRequest
from medbridge.connectors.cxml.wire import (
    Element,
    attr,
    build,
    date_attr,
    decimal_attr,
    extrinsics,
    fmt_date,
    fmt_decimal,
    int_attr,
    money,
    own_text,
    path_of,
    read_item,
    required,
    required_attr,
    required_money,
    show,
    sub,
    write_codes,
    write_extrinsic,
    write_item_detail,
    write_item_id,
    write_money,
)

TAG = "ConfirmationRequest"

_HEADER_TYPES = {"accept", "reject", "detail", "allDetail", "backordered", "except"}
_DETAIL = {"detail", "allDetail", "except"}
_LINE_TYPE = {
    LineStatus.ACCEPTED: "accept",
    LineStatus.REJECTED: "reject",
    LineStatus.BACKORDERED: "backordered",
    LineStatus.SUBSTITUTED: "detail",
    LineStatus.PRICE_CHANGED: "detail",
    LineStatus.QUANTITY_CHANGED: "detail",
}


def read(request: Element) -> AcknowledgementDocument:
    header = required(request, "ConfirmationHeader")
    confirm_id = attr(header, "confirmID")
    if confirm_id is None:
        raise MissingData(
            "confirmID is empty: the confirmation has no number (acknowledgement_id)",
            path=f"{path_of(header)}/@confirmID",
        )
    if attr(header, "operation") == "delete":
        raise UnsupportedRequest(
            "deleting a confirmation is not supported", path=f"{path_of(header)}/@operation"
        )
    kind = required_attr(header, "type")
    if kind not in _HEADER_TYPES:
        raise InvalidValue(
            f"ConfirmationHeader type {show(kind)} is not supported",
            path=f"{path_of(header)}/@type",
        )
    extr = extrinsics(header)
    currency = own_text(extr.get("currency")) or _first_currency(request) or "USD"
    lines = tuple(_line(item, currency) for item in request.findall("ConfirmationItem"))
    status = _status(kind, lines, header, extr)
    return build(
        AcknowledgementDocument,
        header,
        acknowledgement_id=confirm_id,
        order_number=required_attr(required(request, "OrderReference"), "orderID"),
        acknowledged_on=date_attr(header, "noticeDate", needed=True),
        status=status,
        currency=currency,
        lines=lines,
    )


def _first_currency(request: Element) -> str | None:
    for el in request.iterfind(".//UnitPrice"):
        currency = money(el)[1]
        if currency:
            return currency
    return None


def _status(
    kind: str, lines: tuple[AckLine, ...], header: Element, extr: dict[str, Element]
) -> AckStatus:
    override = extr.get("ackStatus")
    if override is not None:
        try:
            return AckStatus(own_text(override) or "")
        except ValueError:
            raise InvalidValue(
                f"unknown ackStatus {show(own_text(override) or '')}", path=path_of(override)
            ) from None
    if kind == "accept":
        return AckStatus.ACCEPTED
    if kind == "reject":
        return AckStatus.REJECTED
    if kind in ("detail", "allDetail") and all(ln.status is LineStatus.ACCEPTED for ln in lines):
        return AckStatus.ACCEPTED
    return AckStatus.ACCEPTED_WITH_CHANGES


def _line(item: Element, currency: str) -> AckLine:
    statuses = item.findall("ConfirmationStatus")
    if not statuses:
        raise MissingData(
            "<ConfirmationStatus> is required", path=f"{path_of(item)}/ConfirmationStatus"
        )
    if len(statuses) > 1:
        raise InvalidValue(
            "a line split over several ConfirmationStatus is not supported (one status per line)",
            path=path_of(statuses[1]),
        )
    status_el = statuses[0]
    kind = required_attr(status_el, "type")
    extr = extrinsics(status_el)
    quantity = decimal_attr(status_el, "quantity")
    price_el = status_el.find("UnitPrice")
    unit_price = None if price_el is None else required_money(price_el, currency)
    item_in = status_el.find("ItemIn")
    status = _line_status(kind, status_el, extr, item, quantity, item_in, unit_price)
    substitute: PartnerItem | None = None
    if status is LineStatus.SUBSTITUTED:
        if item_in is None:
            raise MissingData("a substitution needs <ItemIn>", path=f"{path_of(status_el)}/ItemIn")
        detail = item_in.find("ItemDetail")
        substitute = read_item(
            item_in,
            item_id=item_in.find("ItemID"),
            description=None if detail is None else detail.find("Description"),
            extr=extrinsics(detail),
        )
    unit = own_text(status_el.find("UnitOfMeasure")) or own_text(item.find("UnitOfMeasure"))
    if unit is None:
        raise MissingData("<UnitOfMeasure> is required", path=f"{path_of(status_el)}/UnitOfMeasure")
    return build(
        AckLine,
        status_el,
        line_number=int_attr(item, "lineNumber"),
        item=read_item(status_el, item_id=None, description=None, extr=extr),
        status=status,
        quantity=Decimal(0) if status is LineStatus.REJECTED else quantity,
        unit=unit,
        unit_price=unit_price,
        ship_date=date_attr(status_el, "shipmentDate"),
        substitute=substitute,
    )


def _line_status(
    kind: str,
    status_el: Element,
    extr: dict[str, Element],
    item: Element,
    quantity: Decimal,
    item_in: Element | None,
    unit_price: Decimal | None,
) -> LineStatus:
    if kind == "accept":
        return LineStatus.ACCEPTED
    if kind == "reject":
        return LineStatus.REJECTED
    if kind == "backordered":
        return LineStatus.BACKORDERED
    if kind not in _DETAIL:
        raise InvalidValue(
            f"ConfirmationStatus type {show(kind)} is not supported",
            path=f"{path_of(status_el)}/@type",
        )
    declared = extr.get("lineStatus")
    if declared is not None:
        try:
            return LineStatus(own_text(declared) or "")
        except ValueError:
            raise InvalidValue(
                f"unknown lineStatus {show(own_text(declared) or '')}", path=path_of(declared)
            ) from None
    ordered = attr(item, "quantity")
    if item_in is not None:
        return LineStatus.SUBSTITUTED
    if ordered is not None and decimal_attr(item, "quantity") != quantity:
        return LineStatus.QUANTITY_CHANGED
    if unit_price is not None:
        return LineStatus.PRICE_CHANGED
    return LineStatus.ACCEPTED


def write(request: Element, doc: AcknowledgementDocument) -> None:
    conf = sub(request, TAG)
    kind = {
        AckStatus.ACCEPTED: "accept",
        AckStatus.REJECTED: "reject",
        AckStatus.ACCEPTED_WITH_CHANGES: "detail",
    }[doc.status]
    header = sub(
        conf,
        "ConfirmationHeader",
        confirmID=doc.acknowledgement_id,
        operation="new",
        type=kind,
        noticeDate=fmt_date(doc.acknowledged_on),
    )
    write_extrinsic(header, "currency", doc.currency)
    if doc.status is AckStatus.ACCEPTED_WITH_CHANGES and all(
        line.status is LineStatus.ACCEPTED for line in doc.lines
    ):
        write_extrinsic(header, "ackStatus", doc.status.value)
    reference = sub(conf, "OrderReference", orderID=doc.order_number)
    sub(reference, "DocumentReference", payloadID="")
    for line in doc.lines:
        _write_line(conf, line, doc.currency)


def _write_line(conf: Element, line: AckLine, currency: str) -> None:
    quantity = fmt_decimal(line.quantity)
    item = sub(conf, "ConfirmationItem", quantity=quantity, lineNumber=str(line.line_number))
    sub(item, "UnitOfMeasure", line.unit)
    status = sub(
        item,
        "ConfirmationStatus",
        quantity=quantity,
        type=_LINE_TYPE[line.status],
        shipmentDate=fmt_date(line.ship_date) if line.ship_date else None,
    )
    sub(status, "UnitOfMeasure", line.unit)
    if line.unit_price is not None:
        write_money(status, "UnitPrice", line.unit_price, currency)
    if line.substitute is not None:
        item_in = sub(status, "ItemIn", quantity=quantity)
        write_item_id(item_in, line.substitute)
        write_item_detail(
            item_in, line.substitute, line.unit, line.unit_price or Decimal(0), currency
        )
    if _LINE_TYPE[line.status] == "detail":
        write_extrinsic(status, "lineStatus", line.status.value)
    part = line.item
    if part.supplier_part:
        write_extrinsic(status, "SupplierPartID", part.supplier_part)
    if part.buyer_part:
        write_extrinsic(status, "BuyerPartID", part.buyer_part)
    write_codes(status, part)
    if part.description:
        write_extrinsic(status, "Description", part.description)
