"""X12 round trip: for every canonical trade document, ``parse(render(doc)) == doc``.

Text fields draw from an alphabet rich in X12 delimiter candidates (``* ~ ^ : | > ! \\ '``)
plus non-ASCII letters, so the renderer's delimiter choice is exercised; amounts have up to 4
decimal places.
"""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    TradeDocument,
)
from medbridge.connectors.x12 import Envelope, parse_interchange, render

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENVELOPE = Envelope(
    sender_qualifier="ZZ",
    sender_id="MEDBRIDGE",
    receiver_qualifier="01",
    receiver_id="123456789",
    interchange_control=42,
    group_control=7,
    set_control=1,
    sent_on=date(2026, 1, 2),
    sent_at=time(9, 30),
)

AWKWARD = "*~^:|>!\\'`{}-/ .,#&"
_chars = st.sampled_from(list(AWKWARD) + list("AZaz09éßЖ漢…"))


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_chars, min_size=1, max_size=max_size).map(str.strip).filter(bool)


ids = _text(35)
texts = _text(80)
units = st.sampled_from(["EA", "CA", "BX", "PK", "CS", "X1"])
digits = st.integers
gtins = st.from_regex(r"\A\d{14}\Z")
ndcs = st.from_regex(r"\A\d{11}\Z")
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2080, 12, 31))
money = st.decimals(
    min_value=Decimal(0), max_value=Decimal("9999999.9999"), places=4, allow_nan=False
)
signed = st.decimals(
    min_value=Decimal("-9999999.9999"),
    max_value=Decimal("9999999.9999"),
    places=4,
    allow_nan=False,
)
positive = st.decimals(
    min_value=Decimal("0.0001"), max_value=Decimal("999999.9999"), places=4, allow_nan=False
)
line_numbers = st.integers(min_value=1, max_value=999_999)
currencies = st.sampled_from(["USD", "EUR", "CAD"])


@st.composite
def items(draw: st.DrawFn) -> PartnerItem:
    fields = {
        "supplier_part": draw(st.none() | ids),
        "buyer_part": draw(st.none() | ids),
        "gtin": draw(st.none() | gtins),
        "ndc": draw(st.none() | ndcs),
    }
    description = draw(st.none() | texts)
    if not any(fields.values()) and description is None:  # text alone is enough
        fields["supplier_part"] = draw(ids)
    return PartnerItem(description=description, **fields)


parties = st.lists(
    st.builds(Party, role=st.sampled_from(list(PartyRole)), id=ids, name=st.none() | texts),
    max_size=4,
    unique_by=lambda p: p.role,
).map(tuple)


def _unique_lines(strategy: st.SearchStrategy, min_size: int = 1) -> st.SearchStrategy:
    return st.lists(
        strategy, min_size=min_size, max_size=4, unique_by=lambda line: line.line_number
    ).map(tuple)


orders = st.builds(
    OrderDocument,
    order_number=ids,
    order_date=days,
    currency=currencies,
    parties=parties,
    lines=_unique_lines(
        st.builds(
            OrderLine,
            line_number=line_numbers,
            item=items(),
            quantity=positive,
            unit=units,
            unit_price=money,
            requested_delivery=st.none() | days,
        )
    ),
)


@st.composite
def ack_lines(draw: st.DrawFn) -> AckLine:
    status = draw(st.sampled_from(list(LineStatus)))
    price = draw(st.none() | money)
    if status is LineStatus.PRICE_CHANGED and price is None:
        price = draw(money)
    return AckLine(
        line_number=draw(line_numbers),
        item=draw(items()),
        status=status,
        quantity=Decimal(0) if status is LineStatus.REJECTED else draw(money),
        unit=draw(units),
        unit_price=price,
        ship_date=draw(st.none() | days),
        substitute=draw(items()) if status is LineStatus.SUBSTITUTED else None,
    )


acks = st.builds(
    AcknowledgementDocument,
    acknowledgement_id=ids,
    order_number=ids,
    acknowledged_on=days,
    status=st.sampled_from(list(AckStatus)),
    currency=currencies,
    lines=_unique_lines(ack_lines(), min_size=0),
)

ship_lines = st.builds(
    ShipLine,
    line_number=line_numbers,
    item=items(),
    quantity=positive,
    unit=units,
    lot=st.none() | ids,
    expiry=st.none() | days,
    serials=st.lists(ids, max_size=3).map(tuple),
)
ssccs = st.from_regex(r"\A\d{18}\Z")


