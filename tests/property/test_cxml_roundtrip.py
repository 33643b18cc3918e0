"""Every canonical field survives cXML: ``parse(render(doc)).document == doc`` for generated
orders, acknowledgements, ship notices and invoices (text with markup characters, quotes and
non-ASCII; decimals with up to 4 places), and the envelope survives as well."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medbridge.canonical.trade import (
    AckLine,
    AcknowledgementDocument,
    AckStatus,
    InvoiceDocument,
    InvoiceLine,
    InvoicePurpose,
    LineStatus,
    OrderDocument,
    OrderLine,
    Pack,
    PartnerItem,
    Party,
    PartyRole,
    ShipLine,
    ShipNoticeDocument,
    ShippedOrder,
)
from medbridge.connectors.cxml import CXML_VERSION, CxmlEnvelope, parse, render

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_XML_UNSAFE = {chr(c) for c in range(0x20)} | {"\x7f", "\ufffe", "\uffff"}
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(_XML_UNSAFE))
_markup = st.sampled_from(["<", ">", "&", '"', "'", "&amp;", "]]>", "é", "\u2019", "日本", "𝄞"])


def _text(max_size: int) -> st.SearchStrategy[str]:
    pieces = st.lists(st.one_of(_markup, st.text(_chars, min_size=1, max_size=8)), min_size=1)
    return pieces.map("".join).map(lambda s: s.strip()[:max_size].strip()).filter(bool)


partner_id = _text(35)
trade_text = _text(80)
unit = st.from_regex(r"[A-Z0-9]{2}", fullmatch=True)
dates = st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31))
line_number = st.integers(min_value=1, max_value=999_999)
currency = st.from_regex(r"[A-Z]{3}", fullmatch=True)


def _decimals(low: str, high: str = "99999999999.9999") -> st.SearchStrategy[Decimal]:
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


@st.composite
def items(draw: st.DrawFn) -> PartnerItem:
    ids = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "supplier_part": partner_id,
                "buyer_part": partner_id,
                "gtin": st.from_regex(r"[0-9]{14}", fullmatch=True),
                "ndc": st.from_regex(r"[0-9]{11}", fullmatch=True),
            },
        )
    )
    description = draw(st.none() | trade_text)
    if not ids and description is None:  # text alone is enough
        description = draw(trade_text)
    return PartnerItem(**ids, description=description)


parties = st.lists(
    st.builds(Party, role=st.sampled_from(PartyRole), id=partner_id, name=st.none() | trade_text),
    max_size=6,
    unique_by=lambda p: p.role,
).map(tuple)


def _unique_lines(strategy: st.SearchStrategy, max_size: int = 4) -> st.SearchStrategy[tuple]:
    return st.lists(
        strategy, min_size=1, max_size=max_size, unique_by=lambda line: line.line_number
    ).map(tuple)


orders = st.builds(
    OrderDocument,
    order_number=partner_id,
    order_date=dates,
    currency=currency,
    parties=parties,
    lines=_unique_lines(
        st.builds(
            OrderLine,
            line_number=line_number,
            item=items(),
            quantity=positive,
            unit=unit,
            unit_price=non_negative,
            requested_delivery=st.none() | dates,
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
        line_number=draw(line_number),
        item=draw(items()),
        status=status,
        quantity=Decimal(0) if status is LineStatus.REJECTED else draw(non_negative),
        unit=draw(unit),
        unit_price=price,
        ship_date=draw(st.none() | dates),
        substitute=draw(items()) if status is LineStatus.SUBSTITUTED else None,
    )


acknowledgements = st.builds(
    AcknowledgementDocument,
    acknowledgement_id=partner_id,
    order_number=partner_id,
    acknowledged_on=dates,
    status=st.sampled_from(AckStatus),
    currency=currency,
    lines=st.lists(ack_lines(), max_size=4, unique_by=lambda line: line.line_number).map(tuple),
)

ship_lines = st.builds(
    ShipLine,
    line_number=line_number,
    item=items(),
    quantity=positive,
    unit=unit,
    lot=st.none() | partner_id,
    expiry=st.none() | dates,
    serials=st.lists(partner_id, max_size=3).map(tuple),
)


@st.composite
def ship_notices(draw: st.DrawFn) -> ShipNoticeDocument:
    numbers = draw(st.lists(partner_id, min_size=1, max_size=3, unique=True))
    ssccs = iter(
        draw(
            st.lists(
                st.integers(0, 10**18 - 1).map("{:018d}".format),
                min_size=9,
                max_size=9,
                unique=True,
            )
        )
    )
    shipped = []
    for number in numbers:
        count = draw(st.integers(min_value=1, max_value=3))
        identified = count > 1 or draw(st.booleans())
        packs = tuple(
            Pack(
                sscc=next(ssccs) if identified else None,
                lines=tuple(draw(st.lists(ship_lines, min_size=1, max_size=3))),
            )
            for _ in range(count)
        )
        shipped.append(ShippedOrder(order_number=number, packs=packs))
    return ShipNoticeDocument(
        shipment_id=draw(partner_id),
        shipped_on=draw(dates),
        expected_delivery=draw(st.none() | dates),
        carrier=draw(st.none() | partner_id),
        tracking_number=draw(st.none() | partner_id),
        parties=draw(parties),
        orders=tuple(shipped),
    )


invoices = st.builds(
    InvoiceDocument,
    invoice_number=partner_id,
    invoice_date=dates,
    purpose=st.sampled_from(InvoicePurpose),
    currency=currency,
    parties=parties,
    lines=_unique_lines(
        st.builds(
            InvoiceLine,
            line_number=line_number,
            item=items(),
            quantity=positive,
            unit=unit,
            unit_price=non_negative,
            order_number=st.none() | st.sampled_from(["PO-1", "PO-2"]) | partner_id,
            order_line=st.none() | line_number,
        ),
        max_size=6,
    ),
    tax=signed,
    total=signed,
)

envelopes = st.builds(
    CxmlEnvelope,
    payload_id=partner_id,
    timestamp=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30))]
        ),
    ).map(lambda t: t.replace(microsecond=0)),
    from_domain=partner_id,
    from_identity=partner_id,
    to_domain=partner_id,
    to_identity=partner_id,
    sender_domain=partner_id,
    sender_identity=partner_id,
    shared_secret=st.none() | partner_id,
    user_agent=trade_text,
    deployment_mode=st.sampled_from(["production", "test"]),
)


def _roundtrip(doc: object, envelope: CxmlEnvelope) -> None:
    data = render(doc, envelope=envelope)  # type: ignore[arg-type]
    message = parse(data)
    assert message.document == doc
    assert type(message.document) is type(doc)
    assert message.envelope == CxmlEnvelope(
        **{
            **{f: getattr(envelope, f) for f in envelope.__dataclass_fields__},
            "version": CXML_VERSION,
        }
    )


@SETTINGS
@given(orders, envelopes)
def test_order_roundtrip(doc: OrderDocument, envelope: CxmlEnvelope) -> None:
    _roundtrip(doc, envelope)


@SETTINGS
@given(acknowledgements, envelopes)
def test_acknowledgement_roundtrip(doc: AcknowledgementDocument, envelope: CxmlEnvelope) -> None:
    _roundtrip(doc, envelope)


@settings(SETTINGS, max_examples=100)  # the largest documents: kept under ~10 s
@given(ship_notices(), envelopes)
def test_ship_notice_roundtrip(doc: ShipNoticeDocument, envelope: CxmlEnvelope) -> None:
    _roundtrip(doc, envelope)


@SETTINGS
@given(invoices, envelopes)
def test_invoice_roundtrip(doc: InvoiceDocument, envelope: CxmlEnvelope) -> None:
    _roundtrip(doc, envelope)
