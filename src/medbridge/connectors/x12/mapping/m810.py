"""810 invoice <-> ``InvoiceDocument``.

BIG01 invoice date, BIG02 invoice number, BIG04 purchase order (every line's, unless the line
has its own REF*PO), BIG07 ``CR`` credit memo; CUR02 currency, N1 parties. Per line IT1
(IT101 line, IT102 quantity, IT103 unit, IT104 unit price, IT106.. product ids), PID05
description, REF*PO order number, REF*LI order line. Tax: header TXI02 amounts plus SAC*C*H850
(SAC05, 2 implied decimals). Total: TDS01 (2 implied decimals); a total with more than two
decimals also travels exactly in ``REF*ZZ*TOTAL``.
"""

from __future__ import annotations

from decimal import Decimal

from medbridge.canonical.trade import InvoiceDocument, InvoiceLine, InvoicePurpose
from medbridge.connectors.x12.codec import Segment
from medbridge.connectors.x12.envelope import TransactionSet
from medbridge.connectors.x12.errors import BadNumber
from medbridge.connectors.x12.mapping.common import (
    Out,
    SetReader,
    extension,
    fmt_date,
    fmt_decimal,
    fmt_implied,
    item_pairs,
    n1_segments,
    pid,
    read_extension,
    split_loops,
)

FUNCTIONAL_ID = "IN"
TOTAL = "TOTAL"


def parse(ts: TransactionSet) -> InvoiceDocument:
    r = SetReader(ts)
    big = r.header("BIG", "invoice")
    invoice_date = r.date(big, 1, "invoice date")
    number = r.text(big, 2, "invoice number")
    header_order = r.optional(big, 4)
    purpose = InvoicePurpose.CREDIT_MEMO if big.get(7) == "CR" else InvoicePurpose.INVOICE
    header, loops, summary = split_loops(ts.body, "IT1", stop=("TDS", "CTT"))
    currency = next((s.get(2).strip() for s in header if s.id == "CUR" and s.get(2)), "USD")
    lines: list[InvoiceLine] = []
    for ordinal, loop in enumerate(loops, start=1):
        it1 = loop[0]
        description = None
        order_number = header_order
        order_line = None
        for seg in loop[1:]:
            if seg.id == "PID" and description is None and seg.get(5).strip():
                description = seg.get(5).strip()
            elif seg.id == "REF" and seg.get(1) == "PO":
                order_number = r.text(seg, 2, "purchase order number")
            elif seg.id == "REF" and seg.get(1) == "LI":
                order_line = r.integer(seg, 2, "order line number")
        lines.append(
            r.build(
                it1,
                InvoiceLine,
                line_number=r.line_number(it1, 1, ordinal),
                item=r.item(it1, 6, description),
                quantity=r.number(it1, 2, "quantity invoiced"),
                unit=r.text(it1, 3, "unit of measure"),
                unit_price=_price(r, it1),
                order_number=order_number,
                order_line=order_line,
            )
        )
    if not lines:
        raise r.missing_segment("IT1", "the invoice has no IT1 line")
    tax = Decimal(0)
    total = None
    tds = next((s for s in summary if s.id == "TDS"), None)
    for seg in summary:
        if seg.id == "TXI" and seg.get(2).strip():
            tax += r.number(seg, 2, "tax amount")
        elif seg.id == "SAC" and seg.get(1) == "C" and seg.get(2) == "H850":
            tax += r.implied(seg, 5, "tax amount")
    for seg in header:
        exact = read_extension(seg, TOTAL)
        if exact is not None:
            total = r.number(seg, 3, "exact total")
    if total is None:
        if tds is None:
            raise r.missing_segment("TDS", "the invoice has no TDS total")
        total = r.implied(tds, 1, "total invoice amount")
    return r.build(
        big,
        InvoiceDocument,
        invoice_number=number,
        invoice_date=invoice_date,
        purpose=purpose,
        currency=currency,
        parties=r.parties(s for s in header if s.id == "N1"),
        lines=tuple(lines),
        tax=tax,
        total=total,
    )


def _price(r: SetReader, it1: Segment) -> Decimal:
    price = r.number(it1, 4, "unit price")
    if price < 0:
        raise r.error(BadNumber, it1, 4, f"unit price {it1.get(4)!r} is negative", it1.get(4))
    return price


def render(doc: InvoiceDocument) -> list[Out]:
    orders = {line.order_number for line in doc.lines}
    shared = next(iter(orders)) if len(orders) == 1 else None
    out: list[Out] = [
        (
            "BIG",
            fmt_date(doc.invoice_date),
            doc.invoice_number,
            "",
            shared or "",
            "",
            "",
            "CR" if doc.purpose is InvoicePurpose.CREDIT_MEMO else "DI",
        ),
        ("CUR", "SE", doc.currency),
    ]
    if doc.total != doc.total.quantize(Decimal("0.01")):
        out.append(extension(TOTAL, fmt_decimal(doc.total)))
    out += n1_segments(doc.parties)
    for line in doc.lines:
        out.append(
            (
                "IT1",
                str(line.line_number),
                fmt_decimal(line.quantity),
                line.unit,
                fmt_decimal(line.unit_price),
                "",
                *item_pairs(line.item),
            )
        )
        out += pid(line.item.description)
        if line.order_number is not None and shared is None:
            out.append(("REF", "PO", line.order_number))
        if line.order_line is not None:
            out.append(("REF", "LI", str(line.order_line)))
    out.append(("TDS", fmt_implied(doc.total.quantize(Decimal("0.01")))))
    if doc.tax:
        out.append(("TXI", "TX", fmt_decimal(doc.tax)))
    out.append(("CTT", str(len(doc.lines))))
    return out
