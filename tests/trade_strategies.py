"""Hypothesis strategies for every canonical trade document (``medbridge.canonical.trade``).

One set of generators shared by the wire-format round-trip tests (X12, cXML): each test passes
its own ``partner_id`` and ``text`` strategies (the alphabet that stresses its format: X12
delimiters, XML markup, non-ASCII) and gets valid documents honouring every canonical rule:
unique line numbers, one party per role, an item identified by an id or a description, a
substituted acknowledgement line has a substitute, a price change has a price, a rejected line
commits 0, ship notice orders and SSCCs unique, at most one pack without SSCC per order, one
pack level per unit, catalog effective dates in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from medbridge.canonical.trade import (
    AckLine,
    AcknowledgementDocument,
    AckStatus,
    CatalogDocument,
    CatalogItem,
    CatalogPrice,
    InvoiceDocument,
    InvoiceLine,
    InvoicePurpose,
    LineStatus,
    OrderDocument,
    OrderLine,
    Pack,
    PackLevel,
    PartnerItem,
    Party,
    PartyRole,
    ShipLine,
    ShipNoticeDocument,
    ShippedOrder,
)

T = TypeVar("T")

MAX_LINES = 4
MAX_INVOICE_LINES = 6  # more lines than order numbers below: multi-PO invoices are common
SHARED_ORDER_NUMBERS = ["PO-1", "PO-2", "PO*2", "PO~3"]
"""Order numbers invoice lines share (several lines of one PO, several POs per invoice)."""

units = st.sampled_from(["EA", "CA", "BX", "PK", "CS", "X1"]) | st.from_regex(
    r"[A-Z0-9]{2}", fullmatch=True
)
currencies = st.sampled_from(["USD", "EUR", "CAD"]) | st.from_regex(r"[A-Z]{3}", fullmatch=True)
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2080, 12, 31)) | st.dates(
    min_value=date(1000, 1, 1), max_value=date(9999, 12, 31)
)
line_numbers = st.integers(min_value=1, max_value=999_999)
gtins = st.from_regex(r"[0-9]{14}", fullmatch=True)
ndcs = st.from_regex(r"[0-9]{11}", fullmatch=True)
ssccs = st.from_regex(r"[0-9]{18}", fullmatch=True) | st.integers(0, 10**18 - 1).map(
    "{:018d}".format
)


def _decimals(low: str, high: str = "99999999999.9999") -> SearchStrategy[Decimal]:
    """Up to 4 places over the whole canonical range, plus everyday 2-place amounts."""
    return st.decimals(
        min_value=Decimal(low),
        max_value=Decimal(high),
        places=4,
        allow_nan=False,
        allow_infinity=False,
    ) | st.decimals(min_value=Decimal(low).max(Decimal(0)), max_value=Decimal(1000), places=2)


positive = _decimals("0.0001").filter(lambda d: d > 0)
non_negative = _decimals("0")
signed = _decimals("-99999999999.9999")


def _tuples(
    strategy: SearchStrategy[T], *, min_size: int = 0, max_size: int = MAX_LINES
) -> SearchStrategy[tuple[T, ...]]:
    return st.lists(strategy, min_size=min_size, max_size=max_size).map(tuple)


def _lines(
    strategy: SearchStrategy[T], *, min_size: int = 1, max_size: int = MAX_LINES
) -> SearchStrategy[tuple[T, ...]]:
    """Lines with unique line numbers."""
    return st.lists(
        strategy,
        min_size=min_size,
        max_size=max_size,
        unique_by=lambda line: line.line_number,  # type: ignore[attr-defined]
    ).map(tuple)


@dataclass(frozen=True)
class TradeStrategies:
    """Strategies for the canonical trade documents and their shared parts."""

    items: SearchStrategy[PartnerItem]
    parties: SearchStrategy[tuple[Party, ...]]
    orders: SearchStrategy[OrderDocument]
    acknowledgements: SearchStrategy[AcknowledgementDocument]
    ship_notices: SearchStrategy[ShipNoticeDocument]
    invoices: SearchStrategy[InvoiceDocument]
    catalogs: SearchStrategy[CatalogDocument]


def trade_documents(partner_id: SearchStrategy[str], text: SearchStrategy[str]) -> TradeStrategies:
    """Every canonical trade document, with identifiers from ``partner_id`` (at most 35
    characters, stripped, non-empty) and free text from ``text`` (at most 80)."""

    @st.composite
    def items(draw: st.DrawFn) -> PartnerItem:
        fields: dict[str, Any] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "supplier_part": st.none() | partner_id,
                    "buyer_part": st.none() | partner_id,
                    "gtin": st.none() | gtins,
                    "ndc": st.none() | ndcs,
                },
            )
        )
        description = draw(st.none() | text)
        if not any(fields.values()) and description is None:
            if draw(st.booleans()):  # text alone is enough
                description = draw(text)
            else:
                fields["supplier_part"] = draw(partner_id)
        return PartnerItem(**fields, description=description)

    parties = st.lists(
        st.builds(Party, role=st.sampled_from(PartyRole), id=partner_id, name=st.none() | text),
        max_size=len(PartyRole),
        unique_by=lambda p: p.role,
    ).map(tuple)

    orders = st.builds(
        OrderDocument,
        order_number=partner_id,
        order_date=days,
        currency=currencies,
        parties=parties,
        lines=_lines(
            st.builds(
                OrderLine,
                line_number=line_numbers,
                item=items(),
                quantity=positive,
                unit=units,
                unit_price=non_negative,
                requested_delivery=st.none() | days,
            )
        ),
    )

    @st.composite
    def ack_lines(draw: st.DrawFn) -> AckLine:
        status = draw(st.sampled_from(LineStatus))
        price = draw(st.none() | non_negative)
        if status is LineStatus.PRICE_CHANGED and price is None:
            price = draw(non_negative)
        return AckLine(
            line_number=draw(line_numbers),
            item=draw(items()),
            status=status,
            quantity=Decimal(0) if status is LineStatus.REJECTED else draw(non_negative),
            unit=draw(units),
            unit_price=price,
            ship_date=draw(st.none() | days),
            substitute=draw(items()) if status is LineStatus.SUBSTITUTED else None,
        )

    acknowledgements = st.builds(
        AcknowledgementDocument,
        acknowledgement_id=partner_id,
        order_number=partner_id,
        acknowledged_on=days,
        status=st.sampled_from(AckStatus),
        currency=currencies,
        lines=_lines(ack_lines(), min_size=0),
    )

    ship_lines = st.builds(
        ShipLine,
        line_number=line_numbers,
        item=items(),
        quantity=positive,
        unit=units,
        lot=st.none() | partner_id,
        expiry=st.none() | days,
        serials=_tuples(partner_id, max_size=3),
    )

    @st.composite
    def ship_notices(draw: st.DrawFn) -> ShipNoticeDocument:
        numbers = draw(st.lists(partner_id, min_size=1, max_size=3, unique=True))
        # enough SSCCs for 3 orders of 3 packs, unique across the whole notice
        pool = iter(draw(st.lists(ssccs, min_size=9, max_size=9, unique=True)))
        shipped = []
        for number in numbers:
            count = draw(st.integers(min_value=1, max_value=3))
            identified = count > 1 or draw(st.booleans())  # one unidentified pack at most
            packs = tuple(
                Pack(
                    sscc=next(pool) if identified else None,
                    lines=draw(_tuples(ship_lines, min_size=1, max_size=3)),
                )
                for _ in range(count)
            )
            shipped.append(ShippedOrder(order_number=number, packs=packs))
        return ShipNoticeDocument(
            shipment_id=draw(partner_id),
            shipped_on=draw(days),
            expected_delivery=draw(st.none() | days),
            carrier=draw(st.none() | partner_id),
            tracking_number=draw(st.none() | partner_id),
            parties=draw(parties),
            orders=tuple(shipped),
        )

    invoices = st.builds(
        InvoiceDocument,
        invoice_number=partner_id,
        invoice_date=days,
        purpose=st.sampled_from(InvoicePurpose),
        currency=currencies,
        parties=parties,
        lines=_lines(
            st.builds(
                InvoiceLine,
                line_number=line_numbers,
                item=items(),
                quantity=positive,
                unit=units,
                unit_price=non_negative,
                order_number=st.none() | st.sampled_from(SHARED_ORDER_NUMBERS) | partner_id,
                order_line=st.none() | line_numbers,
            ),
            max_size=MAX_INVOICE_LINES,
        ),
        tax=signed,
        total=signed,
    )

    catalog_items = st.builds(
        CatalogItem,
        item=items(),
        prices=_tuples(
            st.builds(
                CatalogPrice,
                tier=st.none() | partner_id | st.sampled_from(["CAT", "SLP", "C01"]),
                amount=non_negative,
                unit=units,
                effective_from=st.none() | days,
            ),
            min_size=1,
            max_size=3,
        ),
        packs=st.lists(
            st.builds(PackLevel, unit=units, quantity=positive, gtin=st.none() | gtins),
            max_size=3,
            unique_by=lambda p: p.unit,
        ).map(tuple),
    )

    @st.composite
    def catalogs(draw: st.DrawFn) -> CatalogDocument:
        start = draw(st.none() | days)
        end = draw(st.none() | days)
        if start and end and end < start:
            start, end = end, start
        return CatalogDocument(
            catalog_id=draw(partner_id),
            issued_on=draw(st.none() | days),
            effective_from=start,
            effective_to=end,
            currency=draw(currencies),
            parties=draw(parties),
            items=draw(_tuples(catalog_items, min_size=1, max_size=3)),
        )

    return TradeStrategies(
        items=items(),
        parties=parties,
        orders=orders,
        acknowledgements=acknowledgements,
        ship_notices=ship_notices(),
        invoices=invoices,
        catalogs=catalogs(),
    )
