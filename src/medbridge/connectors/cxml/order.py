"""OrderRequest <-> ``OrderDocument``.

OrderRequestHeader@orderID/@orderDate -> order_number/order_date; Total/Money@currency ->
currency (every UnitPrice must be in it); ShipTo/BillTo Address (@addressID, Name) and header
Contacts -> parties. ItemOut@lineNumber (else its position), @quantity,
@requestedDeliveryDate (else the header's) -> the line; ItemID SupplierPartID/BuyerPartID,
ItemDetail UnitPrice, Description, UnitOfMeasure and Extrinsic GTIN/NDC -> item, price, unit.

Parties are written as header Contacts (@role, @addressID, Name) in the document's order, the
ship-to and bill-to also as ShipTo/BillTo Address; read back from the Contacts first, then
ShipTo/BillTo for a role no Contact gave.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from medbridge.canonical.trade import OrderDocument, OrderLine, PartyRole
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
    money,
    path_of,
    read_item,
    read_parties,
    required,
    required_attr,
    required_money,
    required_text,
    show,
    sub,
    write_contact,
    write_item_detail,
    write_item_id,
    write_money,
)

TAG = "OrderRequest"


def read(request: Element) -> OrderDocument:
    header = required(request, "OrderRequestHeader")
    kind = attr(header, "type") or "new"
    if kind not in ("new", "update"):
        raise UnsupportedRequest(
            f"OrderRequest type {show(kind)} is not supported (new, update)",
            path=f"{path_of(header)}/@type",
        )
    currency = "USD"
    total = header.find("Total")
    if total is not None:
        currency = money(total)[1] or currency
    default_delivery = date_attr(header, "requestedDeliveryDate")
    found = contact_parties(header.findall("Contact"))
    found += [
        (role, address)
        for role, tag in ((PartyRole.SHIP_TO, "ShipTo"), (PartyRole.BILL_TO, "BillTo"))
        if (address := header.find(f"{tag}/Address")) is not None
    ]
    items = request.findall("ItemOut")
    if not items:
        raise MissingData("an order needs at least one ItemOut", path=f"{path_of(request)}/ItemOut")
    lines = [_line(item, n, currency, default_delivery) for n, item in enumerate(items, 1)]
    return build(
        OrderDocument,
        header,
        order_number=required_attr(header, "orderID"),
        order_date=date_attr(header, "orderDate", needed=True),
        currency=currency,
        parties=read_parties(found),
        lines=tuple(lines),
    )


def _line(item: Element, position: int, currency: str, default_delivery: date | None) -> OrderLine:
    detail = required(item, "ItemDetail")
    return build(
        OrderLine,
        item,
        line_number=int_attr(item, "lineNumber", position),
        item=read_item(
            item,
            item_id=required(item, "ItemID"),
            description=detail.find("Description"),
            extr=extrinsics(detail),
        ),
        quantity=decimal_attr(item, "quantity"),
        unit=required_text(detail, "UnitOfMeasure"),
        unit_price=required_money(required(detail, "UnitPrice"), currency),
        requested_delivery=date_attr(item, "requestedDeliveryDate") or default_delivery,
    )


def write(request: Element, doc: OrderDocument) -> None:
    order = sub(request, TAG)
    header = sub(
        order,
        "OrderRequestHeader",
        orderID=doc.order_number,
        orderDate=fmt_date(doc.order_date),
        type="new",
    )
    total = sum((line.quantity * line.unit_price for line in doc.lines), Decimal(0))
    write_money(header, "Total", total, doc.currency)
    by_role = {party.role: party for party in doc.parties}
    for role, tag in ((PartyRole.SHIP_TO, "ShipTo"), (PartyRole.BILL_TO, "BillTo")):
        party = by_role.get(role)
        if party is not None:
            address = sub(sub(header, tag), "Address", addressID=party.id)
            lang_text(address, "Name", party.name or "")
    for party in doc.parties:  # every party, in order (ship-to and bill-to again)
        write_contact(header, party)
    for line in doc.lines:
        item = sub(
            order,
            "ItemOut",
            quantity=fmt_decimal(line.quantity),
            lineNumber=str(line.line_number),
            requestedDeliveryDate=(
                fmt_date(line.requested_delivery) if line.requested_delivery else None
            ),
        )
        write_item_id(item, line.item)
        write_item_detail(item, line.item, line.unit, line.unit_price, doc.currency)
