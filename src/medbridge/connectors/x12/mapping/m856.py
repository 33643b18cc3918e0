"""856 advance ship notice <-> ``ShipNoticeDocument``.

BSN02 shipment id, BSN03 date (DTM*011 shipped date wins), DTM*017/067 expected delivery,
TD503 carrier SCAC, REF*CN tracking number, N1 parties. The HL hierarchy is read as a tree
(HL02 parent, or when HL02 is empty the nearest earlier HL of a higher level): S shipment,
O order (PRF01 order number), P/T pack (MAN*GM SSCC; a 20-digit value is AI 00 + SSCC),
I item (LIN01 line, LIN pairs product ids, LT lot, SN serial; SN1 quantity/unit; PID05
description; REF*LT lot, REF*SE serials, DTM*036 expiry; PRF at item level when there is no
O level). Shapes read: S/O/I, S/O/P/I, S/I with PRF per item, S/O/I without parent ids.
Written as S/O/I when an order's lines are not packed, else S/O/P/I.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from medbridge.canonical.trade import Pack, PartnerItem, ShipLine, ShipNoticeDocument, ShippedOrder
from medbridge.connectors.x12.codec import Segment
from medbridge.connectors.x12.envelope import TransactionSet
from medbridge.connectors.x12.errors import BadElement, MissingElement
from medbridge.connectors.x12.mapping.common import (
    Out,
    SetReader,
    fmt_date,
    fmt_decimal,
    item_pairs,
    n1_segments,
    pid,
)

FUNCTIONAL_ID = "SH"
RANK = {"S": 0, "O": 1, "P": 2, "T": 2, "I": 3}


@dataclass
class _Node:
    hl: Segment
    level: str
    parent: _Node | None
    segments: list[Segment] = field(default_factory=list)

    def ancestor(self, *levels: str) -> _Node | None:
        node: _Node | None = self.parent
        while node is not None:
            if node.level in levels:
                return node
            node = node.parent
        return None


def _tree(r: SetReader, ts: TransactionSet) -> tuple[list[Segment], list[_Node]]:
    header: list[Segment] = []
    nodes: list[_Node] = []
    by_id: dict[str, _Node] = {}
    for seg in ts.body:
        if seg.id == "HL":
            level = seg.get(3).strip()
            parent_id = seg.get(2).strip()
            if parent_id:
                parent = by_id.get(parent_id)
                if parent is None:
                    raise r.error(
                        BadElement, seg, 2, f"parent HL {parent_id!r} is not an earlier HL"
                    )
            else:
                rank = RANK.get(level, 3)
                parent = next((n for n in reversed(nodes) if RANK.get(n.level, 3) < rank), None)
            node = _Node(seg, level, parent)
            nodes.append(node)
            by_id[seg.get(1).strip()] = node
        elif seg.id == "CTT":
            break
        elif nodes:
            nodes[-1].segments.append(seg)
        else:
            header.append(seg)
    return header, nodes


def parse(ts: TransactionSet) -> ShipNoticeDocument:
    r = SetReader(ts)
    bsn = r.header("BSN", "ship notice")
    shipment_id = r.text(bsn, 2, "shipment identification")
    header, nodes = _tree(r, ts)
    if not nodes:
        raise r.missing_segment("HL", "the ship notice has no HL hierarchy")
    shipment = [s for n in nodes if n.level == "S" for s in n.segments] + header
    shipped_on: date | None = None
    expected: date | None = None
    carrier = tracking = None
    for seg in shipment:
        if seg.id == "DTM" and seg.get(1) == "011" and shipped_on is None:
            shipped_on = r.date(seg, 2, "ship date")
        elif seg.id == "DTM" and seg.get(1) in ("017", "067") and expected is None:
            expected = r.date(seg, 2, "expected delivery date")
        elif seg.id == "TD5" and seg.get(2) == "2" and carrier is None:
            carrier = r.optional(seg, 3)
        elif seg.id == "REF" and seg.get(1) == "CN" and tracking is None:
            tracking = r.optional(seg, 2)
    if shipped_on is None:
        shipped_on = r.date(bsn, 3, "shipment date")
    orders: dict[str, dict[str | None, list[ShipLine]]] = {}
    first_seg: dict[str, Segment] = {}
    counts: dict[str, int] = {}
    for node in nodes:
        if node.level != "I":
            continue
        order_node = node.ancestor("O")
        prf = _prf(node) or (_prf(order_node) if order_node else None)
        if prf is None:
            raise r.error(
                MissingElement, node.hl, None, "no PRF order number for this item (HL level I)"
            )
        order_number = r.text(prf, 1, "purchase order number")
        pack_node = node.ancestor("P", "T")
        sscc = _sscc(r, pack_node) if pack_node else None
        counts[order_number] = counts.get(order_number, 0) + 1
        line = _line(r, node, counts[order_number])
        orders.setdefault(order_number, {}).setdefault(sscc, []).append(line)
        first_seg.setdefault(order_number, prf)
    if not orders:
        raise r.missing_segment("HL", "the ship notice has no item level (HL*I)")
    shipped = tuple(
        r.build(
            first_seg[number],
            ShippedOrder,
            order_number=number,
            packs=tuple(
                r.build(first_seg[number], Pack, sscc=sscc, lines=tuple(lines))
                for sscc, lines in packs.items()
            ),
        )
        for number, packs in orders.items()
    )
    return r.build(
        bsn,
        ShipNoticeDocument,
        shipment_id=shipment_id,
        shipped_on=shipped_on,
        expected_delivery=expected,
        carrier=carrier,
        tracking_number=tracking,
        parties=r.parties(s for s in shipment if s.id == "N1"),
        orders=shipped,
    )


def _prf(node: _Node) -> Segment | None:
    return next((s for s in node.segments if s.id == "PRF"), None)


def _sscc(r: SetReader, node: _Node) -> str | None:
    man = next((s for s in node.segments if s.id == "MAN" and s.get(1) == "GM"), None)
    if man is None:
        return None
    value = r.text(man, 2, "SSCC")
    if len(value) == 20 and value.startswith("00"):
        value = value[2:]
    if len(value) != 18 or not (value.isascii() and value.isdigit()):
        raise r.error(BadElement, man, 2, f"SSCC {value!r} is not 18 digits", value)
    return value


def _line(r: SetReader, node: _Node, ordinal: int) -> ShipLine:
    lin = next((s for s in node.segments if s.id == "LIN"), None)
    sn1 = next((s for s in node.segments if s.id == "SN1"), None)
    if lin is None or sn1 is None:
        missing = "LIN" if lin is None else "SN1"
        raise r.error(MissingElement, node.hl, None, f"item level without {missing}")
    description = next(
        (s.get(5).strip() for s in node.segments if s.id == "PID" and s.get(5).strip()), None
    )
    lot = expiry = None
    serials: list[str] = []
    for k in range(2, len(lin.elements), 2):
        qualifier, value = lin.get(k).strip(), lin.get(k + 1).strip()
        if qualifier == "LT" and value and lot is None:
            lot = value
        elif qualifier == "SN" and value:
            serials.append(value)
    for seg in node.segments:
        if seg.id == "REF" and seg.get(1) == "LT" and lot is None:
            lot = r.text(seg, 2, "lot number")
        elif seg.id == "REF" and seg.get(1) == "SE":
            serials.append(r.text(seg, 2, "serial number"))
        elif seg.id == "DTM" and seg.get(1) == "036" and expiry is None:
            expiry = r.date(seg, 2, "expiration date")
    line_number = r.line_number(lin, 1, 0) or r.line_number(sn1, 1, ordinal)
    item: PartnerItem = r.item(lin, 2, description)
    return r.build(
        sn1,
        ShipLine,
        line_number=line_number,
        item=item,
        quantity=r.number(sn1, 2, "number of units shipped"),
        unit=r.text(sn1, 3, "unit of measure"),
        lot=lot,
        expiry=expiry,
        serials=tuple(serials),
    )


def render(doc: ShipNoticeDocument) -> list[Out]:
    out: list[Out] = [
        ("BSN", "00", doc.shipment_id, fmt_date(doc.shipped_on), "0000"),
        ("DTM", "011", fmt_date(doc.shipped_on)),
    ]
    if doc.expected_delivery is not None:
        out.append(("DTM", "017", fmt_date(doc.expected_delivery)))
    out.append(("HL", "1", "", "S"))
    if doc.carrier is not None:
        out.append(("TD5", "", "2", doc.carrier))
    if doc.tracking_number is not None:
        out.append(("REF", "CN", doc.tracking_number))
    out += n1_segments(doc.parties)
    count = 1
    for order in doc.orders:
        count += 1
        order_hl = count
        out += [("HL", str(order_hl), "1", "O"), ("PRF", order.order_number)]
        for pack in order.packs:
            parent = order_hl
            if pack.sscc is not None:
                count += 1
                parent = count
                out += [("HL", str(count), str(order_hl), "P"), ("MAN", "GM", pack.sscc)]
            for line in pack.lines:
                count += 1
                out.append(("HL", str(count), str(parent), "I"))
                lot = ["LT", line.lot] if line.lot is not None else []
                out.append(("LIN", str(line.line_number), *item_pairs(line.item), *lot))
                out.append(("SN1", "", fmt_decimal(line.quantity), line.unit))
                out += pid(line.item.description)
                if line.expiry is not None:
                    out.append(("DTM", "036", fmt_date(line.expiry)))
                out += [("REF", "SE", serial) for serial in line.serials]
    out.append(("CTT", str(count)))
    return out
