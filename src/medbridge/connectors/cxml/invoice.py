"""InvoiceDetailRequest <-> ``InvoiceDocument``.

InvoiceDetailRequestHeader@invoiceID/@invoiceDate/@purpose -> invoice_number/invoice_date/
purpose (standard, debitMemo -> invoice; creditMemo, lineLevelCreditMemo -> credit_memo);
InvoicePartner/Contact and InvoiceDetailShipping/Contact -> parties. Each InvoiceDetailOrder
bills one purchase order: InvoiceDetailOrderInfo OrderReference@orderID, else OrderIDInfo@orderID,
else OrderReference/DocumentReference@payloadID (Coupa puts the PO number there); an order
info with none of them (MasterAgreementReference, a non-PO invoice) bills lines not backed by
an order (order_number None). InvoiceDetailItem@invoiceLineNumber/@quantity, UnitOfMeasure,
UnitPrice, InvoiceDetailItemReference@lineNumber -> order_line (backed lines only),
ItemID/Description -> the line. A credit memo's quantities are negative in cXML: their
magnitude is the canonical quantity.

InvoiceDetailSummary: Money@currency of SubtotalAmount -> currency; Tax/Money (else the sum
of its TaxDetail/TaxAmount) -> tax; total = the amount due as stated: DueAmount, else
NetAmount, else GrossAmount (an empty Money is not a statement), else SubtotalAmount + Tax +
SpecialHandlingAmount + ShippingAmount - InvoiceDetailDiscount (cXML's own definition).

Extension: InvoiceDetailItem Extrinsic ``orderLine`` when the order line is not the default
(a backed line without one: empty; an unbacked line with one: the number).
"""

from __future__ import annotations

from decimal import Decimal
from itertools import groupby

from medbridge.canonical.trade import InvoiceDocument, InvoiceLine, InvoicePurpose
from medbridge.connectors.cxml.errors import (
    InvalidValue,
    MissingData,
    UnsupportedRequest,
)
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
    own_text,
    path_of,
    read_item,
    read_parties,
    required,
    required_attr,
    required_money,
    required_text,
    same_currency,
    show,
    sub,
    write_codes,
    write_contact,
    write_extrinsic,
    write_item_id,
    write_money,
)

TAG = "InvoiceDetailRequest"

_PURPOSE = {
    "standard": InvoicePurpose.INVOICE,
    "debitMemo": InvoicePurpose.INVOICE,
    "creditMemo": InvoicePurpose.CREDIT_MEMO,
    "lineLevelCreditMemo": InvoicePurpose.CREDIT_MEMO,
}


def read(request: Element) -> InvoiceDocument:
    header = required(request, "InvoiceDetailRequestHeader")
    invoice_number = required_attr(header, "invoiceID")
    invoice_date = date_attr(header, "invoiceDate", needed=True)
    purpose_text = attr(header, "purpose") or "standard"
    if purpose_text not in _PURPOSE:
        raise InvalidValue(
            f"invoice purpose {show(purpose_text)} is not supported",
            path=f"{path_of(header)}/@purpose",
        )
    if attr(header, "operation") == "delete":
        raise UnsupportedRequest(
            "cancelling an invoice is not supported", path=f"{path_of(header)}/@operation"
        )
    purpose = _PURPOSE[purpose_text]
    summary = required(request, "InvoiceDetailSummary")
    currency = money(required(summary, "SubtotalAmount"))[1] or "USD"
    orders = request.findall("InvoiceDetailOrder")
    if not orders:
        if request.find("InvoiceDetailHeaderOrder") is not None:
            raise UnsupportedRequest(
                "a header-level invoice (InvoiceDetailHeaderOrder) is not supported",
                path=f"{path_of(request)}/InvoiceDetailHeaderOrder",
            )
        raise MissingData(
            "an invoice needs an InvoiceDetailOrder", path=f"{path_of(request)}/InvoiceDetailOrder"
        )
    lines = [
        line
        for order in orders
        for line in _order_lines(order, currency, purpose is InvoicePurpose.CREDIT_MEMO)
    ]
    contacts = header.findall("InvoicePartner/Contact") + header.findall(
        "InvoiceDetailShipping/Contact"
    )
    tax, total = _summary(summary, currency)
    return build(
        InvoiceDocument,
        header,
        invoice_number=invoice_number,
        invoice_date=invoice_date,
        purpose=purpose,
        currency=currency,
        parties=read_parties(contact_parties(contacts)),
        lines=tuple(lines),
        tax=tax,
        total=total,
    )


def _order_number(info: Element) -> str | None:
    reference = info.find("OrderReference")
    if reference is not None and (number := attr(reference, "orderID")):
        return number
    id_info = info.find("OrderIDInfo")
    if id_info is not None and (number := attr(id_info, "orderID")):
        return number
    if reference is not None:
        document = reference.find("DocumentReference")
        number = None if document is None else attr(document, "payloadID")
        if number is None:
            raise MissingData(
                "OrderReference names no order", path=f"{path_of(reference)}/@orderID"
            )
        return number
    return None


def _order_lines(order: Element, currency: str, credit: bool) -> list[InvoiceLine]:
    order_number = _order_number(required(order, "InvoiceDetailOrderInfo"))
    service = order.find("InvoiceDetailServiceItem")
    if service is not None:
        raise UnsupportedRequest(
            "service invoice lines (InvoiceDetailServiceItem) are not supported",
            path=path_of(service),
        )
    items = order.findall("InvoiceDetailItem")
    if not items:
        raise MissingData("no InvoiceDetailItem", path=f"{path_of(order)}/InvoiceDetailItem")
    return [_line(item, order_number, currency, credit) for item in items]


