"""855 purchase order acknowledgement <-> ``AcknowledgementDocument``.

BAK02 acknowledgement type (AT/AD/AK accepted, AC/AE changes, RD/RJ rejected), BAK03 order
number, BAK04 date (BAK09 acknowledgement date when sent), BAK08 acknowledgement id (the order
number when absent), CUR02 currency. Per line PO1 (line, quantity, unit, PO104 unit price,
product ids), PID05 description, ACK (ACK01 line status, ACK02 quantity, ACK03 unit, ACK04 068
+ ACK05 ship date, ACK07.. substitute product ids). A line without ACK is accepted as ordered
(rejected when the whole order is). The substitute's description travels in ``REF*ZZ*SUBST``.
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
from medbridge.connectors.x12.envelope import TransactionSet
from medbridge.connectors.x12.mapping.common import (
    Out,
    SetReader,
    extension,
    fmt_date,
    fmt_decimal,
    item_pairs,
    n1_segments,
    pid,
    read_extension,
    split_loops,
)

FUNCTIONAL_ID = "PR"
SUBSTITUTE_DESCRIPTION = "SUBST"

ORDER_STATUS = {
    "AT": AckStatus.ACCEPTED,
    "AD": AckStatus.ACCEPTED,
    "AK": AckStatus.ACCEPTED,
    "AP": AckStatus.ACCEPTED,
    "AC": AckStatus.ACCEPTED_WITH_CHANGES,
    "AE": AckStatus.ACCEPTED_WITH_CHANGES,
    "RD": AckStatus.REJECTED,
    "RJ": AckStatus.REJECTED,
    "RF": AckStatus.REJECTED,
}
STATUS_CODE = {
    AckStatus.ACCEPTED: "AT",
    AckStatus.ACCEPTED_WITH_CHANGES: "AC",
    AckStatus.REJECTED: "RJ",
}
LINE_STATUS = {
    "IA": LineStatus.ACCEPTED,
    "AC": LineStatus.ACCEPTED,
    "AR": LineStatus.ACCEPTED,
    "DR": LineStatus.ACCEPTED,
    "IB": LineStatus.BACKORDERED,
    "IS": LineStatus.SUBSTITUTED,
    "IP": LineStatus.PRICE_CHANGED,
    "IQ": LineStatus.QUANTITY_CHANGED,
    "IR": LineStatus.REJECTED,
    "ID": LineStatus.REJECTED,
}
LINE_CODE = {
    LineStatus.ACCEPTED: "IA",
    LineStatus.BACKORDERED: "IB",
    LineStatus.SUBSTITUTED: "IS",
    LineStatus.PRICE_CHANGED: "IP",
    LineStatus.QUANTITY_CHANGED: "IQ",
    LineStatus.REJECTED: "IR",
}
SHIP_DATE_QUALIFIERS = ("068", "067", "017", "002")


def parse(ts: TransactionSet) -> AcknowledgementDocument:
    r = SetReader(ts)
    bak = r.header("BAK", "acknowledgement")
    status: AckStatus = r.code(bak, 2, "acknowledgement type", ORDER_STATUS)
    order_number = r.text(bak, 3, "purchase order number")
    acknowledged_on = r.date(bak, 9, "acknowledgement date") if bak.get(9) else None
    if acknowledged_on is None:
        acknowledged_on = r.date(bak, 4, "date")
    header, loops, _ = split_loops(ts.body, "PO1")
    currency = next((s.get(2).strip() for s in header if s.id == "CUR" and s.get(2)), "USD")
    lines: list[AckLine] = []
    for ordinal, loop in enumerate(loops, start=1):
        po1 = loop[0]
        description = next(
            (s.get(5).strip() for s in loop if s.id == "PID" and s.get(5).strip()), None
        )
        item = r.item(po1, 6, description)
        price = r.optional_number(po1, 4, "unit price")
        ack = next((s for s in loop if s.id == "ACK"), None)
        sub_description = next(
            (v for s in loop if (v := read_extension(s, SUBSTITUTE_DESCRIPTION))), None
        )
        ship_date = None
        substitute: PartnerItem | None = None
        if ack is None:
            line_status = (
                LineStatus.REJECTED if status is AckStatus.REJECTED else LineStatus.ACCEPTED
            )
            quantity = (
                Decimal(0)
                if line_status is LineStatus.REJECTED
                else r.number(po1, 2, "quantity ordered")
            )
            unit = r.text(po1, 3, "unit of measure")
        else:
            line_status = r.code(ack, 1, "line item status", LINE_STATUS)
            if ack.get(2).strip():
                quantity = r.number(ack, 2, "quantity")
            elif line_status is LineStatus.REJECTED:
                quantity = Decimal(0)
            else:
                quantity = r.number(po1, 2, "quantity ordered")
            unit = ack.get(3).strip() or r.text(po1, 3, "unit of measure")
            if ack.get(4) in SHIP_DATE_QUALIFIERS and ack.get(5):
                ship_date = r.date(ack, 5, "ship date")
            if line_status is LineStatus.SUBSTITUTED:
                substitute = r.item(ack, 7, sub_description)
        if ship_date is None:  # some partners send the date in a DTM of the PO1 loop
            dtm = next((s for s in loop if s.id == "DTM" and s.get(1) in ("068", "067")), None)
            if dtm is not None:
                ship_date = r.date(dtm, 2, "ship date")
        lines.append(
            r.build(
                ack or po1,
                AckLine,
                line_number=r.line_number(po1, 1, ordinal),
                item=item,
                status=line_status,
                quantity=quantity,
                unit=unit,
                unit_price=price,
                ship_date=ship_date,
                substitute=substitute,
            )
        )
    return r.build(
        bak,
        AcknowledgementDocument,
        acknowledgement_id=bak.get(8).strip() or order_number,
        order_number=order_number,
        acknowledged_on=acknowledged_on,
        status=status,
        currency=currency,
        lines=tuple(lines),
    )


def render(doc: AcknowledgementDocument) -> list[Out]:
    day = fmt_date(doc.acknowledged_on)
    out: list[Out] = [
        (
            "BAK",
            "00",
            STATUS_CODE[doc.status],
            doc.order_number,
            day,
            "",
            "",
            "",
            doc.acknowledgement_id,
            day,
        ),
        ("CUR", "SE", doc.currency),
        *n1_segments(()),
    ]
    for line in doc.lines:
        price = "" if line.unit_price is None else fmt_decimal(line.unit_price)
        quantity = fmt_decimal(line.quantity)
        out.append(
            ("PO1", str(line.line_number), quantity, line.unit, price, "", *item_pairs(line.item))
        )
        out += pid(line.item.description)
        ship = ("068", fmt_date(line.ship_date)) if line.ship_date else ("", "")
        sub = item_pairs(line.substitute) if line.substitute else []
        out.append(("ACK", LINE_CODE[line.status], quantity, line.unit, *ship, "", *sub))
        if line.substitute is not None and line.substitute.description:
            out.append(extension(SUBSTITUTE_DESCRIPTION, line.substitute.description))
    out.append(("CTT", str(len(doc.lines))))
    return out
