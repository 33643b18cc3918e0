"""ShipNoticeRequest <-> ``ShipNoticeDocument``.

ShipNoticeHeader@shipmentID/@shipmentDate/@deliveryDate -> shipment_id/shipped_on/
expected_delivery, header Contacts -> parties; ShipControl CarrierIdentifier[@domain=SCAC] ->
carrier, ShipmentIdentifier -> tracking_number. One ShipNoticePortion per order
(OrderReference@orderID), its ShipNoticeItems (@lineNumber, @quantity, UnitOfMeasure, ItemID,
ShipNoticeItemDetail Description + Extrinsic GTIN/NDC, Batch SupplierBatchID/@expirationDate
-> lot/expiry, AssetInfo@serialNumber -> serials) grouped into packs by
Packaging/ShippingContainerSerialCode (the SSCC; none: one unidentified pack).

A portion without ShipNoticeItem (an order-level notice) is refused: a canonical shipped
order needs its lines.
"""

from __future__ import annotations

from medbridge.canonical.trade import Pack, ShipLine, ShipNoticeDocument, ShippedOrder
from medbridge.connectors.cxml.errors import MissingData, UnsupportedRequest
from medbridge.connectors.cxml.wire import (
    Element,
    attr,
    build,
    contact_parties,
    date_attr,
    decimal_attr,
    extrinsics,
    fmt_date,
    fmt_decimal,
    int_attr,
    lang_text,
    own_text,
    path_of,
    read_item,
    read_parties,
    required,
    required_attr,
    required_text,
    sub,
    write_codes,
    write_contact,
    write_item_id,
)

TAG = "ShipNoticeRequest"


def read(request: Element) -> ShipNoticeDocument:
    header = required(request, "ShipNoticeHeader")
    if attr(header, "operation") == "delete":
        raise UnsupportedRequest(
            "cancelling a ship notice is not supported", path=f"{path_of(header)}/@operation"
        )
    carrier = tracking = None
    control = request.find("ShipControl")
    if control is not None:
        for ident in control.findall("CarrierIdentifier"):
            if (ident.get("domain") or "").upper() == "SCAC":
                carrier = own_text(ident)
                break
        tracking = own_text(control.find("ShipmentIdentifier"))
    portions = request.findall("ShipNoticePortion")
    if not portions:
        raise MissingData(
            "a ship notice needs a ShipNoticePortion", path=f"{path_of(request)}/ShipNoticePortion"
        )
    return build(
        ShipNoticeDocument,
        header,
        shipment_id=required_attr(header, "shipmentID"),
        shipped_on=date_attr(header, "shipmentDate", needed=True),
        expected_delivery=date_attr(header, "deliveryDate"),
        carrier=carrier,
        tracking_number=tracking,
        parties=read_parties(contact_parties(header.findall("Contact"))),
        orders=tuple(_order(portion) for portion in portions),
    )


def _order(portion: Element) -> ShippedOrder:
    reference = required(portion, "OrderReference")
    items = portion.findall("ShipNoticeItem")
    if not items:
        raise MissingData(
            "no ShipNoticeItem: a shipped order needs the lines shipped",
            path=f"{path_of(portion)}/ShipNoticeItem",
        )
    packs: dict[str | None, list[ShipLine]] = {}
    for item in items:
        sscc = own_text(item.find("Packaging/ShippingContainerSerialCode"))
        packs.setdefault(sscc, []).append(_line(item))
    return build(
        ShippedOrder,
        portion,
        order_number=required_attr(reference, "orderID"),
        packs=tuple(
            build(Pack, portion, sscc=sscc, lines=tuple(lines)) for sscc, lines in packs.items()
        ),
    )


def _line(item: Element) -> ShipLine:
    detail = item.find("ShipNoticeItemDetail")
    batch = item.find("Batch")
    lot = expiry = None
    if batch is not None:
        lot = own_text(batch.find("SupplierBatchID")) or own_text(batch.find("BuyerBatchID"))
        expiry = date_attr(batch, "expirationDate")
    lot = lot or own_text(item.find("SupplierBatchID"))
    serials = tuple(
        serial for asset in item.findall("AssetInfo") if (serial := attr(asset, "serialNumber"))
    )
    return build(
        ShipLine,
        item,
        line_number=int_attr(item, "lineNumber"),
        item=read_item(
            item,
            item_id=item.find("ItemID"),
            description=None if detail is None else detail.find("Description"),
            extr={**extrinsics(item), **extrinsics(detail)},
        ),
        quantity=decimal_attr(item, "quantity"),
        unit=required_text(item, "UnitOfMeasure"),
        lot=lot,
        expiry=expiry,
        serials=serials,
    )


def write(request: Element, doc: ShipNoticeDocument, notice_date: str) -> None:
    notice = sub(request, TAG)
    header = sub(
        notice,
        "ShipNoticeHeader",
        shipmentID=doc.shipment_id,
        operation="new",
        noticeDate=notice_date,
        shipmentDate=fmt_date(doc.shipped_on),
        deliveryDate=fmt_date(doc.expected_delivery) if doc.expected_delivery else None,
    )
    for party in doc.parties:
        write_contact(header, party)
    if doc.carrier or doc.tracking_number:
        control = sub(notice, "ShipControl")
        if doc.carrier:
            sub(control, "CarrierIdentifier", doc.carrier, domain="SCAC")
        if doc.tracking_number:
            sub(control, "ShipmentIdentifier", doc.tracking_number)
    for order in doc.orders:
        portion = sub(notice, "ShipNoticePortion")
        reference = sub(portion, "OrderReference", orderID=order.order_number)
        sub(reference, "DocumentReference", payloadID="")
        for pack in order.packs:
            for line in pack.lines:
                _write_line(portion, line, pack.sscc)


def _write_line(portion: Element, line: ShipLine, sscc: str | None) -> None:
    item = sub(
        portion,
        "ShipNoticeItem",
        quantity=fmt_decimal(line.quantity),
        lineNumber=str(line.line_number),
    )
    write_item_id(item, line.item)
    detail = sub(item, "ShipNoticeItemDetail")
    lang_text(detail, "Description", line.item.description or "")
    write_codes(detail, line.item)
    sub(item, "UnitOfMeasure", line.unit)
    if sscc is not None:
        sub(sub(item, "Packaging"), "ShippingContainerSerialCode", sscc)
    if line.lot is not None or line.expiry is not None:
        batch = sub(
            item,
            "Batch",
            expirationDate=fmt_date(line.expiry) if line.expiry else None,
        )
        if line.lot is not None:
            sub(batch, "SupplierBatchID", line.lot)
    for serial in line.serials:
        sub(item, "AssetInfo", serialNumber=serial)