def _line(item: Element, order_number: str | None, currency: str, credit: bool) -> InvoiceLine:
    reference = required(item, "InvoiceDetailItemReference")
    extr = extrinsics(item)
    order_line: int | None = None
    if "orderLine" in extr:
        declared = own_text(extr["orderLine"])
        if declared is not None:
            if not (declared.isascii() and declared.isdigit() and len(declared) <= 9):
                raise InvalidValue(f"orderLine {show(declared)}", path=path_of(extr["orderLine"]))
            order_line = int(declared)
    elif order_number is not None:
        order_line = int_attr(reference, "lineNumber")
    quantity = decimal_attr(item, "quantity")
    unit_price = required_money(required(item, "UnitPrice"), currency)
    return build(
        InvoiceLine,
        item,
        line_number=int_attr(item, "invoiceLineNumber"),
        item=read_item(
            reference,
            item_id=reference.find("ItemID"),
            description=reference.find("Description"),
            extr=extr,
        ),
        quantity=abs(quantity) if credit else quantity,
        unit=required_text(item, "UnitOfMeasure"),
        unit_price=abs(unit_price) if credit else unit_price,
        order_number=order_number,
        order_line=order_line,
    )


def _amount(summary: Element, tag: str, currency: str) -> Decimal | None:
    holder = summary.find(tag)
    if holder is None:
        return None
    amount, found = money(holder)
    same_currency(found, currency, holder)
    return amount


def _summary(summary: Element, currency: str) -> tuple[Decimal, Decimal]:
    tax = _amount(summary, "Tax", currency)
    if tax is None:
        details = summary.findall("Tax/TaxDetail")
        tax = sum(((_amount(d, "TaxAmount", currency) or Decimal(0)) for d in details), Decimal(0))
    for tag in ("DueAmount", "NetAmount", "GrossAmount"):
        stated = _amount(summary, tag, currency)
        if stated is not None:
            return tax, stated
    subtotal = _amount(summary, "SubtotalAmount", currency)
    if subtotal is None:
        raise MissingData(
            "no amount due stated and SubtotalAmount is empty",
            path=f"{path_of(summary)}/SubtotalAmount/Money",
        )
    charges = sum(
        (
            (_amount(summary, tag, currency) or Decimal(0))
            for tag in ("SpecialHandlingAmount", "ShippingAmount")
        ),
        Decimal(0),
    )
    discount = _amount(summary, "InvoiceDetailDiscount", currency) or Decimal(0)
    return tax, subtotal + tax + charges - discount


def write(request: Element, doc: InvoiceDocument) -> None:
    invoice = sub(request, TAG)
    credit = doc.purpose is InvoicePurpose.CREDIT_MEMO
    header = sub(
        invoice,
        "InvoiceDetailRequestHeader",
        invoiceID=doc.invoice_number,
        purpose="creditMemo" if credit else "standard",
        operation="new",
        invoiceDate=fmt_date(doc.invoice_date),
    )
    sub(header, "InvoiceDetailHeaderIndicator")
    sub(header, "InvoiceDetailLineIndicator")
    for party in doc.parties:
        write_contact(sub(header, "InvoicePartner"), party)
    for order_number, lines in groupby(doc.lines, key=lambda line: line.order_number):
        order = sub(invoice, "InvoiceDetailOrder")
        info = sub(order, "InvoiceDetailOrderInfo")
        if order_number is None:
            sub(sub(info, "MasterAgreementReference"), "DocumentReference", payloadID="")
        else:
            reference = sub(info, "OrderReference", orderID=order_number)
            sub(reference, "DocumentReference", payloadID="")
        for line in lines:
            _write_line(order, line, doc.currency, credit)
    subtotal = sum((line.quantity * line.unit_price for line in doc.lines), Decimal(0))
    summary = sub(invoice, "InvoiceDetailSummary")
    write_money(summary, "SubtotalAmount", -subtotal if credit else subtotal, doc.currency)
    tax = write_money(summary, "Tax", doc.tax, doc.currency)
    lang_text(tax, "Description", "tax")
    write_money(summary, "NetAmount", doc.total, doc.currency)
    write_money(summary, "DueAmount", doc.total, doc.currency)


def _write_line(order: Element, line: InvoiceLine, currency: str, credit: bool) -> None:
    quantity = -line.quantity if credit else line.quantity
    item = sub(
        order,
        "InvoiceDetailItem",
        invoiceLineNumber=str(line.line_number),
        quantity=fmt_decimal(quantity),
    )
    sub(item, "UnitOfMeasure", line.unit)
    write_money(item, "UnitPrice", line.unit_price, currency)
    reference = sub(
        item,
        "InvoiceDetailItemReference",
        lineNumber=str(line.order_line if line.order_line is not None else line.line_number),
    )
    write_item_id(reference, line.item)
    lang_text(reference, "Description", line.item.description or "")
    write_money(item, "SubtotalAmount", quantity * line.unit_price, currency)
    write_codes(item, line.item)
    backed = line.order_number is not None
    if backed and line.order_line is None:
        write_extrinsic(item, "orderLine", "")
    elif not backed and line.order_line is not None:
        write_extrinsic(item, "orderLine", str(line.order_line))
