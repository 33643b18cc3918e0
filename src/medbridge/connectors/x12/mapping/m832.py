"""832 price/sales catalog <-> ``CatalogDocument``.

BCT02 catalog id, CUR02 currency, DTM*097 issued, DTM*092 (or a header DTM*007) effective
from, DTM*093 effective to, N1 parties (MF manufacturer, BG buying group, SU/DS supplier).
Per LIN item: LIN pairs product ids, PID05 description (the first plain PID), CTP prices
(CTP01 class of trade, CTP02 price code, CTP03 price, CTP04 quantity: 1 or empty, CTP05
unit) each followed by its DTM*007 effective date, pack levels as SLN (SLN04 quantity, SLN05
unit, GTIN among the SLN09.. pairs) or PKL (PKL01/02 id, PKL03 unit, PKL04 quantity).

Tier: CTP02 when CTP01 is ``BG`` (a buying group contract) or CTP02 is not a list price code
(CAT, SLP, MSR, RES, WHL, UCP, LPR); a list price is written ``CTP**CAT``. A CTP inside a PKL
pack level (a pack-level price) has no place in the canonical catalog and is not read.
"""

from __future__ import annotations

from datetime import date

from medbridge.canonical.trade import CatalogDocument, CatalogItem, CatalogPrice, PackLevel
from medbridge.connectors.x12.codec import Segment
from medbridge.connectors.x12.envelope import TransactionSet
from medbridge.connectors.x12.errors import BadElement
from medbridge.connectors.x12.mapping.common import (
    Out,
    SetReader,
    as_gtin,
    fmt_date,
    fmt_decimal,
    item_pairs,
    n1_segments,
    pid,
    split_loops,
)

FUNCTIONAL_ID = "SC"
LIST_PRICE_CODES = frozenset({"CAT", "SLP", "MSR", "RES", "WHL", "UCP", "LPR"})
CONTRACT_CLASS = "BG"


def parse(ts: TransactionSet) -> CatalogDocument:
    r = SetReader(ts)
    bct = r.header("BCT", "catalog")
    catalog_id = r.text(bct, 2, "catalog number")
    header, loops, _ = split_loops(ts.body, "LIN")
    currency = next((s.get(2).strip() for s in header if s.id == "CUR" and s.get(2)), "USD")
    dates: dict[str, date] = {}
    for seg in header:
        if seg.id == "DTM" and seg.get(1) in ("097", "092", "093", "007"):
            dates.setdefault(seg.get(1), r.date(seg, 2, f"date {seg.get(1)}"))
    items = tuple(_item(r, loop) for loop in loops)
    if not items:
        raise r.missing_segment("LIN", "the catalog has no LIN item")
    return r.build(
        bct,
        CatalogDocument,
        catalog_id=catalog_id,
        issued_on=dates.get("097"),
        effective_from=dates.get("092", dates.get("007")),
        effective_to=dates.get("093"),
        currency=currency,
        parties=r.parties(s for s in header if s.id == "N1"),
        items=items,
    )


def _item(r: SetReader, loop: list[Segment]) -> CatalogItem:
    lin = loop[0]
    description = next(
        (
            s.get(5).strip()
            for s in loop
            if s.id == "PID" and s.get(5).strip() and not s.get(2).strip()
        ),
        None,
    )
    prices: list[tuple[Segment, dict[str, object]]] = []
    packs: list[PackLevel] = []
    in_pack = False
    for seg in loop[1:]:
        if seg.id == "CTP" and not in_pack:
            prices.append((seg, _price(r, seg)))
        elif seg.id == "DTM" and seg.get(1) == "007" and prices and not in_pack:
            prices[-1][1].setdefault("effective_from", r.date(seg, 2, "effective date"))
        elif seg.id == "PKL":
            in_pack = True
            packs.append(
                r.build(
                    seg,
                    PackLevel,
                    unit=r.text(seg, 3, "unit of measure"),
                    quantity=r.number(seg, 4, "quantity"),
                    gtin=_gtin(r, seg, 1),
                )
            )
        elif seg.id == "SLN":
            packs.append(
                r.build(
                    seg,
                    PackLevel,
                    unit=_unit(r.text(seg, 5, "unit of measure")),
                    quantity=r.number(seg, 4, "quantity"),
                    gtin=_gtin(r, seg, 9),
                )
            )
    return r.build(
        lin,
        CatalogItem,
        item=r.item(lin, 2, description),
        prices=tuple(r.build(seg, CatalogPrice, **fields) for seg, fields in prices),
        packs=tuple(packs),
    )


def _price(r: SetReader, seg: Segment) -> dict[str, object]:
    klass, code = seg.get(1).strip(), r.text(seg, 2, "price identifier code")
    quantity = r.optional_number(seg, 4, "quantity")
    if quantity is not None and quantity != 1:
        raise r.error(
            BadElement,
            seg,
            4,
            f"price for {seg.get(4)!r} units: catalog prices are per 1 unit",
            seg.get(4),
        )
    tier = code if klass == CONTRACT_CLASS or code not in LIST_PRICE_CODES else None
    return {
        "tier": tier,
        "amount": r.number(seg, 3, "unit price"),
        "unit": _unit(r.text(seg, 5, "unit of measure")),
    }


def _unit(raw: str) -> str:
    """The unit of a C001 composite (``CA`` of ``CA>1``): its leading letters and digits."""
    end = 0
    while end < len(raw) and raw[end].isalnum():
        end += 1
    return raw[:end] or raw


def _gtin(r: SetReader, seg: Segment, first: int) -> str | None:
    for k in range(first, len(seg.elements), 2):
        qualifier, value = seg.get(k).strip(), seg.get(k + 1).strip()
        if qualifier in ("UK", "EN", "UP", "UA", "UI") and value:
            gtin = as_gtin(value)
            if gtin is None:
                raise r.error(BadElement, seg, k + 1, f"{value!r} is not a GTIN", value)
            return gtin
    return None


def render(doc: CatalogDocument) -> list[Out]:
    out: list[Out] = [("BCT", "PC", doc.catalog_id), ("CUR", "SE", doc.currency)]
    for code, value in (
        ("097", doc.issued_on),
        ("092", doc.effective_from),
        ("093", doc.effective_to),
    ):
        if value is not None:
            out.append(("DTM", code, fmt_date(value)))
    out += n1_segments(doc.parties)
    for number, entry in enumerate(doc.items, start=1):
        out.append(("LIN", str(number), *item_pairs(entry.item)))
        out += pid(entry.item.description)
        for price in entry.prices:
            klass, code = (CONTRACT_CLASS, price.tier) if price.tier else ("", "CAT")
            out.append(("CTP", klass, code, fmt_decimal(price.amount), "1", price.unit))
            if price.effective_from is not None:
                out.append(("DTM", "007", fmt_date(price.effective_from)))
        for sub, pack in enumerate(entry.packs, start=1):
            gtin = ["UK", pack.gtin] if pack.gtin else []
            out.append(
                (
                    "SLN",
                    str(number),
                    str(sub),
                    "I",
                    fmt_decimal(pack.quantity),
                    pack.unit,
                    "",
                    "",
                    "",
                    *gtin,
                )
            )
    out.append(("CTT", str(len(doc.items))))
    return out
