"""cXML codec: rendering (DOCTYPE, escaping, envelope), Response documents, credentials, and
the mapping of request shapes partners send that MedBridge never renders itself."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from lxml import etree

from medbridge.canonical.trade import (
    AcknowledgementDocument,
    AckStatus,
    InvoiceDocument,
    InvoicePurpose,
    LineStatus,
    OrderDocument,
    OrderLine,
    PartnerItem,
    ShipNoticeDocument,
)
from medbridge.connectors.cxml import (
    NAME,
    CxmlEnvelope,
    CxmlError,
    authenticate,
    credentials_match,
    parse,
    parse_response,
    render,
    render_error,
    render_response,
)
from medbridge.connectors.cxml.errors import InvalidDate, InvalidValue, RenderError, Unauthorized
from paths import SAMPLES

D = Decimal
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ENVELOPE = CxmlEnvelope(
    payload_id="1767323045.1@medbridge",
    timestamp=NOW,
    from_domain="NetworkId",
    from_identity="AN-HOSPITAL",
    to_domain="DUNS",
    to_identity="123456789",
    sender_domain="NetworkId",
    sender_identity="AN-HOSPITAL",
    shared_secret="s3cr&t<",
    user_agent="MedBridge",
)
ORDER = OrderDocument(
    order_number="PO-1",
    order_date=date(2026, 1, 2),
    lines=(
        OrderLine(
            line_number=1,
            item=PartnerItem(
                supplier_part="A&B <1>", gtin="00312345678906", description='Gauze "4x4" \u00e9'
            ),
            quantity=D("2.5"),
            unit="BX",
            unit_price=D("10.1234"),
        ),
    ),
)


def test_name() -> None:
    assert NAME == "cxml"


def test_render_order_is_cxml_with_doctype_and_escaped_text() -> None:
    data = render(ORDER, envelope=ENVELOPE)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE cXML SYSTEM")
    assert b'"http://xml.cxml.org/schemas/cXML/1.2.060/cXML.dtd"' in data
    assert b"A&amp;B &lt;1&gt;" in data
    assert b"<SharedSecret>s3cr&amp;t&lt;</SharedSecret>" in data
    root = etree.fromstring(data)
    assert root.get("payloadID") == "1767323045.1@medbridge"
    assert root.get("timestamp") == "2026-01-02T03:04:05+00:00"
    assert root.findtext("Request/OrderRequest/ItemOut/ItemDetail/Extrinsic[@name='GTIN']") == (
        "00312345678906"
    )
    assert root.findtext("Request/OrderRequest/OrderRequestHeader/Total/Money") == "25.30850"
    message = parse(data)
    assert message.document == ORDER
    assert credentials_match(message, "networkid", "AN-HOSPITAL", "s3cr&t<")


def test_render_refuses_text_xml_cannot_carry() -> None:
    doc = ORDER.model_copy(update={"order_number": "PO-\ufffe"})
    with pytest.raises(RenderError):
        render(doc, envelope=ENVELOPE)


def test_render_needs_an_aware_timestamp() -> None:
    with pytest.raises(ValueError, match="time zone"):
        replace(ENVELOPE, timestamp=datetime(2026, 1, 1))


def test_authenticate() -> None:
    message = parse(render(ORDER, envelope=ENVELOPE))
    authenticate(message, "NetworkId", "AN-HOSPITAL", "s3cr&t<")
    with pytest.raises(Unauthorized) as caught:
        authenticate(message, "NetworkId", "AN-HOSPITAL", "wrong")
    assert caught.value.status == 401
    assert not credentials_match(message, "NetworkId", "AN-OTHER", "s3cr&t<")
    assert not credentials_match(message, "NetworkId", "AN-HOSPITAL", "")


def test_response_roundtrip() -> None:
    data = render_response(200, payload_id="r-1", timestamp=NOW)
    assert b'<Status code="200" text="OK"' in data
    response = parse_response(data)
    assert (response.payload_id, response.status_code, response.status_text, response.ok) == (
        "r-1",
        200,
        "OK",
        True,
    )


def test_error_response_names_the_field_at_fault() -> None:
    bad = (
        SAMPLES / "cxml" / "InvoiceDetailRequest-officeluv-invoice_taxes_at_line_multiple_taxes.xml"
    )
    with pytest.raises(CxmlError) as caught:
        parse(bad.read_bytes())
    data = render_error(caught.value, payload_id="r-2", timestamp=NOW)
    response = parse_response(data)
    assert (response.status_code, response.status_text, response.ok) == (400, "Bad Request", False)
    assert response.message.startswith(
        "/cXML/Request/InvoiceDetailRequest/InvoiceDetailRequestHeader/@invoiceDate:"
    )
    assert "'invoice_date'" in response.message


def test_parse_response_from_a_partner() -> None:
    data = b"""<?xml version="1.0"?>