@st.composite
def shipped_orders(draw: st.DrawFn, number: str) -> ShippedOrder:
    lines = st.lists(ship_lines, min_size=1, max_size=3).map(tuple)
    if draw(st.booleans()):
        return ShippedOrder(order_number=number, packs=(Pack(sscc=None, lines=draw(lines)),))
    packs = draw(st.lists(ssccs, min_size=1, max_size=3, unique=True))
    return ShippedOrder(
        order_number=number, packs=tuple(Pack(sscc=s, lines=draw(lines)) for s in packs)
    )


@st.composite
def ship_notices(draw: st.DrawFn) -> ShipNoticeDocument:
    numbers = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    orders_ = [draw(shipped_orders(n)) for n in numbers]
    seen: set[str] = set()
    for order in orders_:  # an SSCC identifies one pack across the notice
        for pack in order.packs:
            if pack.sscc in seen:
                return draw(ship_notices())
            if pack.sscc:
                seen.add(pack.sscc)
    return ShipNoticeDocument(
        shipment_id=draw(ids),
        shipped_on=draw(days),
        expected_delivery=draw(st.none() | days),
        carrier=draw(st.none() | ids),
        tracking_number=draw(st.none() | ids),
        parties=draw(parties),
        orders=tuple(orders_),
    )


invoices = st.builds(
    InvoiceDocument,
    invoice_number=ids,
    invoice_date=days,
    purpose=st.sampled_from(list(InvoicePurpose)),
    currency=currencies,
    parties=parties,
    lines=_unique_lines(
        st.builds(
            InvoiceLine,
            line_number=line_numbers,
            item=items(),
            quantity=positive,
            unit=units,
            unit_price=money,
            order_number=st.none() | st.sampled_from(["PO-1", "PO*2", "PO~3"]) | ids,
            order_line=st.none() | line_numbers,
        )
    ),
    tax=signed,
    total=signed,
)


@st.composite
def catalogs(draw: st.DrawFn) -> CatalogDocument:
    start = draw(st.none() | days)
    end = draw(st.none() | days)
    if start and end and end < start:
        start, end = end, start
    catalog_items = st.builds(
        CatalogItem,
        item=items(),
        prices=st.lists(
            st.builds(
                CatalogPrice,
                tier=st.none() | ids | st.sampled_from(["CAT", "SLP", "C01"]),
                amount=money,
                unit=units,
                effective_from=st.none() | days,
            ),
            min_size=1,
            max_size=3,
        ).map(tuple),
        packs=st.lists(
            st.builds(PackLevel, unit=units, quantity=positive, gtin=st.none() | gtins),
            max_size=3,
            unique_by=lambda p: p.unit,
        ).map(tuple),
    )
    return CatalogDocument(
        catalog_id=draw(ids),
        issued_on=draw(st.none() | days),
        effective_from=start,
        effective_to=end,
        currency=draw(currencies),
        parties=draw(parties),
        items=tuple(draw(st.lists(catalog_items, min_size=1, max_size=3))),
    )


def round_trip(document: TradeDocument) -> TradeDocument:
    text = render([document], ENVELOPE)
    parsed = parse_interchange(text.encode("utf-8"))
    assert parsed.errors == ()
    (result,) = parsed.documents
    return result


@SETTINGS
@given(orders)
def test_order_round_trip(document: OrderDocument) -> None:
    assert round_trip(document) == document


@SETTINGS
@given(acks)
def test_acknowledgement_round_trip(document: AcknowledgementDocument) -> None:
    assert round_trip(document) == document


@SETTINGS
@given(ship_notices())
def test_ship_notice_round_trip(document: ShipNoticeDocument) -> None:
    assert round_trip(document) == document


@SETTINGS
@given(invoices)
def test_invoice_round_trip(document: InvoiceDocument) -> None:
    assert round_trip(document) == document


@SETTINGS
@given(catalogs())
def test_catalog_round_trip(document: CatalogDocument) -> None:
    assert round_trip(document) == document


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(orders, invoices, ship_notices()), min_size=1, max_size=4))
def test_many_documents_in_one_interchange(documents: list[TradeDocument]) -> None:
    """One group per functional id, one set per document; order kept within a group."""
    parsed = parse_interchange(render(documents, ENVELOPE))
    assert parsed.errors == ()
    by_kind: dict[type, list[TradeDocument]] = {}
    for document in documents:
        by_kind.setdefault(type(document), []).append(document)
    got: dict[type, list[TradeDocument]] = {}
    for document in parsed.documents:
        got.setdefault(type(document), []).append(document)
    assert got == by_kind
    assert len(parsed.groups) == len(by_kind)
