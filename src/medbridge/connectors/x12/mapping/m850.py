"""850 purchase order <-> ``OrderDocument``.

BEG03 order number, BEG05 order date, CUR02 currency, N1 parties; per line PO1 (PO101 line,
PO102 quantity, PO103 unit, PO104 unit price, PO106.. product id pairs), PID05 description,
DTM*002 requested delivery.
"""

from __future__ import annotations

from medbridge.canonical.trade import OrderDocument, OrderLine
from medbridge.connectors.x12.envelope import TransactionSet
from medbridge.connectors.x12.mapping.common import (
    Out,
    SetReader,
    fmt_date,
    fmt_decimal,
    item_pairs,
    n1_segments,
    pid,
    split_loops,
)

FUNCTIONAL_ID = "PO"


def parse(ts: TransactionSet) -> OrderDocument:
    r = SetReader(ts)
    beg = r.header("BEG", "purchase order")
    number = r.text(beg, 3, "purchase order number")
    ordered = r.date(beg, 5, "purchase order date")
    currency = "USD"
    header, line_segments, _ = split_loops(ts.body, "PO1")
    lines: list[OrderLine] = []
    for seg in header:
        if seg.id == "CUR" and seg.get(2).strip():
            currency = seg.get(2).strip()
    for ordinal, group in enumerate(line_segments, start=1):
        po1 = group[0]
        description = None
        requested = None
        for seg in group[1:]:
            if seg.id == "PID" and description is None and seg.get(5).strip():
                description = seg.get(5).strip()
            elif seg.id == "DTM" and seg.get(1) == "002" and requested is None:
                requested = r.date(seg, 2, "requested delivery date")
        lines.append(
            r.build(
                po1,
                OrderLine,
                line_number=r.line_number(po1, 1, ordinal),
                item=r.item(po1, 6, description),
                quantity=r.number(po1, 2, "quantity ordered"),
                unit=r.text(po1, 3, "unit of measure"),
                unit_price=r.number(po1, 4, "unit price"),
                requested_delivery=requested,
            )
        )
    if not lines:
        raise r.missing_segment("PO1", "the purchase order has no PO1 line")
    return r.build(
        beg,
        OrderDocument,
        order_number=number,
        order_date=ordered,
        currency=currency,
        parties=r.parties(s for s in header if s.id == "N1"),
        lines=tuple(lines),
    )


def render(doc: OrderDocument) -> list[Out]:
    out: list[Out] = [
        ("BEG", "00", "NE", doc.order_number, "", fmt_date(doc.order_date)),
        ("CUR", "BY", doc.currency),
        *n1_segments(doc.parties),
    ]
    for line in doc.lines:
        out.append(
            (
                "PO1",
                str(line.line_number),
                fmt_decimal(line.quantity),
                line.unit,
                fmt_decimal(line.unit_price),
                "",
                *item_pairs(line.item),
            )
        )
        out += pid(line.item.description)
        if line.requested_delivery is not None:
            out.append(("DTM", "002", fmt_date(line.requested_delivery)))
    out.append(("CTT", str(len(doc.lines))))
    return out