<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd">
<cXML payloadID="9949494@supplier.com" timestamp="2008-01-07T09:14:51-08:00">
  <Response><Status code="406" text="Not Acceptable">Line 2: unknown part</Status></Response>
</cXML>"""
    response = parse_response(data)
    assert (response.status_code, response.message, response.ok) == (
        406,
        "Line 2: unknown part",
        False,
    )


# --- shapes partners send -----------------------------------------------------------------------

CONFIRMATION = """<?xml version="1.0"?>
<cXML payloadID="c1@sup" timestamp="2024-03-01T10:00:00-05:00"><Header>
<From><Credential domain="DUNS"><Identity>sup</Identity></Credential></From>
<To><Credential domain="DUNS"><Identity>hosp</Identity></Credential></To>
<Sender><Credential domain="DUNS"><Identity>sup</Identity><SharedSecret>x</SharedSecret>
</Credential><UserAgent>ua</UserAgent></Sender></Header>
<Request><ConfirmationRequest>
<ConfirmationHeader confirmID="CF-9" type="{header}" noticeDate="2024-03-01T10:00:00-05:00"/>
<OrderReference orderID="PO-77"><DocumentReference payloadID="x"/></OrderReference>
{items}
</ConfirmationRequest></Request></cXML>"""


def _item(n: int, ordered: str, kind: str, quantity: str, inner: str = "") -> str:
    return (
        f'<ConfirmationItem quantity="{ordered}" lineNumber="{n}"><UnitOfMeasure>EA</UnitOfMeasure>'
        f'<ConfirmationStatus quantity="{quantity}" type="{kind}" shipmentDate="2024-03-09">'
        f"<UnitOfMeasure>EA</UnitOfMeasure>{inner}"
        f'<Extrinsic name="SupplierPartID">P{n}</Extrinsic></ConfirmationStatus></ConfirmationItem>'
    )


def test_confirmation_detail_lines_without_our_extrinsics() -> None:
    price = '<UnitPrice><Money currency="USD">9.50</Money></UnitPrice>'
    sub = (
        '<ItemIn quantity="5"><ItemID><SupplierPartID>ALT-1</SupplierPartID></ItemID>'
        '<ItemDetail><UnitPrice><Money currency="USD">1</Money></UnitPrice>'
        '<Description xml:lang="en">Alt</Description><UnitOfMeasure>EA</UnitOfMeasure>'
        "</ItemDetail></ItemIn>"
    )
    items = "".join(
        [
            _item(1, "10", "accept", "10"),
            _item(2, "10", "detail", "6"),
            _item(3, "10", "detail", "10", price),
            _item(4, "5", "detail", "5", sub),
            _item(5, "4", "reject", "4"),
            _item(6, "3", "backordered", "3"),
        ]
    )
    data = CONFIRMATION.format(header="detail", items=items).encode()
    doc = parse(data).document
    assert isinstance(doc, AcknowledgementDocument)
    assert (doc.acknowledgement_id, doc.order_number, doc.acknowledged_on) == (
        "CF-9",
        "PO-77",
        date(2024, 3, 1),
    )
    assert doc.status is AckStatus.ACCEPTED_WITH_CHANGES
    assert [(ln.status, ln.quantity) for ln in doc.lines] == [
        (LineStatus.ACCEPTED, D(10)),
        (LineStatus.QUANTITY_CHANGED, D(6)),
        (LineStatus.PRICE_CHANGED, D(10)),
        (LineStatus.SUBSTITUTED, D(5)),
        (LineStatus.REJECTED, D(0)),
        (LineStatus.BACKORDERED, D(3)),
    ]
    assert doc.lines[2].unit_price == D("9.50")
    assert doc.lines[3].substitute == PartnerItem(supplier_part="ALT-1", description="Alt")
    assert doc.lines[5].ship_date == date(2024, 3, 9)


def test_confirmation_accept_without_lines_and_reject() -> None:
    for header, status in (("accept", AckStatus.ACCEPTED), ("reject", AckStatus.REJECTED)):
        doc = parse(CONFIRMATION.format(header=header, items="").encode()).document
        assert isinstance(doc, AcknowledgementDocument)
        assert (doc.status, doc.lines, doc.currency) == (status, (), "USD")


def test_confirmation_split_line_is_refused() -> None:
    split = _item(1, "10", "accept", "6").replace(
        "</ConfirmationItem>",
        '<ConfirmationStatus quantity="4" type="backordered"><UnitOfMeasure>EA</UnitOfMeasure>'
        "</ConfirmationStatus></ConfirmationItem>",
    )
    with pytest.raises(InvalidValue) as caught:
        parse(CONFIRMATION.format(header="detail", items=split).encode())
    assert caught.value.path.endswith("/ConfirmationItem/ConfirmationStatus[2]")


SHIP_ITEMS = b"""<ShipNoticeItem quantity="10" lineNumber="1">
  <ItemID><SupplierPartID>S-1</SupplierPartID><BuyerPartID>B-1</BuyerPartID></ItemID>
  <ShipNoticeItemDetail><Description xml:lang="en">Heparin</Description>
    <Extrinsic name="NDC">0409-2720-01</Extrinsic><Extrinsic name="GTIN">312345678906</Extrinsic>
  </ShipNoticeItemDetail>
  <UnitOfMeasure>EA</UnitOfMeasure>
  <Packaging><ShippingContainerSerialCode>003123456789012345</ShippingContainerSerialCode></Packaging>
  <Batch expirationDate="2027-06-30"><SupplierBatchID>LOT-A</SupplierBatchID></Batch>
  <AssetInfo serialNumber="SN1"/><AssetInfo serialNumber="SN2"/>
</ShipNoticeItem>
<ShipNoticeItem quantity="5" lineNumber="2">
  <ItemID><SupplierPartID>S-2</SupplierPartID></ItemID><UnitOfMeasure>BX</UnitOfMeasure>
  <Packaging><ShippingContainerSerialCode>003123456789012352</ShippingContainerSerialCode></Packaging>
</ShipNoticeItem>
</ShipNoticePortion>"""


def test_ship_notice_sample_with_items() -> None:
    data = (SAMPLES / "cxml" / "ShipNoticeRequest-cxmlphp-sample-1.2.050.xml").read_bytes()
    data = data.replace(b"</ShipNoticePortion>", SHIP_ITEMS)
    message = parse(data)
    doc = message.document
    assert isinstance(doc, ShipNoticeDocument)
    assert (doc.shipment_id, doc.shipped_on, doc.expected_delivery) == (
        "S2-123",
        date(2000, 10, 14),
        date(2000, 10, 18),
    )
    assert (doc.carrier, doc.tracking_number) == ("FDE", "8202 8261 1194")
    (order,) = doc.orders
    assert order.order_number == "DO1234"
    assert [p.sscc for p in order.packs] == ["003123456789012345", "003123456789012352"]
    first = order.packs[0].lines[0]
    assert (first.lot, first.expiry, first.serials) == ("LOT-A", date(2027, 6, 30), ("SN1", "SN2"))
    assert (first.item.ndc, first.item.gtin, first.item.buyer_part) == (
        "00409272001",
        "00312345678906",
        "B-1",
    )
    assert order.packs[1].lines[0].unit == "BX"


def test_credit_memo_quantities_are_negative_on_the_wire() -> None:
    data = (
        SAMPLES / "cxml" / "InvoiceDetailRequest-officeluv-invoice_taxes_at_total.xml"
    ).read_bytes()
    data = (
        data.replace(b'purpose="standard"', b'purpose="creditMemo"')
        .replace(b'quantity="1"', b'quantity="-1"')
        .replace(
            b'<InvoiceDetailItemReference lineNumber="1">',
            b'<InvoiceDetailItemReference lineNumber="1">'
            b"<ItemID><SupplierPartID>W</SupplierPartID></ItemID>",
        )
    )
    doc = parse(data).document
    assert isinstance(doc, InvoiceDocument)
    assert doc.purpose is InvoicePurpose.CREDIT_MEMO
    assert doc.lines[0].quantity == D(1)
    rendered = render(doc, envelope=ENVELOPE)
    assert b'quantity="-1"' in rendered
    assert parse(rendered).document == doc


def test_dates_take_the_calendar_date_as_written() -> None:
    data = (SAMPLES / "cxml" / "OrderRequest-cxmlphp-sample-1.2.050.xml").read_bytes()
    late = data.replace(
        b'orderDate="2000-10-12T18:41:29-08:00"', b'orderDate="2000-10-12T23:59:59-08:00"'
    )
    assert parse(late).document.order_date == date(2000, 10, 12)  # type: ignore[union-attr]
    plain = data.replace(b'orderDate="2000-10-12T18:41:29-08:00"', b'orderDate="2000-10-12"')
    assert parse(plain).document.order_date == date(2000, 10, 12)  # type: ignore[union-attr]
    with pytest.raises(InvalidDate) as caught:
        parse(data.replace(b'orderDate="2000-10-12T18:41:29-08:00"', b'orderDate="12/10/2000"'))
    assert caught.value.path == "/cXML/Request/OrderRequest/OrderRequestHeader/@orderDate"


def test_error_reasons_quote_partner_values_briefly_and_responses_stay_xml() -> None:
    data = (SAMPLES / "cxml" / "OrderRequest-cxmlphp-sample-1.2.050.xml").read_bytes()
    huge = b"x" * 10_000
    with pytest.raises(InvalidDate) as caught:
        parse(data.replace(b'orderDate="2000-10-12T18:41:29-08:00"', b'orderDate="' + huge + b'"'))
    assert len(caught.value.reason) < 120
    response = render_response(400, payload_id="r", timestamp=NOW, message="bad \ufffe \x01 é")
    assert parse_response(response).message == "bad \ufffd \ufffd é"
