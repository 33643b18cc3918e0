"""Every shared cXML sample either maps to its canonical document (concrete values checked) or
is refused with a typed error naming the path at fault and the reason."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from medbridge.canonical.trade import (
    AcknowledgementDocument,
    AckStatus,
    InvoiceDocument,
    LineStatus,
    OrderDocument,
    Party,
    PartyRole,
)
from medbridge.connectors.cxml import CxmlError, RequestKind, credentials_match, parse
from medbridge.connectors.cxml.codec import parse_envelope
from medbridge.connectors.cxml.errors import InvalidDate, MissingData
from paths import SAMPLES

CXML = SAMPLES / "cxml"
D = Decimal


def sample(name: str) -> bytes:
    return (CXML / name).read_bytes()


PARSED = {
    "OrderRequest-cxmlphp-builder-fixture.xml": RequestKind.ORDER,
    "OrderRequest-cxmlphp-handling-fixture-1.2.060.xml": RequestKind.ORDER,
    "OrderRequest-cxmlphp-sample-1.2.050.xml": RequestKind.ORDER,
    "OrderRequest-officeluv-purchase_order_request_200.xml": RequestKind.ORDER,
    # Coupa invoices name their items by description only (and their order line)
    "InvoiceDetailRequest-officeluv-invoice_taxes_at_line.xml": RequestKind.INVOICE,
    "InvoiceDetailRequest-officeluv-invoice_taxes_at_total.xml": RequestKind.INVOICE,
    "InvoiceDetailRequest-officeluv-invoice_backed_by_multiple_pos.xml": RequestKind.INVOICE,
    "InvoiceDetailRequest-officeluv-invoice_backed_and_unbacked_by_pos.xml": RequestKind.INVOICE,
}
REFUSED = {
    # name: (error type, status, path, words of the reason)
    "ConfirmationRequest-officeluv-request_doc-officedepot.xml": (
        MissingData,
        400,
        "/cXML/Request/ConfirmationRequest/ConfirmationHeader/@confirmID",
        "confirmID is empty",
    ),
    "InvoiceDetailRequest-officeluv-invoice_taxes_at_line_multiple_taxes.xml": (
        InvalidDate,
        400,
        "/cXML/Request/InvoiceDetailRequest/InvoiceDetailRequestHeader/@invoiceDate",
        "'invoice_date' is not an ISO 8601 date",
    ),
    "ShipNoticeRequest-cxmlphp-sample-1.2.050.xml": (
        MissingData,
        400,
        "/cXML/Request/ShipNoticeRequest/ShipNoticePortion/ShipNoticeItem",
        "no ShipNoticeItem",
    ),
}


def test_every_sample_is_covered() -> None:
    names = {p.name for p in CXML.glob("*.xml")}
    assert len(names) == 11
    assert names == set(PARSED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(PARSED))
def test_parses(name: str) -> None:
    assert parse(sample(name)).kind is PARSED[name]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_path_and_reason(name: str) -> None:
    kind, status, path, reason = REFUSED[name]
    with pytest.raises(CxmlError) as caught:
        parse(sample(name))
    assert type(caught.value) is kind
    assert caught.value.status == status
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert path in str(caught.value)


def test_order_cxmlphp_sample() -> None:
    message = parse(sample("OrderRequest-cxmlphp-sample-1.2.050.xml"))
    env = message.envelope
    assert (env.payload_id, env.deployment_mode, env.version) == (
        "1625586002.193314.7293@dev",
        "test",
        "1.2.050",
    )
    assert (env.from_domain, env.from_identity) == ("NetworkId", "inbound@prominate-platform.com")
    assert (env.to_domain, env.to_identity) == ("NetworkId", "supplier@supplier.com")
    assert env.shared_secret == "coyote"
    assert credentials_match(message, "networkid", "inbound@prominate-platform.com", "coyote")
    assert not credentials_match(message, "NetworkId", "inbound@prominate-platform.com", "coyot")
    assert not credentials_match(message, "DUNS", "inbound@prominate-platform.com", "coyote")
    doc = message.document
    assert isinstance(doc, OrderDocument)
    assert (doc.order_number, doc.order_date, doc.currency) == ("DO1234", date(2000, 10, 12), "EUR")
    assert doc.parties == ()  # ShipTo/BillTo without addressID: no canonical party
    assert [(ln.line_number, ln.quantity, ln.unit, ln.unit_price) for ln in doc.lines] == [
        (1, D(10), "EA", D("2.10")),
        (2, D(20), "EA", D("3.20")),
    ]
    assert [ln.item.supplier_part for ln in doc.lines] == ["1233244", "1233245"]
    assert doc.lines[0].item.description == "hello from item 1"
    assert doc.lines[1].requested_delivery == date(2020, 2, 28)


def test_order_officeluv_parties_and_long_description() -> None:
    message = parse(sample("OrderRequest-officeluv-purchase_order_request_200.xml"))
    doc = message.document
    assert isinstance(doc, OrderDocument)
    assert (doc.order_number, doc.order_date, doc.currency) == ("6112", date(2008, 1, 7), "USD")
    assert doc.parties == (
        Party(role=PartyRole.SHIP_TO, id="3119", name="jmadden"),
        Party(role=PartyRole.BILL_TO, id="142", name="SOB1"),
    )
    assert [(ln.quantity, ln.unit_price) for ln in doc.lines] == [
        (D(1), D("1505.0")),
        (D(2), D("1505.0")),
    ]
    item = doc.lines[0].item
    assert (item.supplier_part, item.buyer_part) == ("223-4511", None)
    assert item.description is not None
    assert len(item.description) <= 80
    assert item.description.startswith("OptiPlex 755 Energy Smart Minitower")
    # Sender has no SharedSecret in this Coupa sample either
    assert message.envelope.shared_secret is None
    assert message.envelope.version == "1.2.014"


def test_order_builder_fixture_has_no_shared_secret() -> None:
    message = parse(sample("OrderRequest-cxmlphp-builder-fixture.xml"))
    env = message.envelope
    assert (env.sender_domain, env.sender_identity) == (
        "NetworkId",
        "inbound@prominate-platform.com",
    )
    assert env.shared_secret is None
    assert not credentials_match(message, "NetworkId", "inbound@prominate-platform.com", "")
    assert not credentials_match(message, "NetworkId", "inbound@prominate-platform.com", "x")
    doc = message.document
    assert isinstance(doc, OrderDocument)
    assert [(ln.item.supplier_part, ln.item.buyer_part, ln.quantity) for ln in doc.lines] == [
        ("5555", "KD5555", D(3)),
        ("666", "KD666", D(5)),
    ]
    assert doc.lines[0].unit_price == D("763.20")


def test_order_handling_fixture_header_delivery_date() -> None:
    message = parse(sample("OrderRequest-cxmlphp-handling-fixture-1.2.060.xml"))
    assert message.envelope.shared_secret == "Secret!123"
    assert message.payload_id == "1737963337.319.1846511.7249@eu-hub"
    doc = message.document
    assert isinstance(doc, OrderDocument)
    assert doc.order_number == "acme-1-1"
    (line,) = doc.lines
    assert line.requested_delivery == date(2025, 1, 28)  # the header's, as the line has none
    assert (line.unit_price, line.unit, line.item.supplier_part) == (
        D("10.00"),
        "EA",
        "QA-ACME-AUTOTEST",
    )


@pytest.mark.parametrize(
    ("name", "secret", "identity"),
    [
        ("ShipNoticeRequest-cxmlphp-sample-1.2.050.xml", "abracadabra", "AN00000123"),
        ("ConfirmationRequest-officeluv-request_doc-officedepot.xml", "welcome", "AN01000000147"),
        ("InvoiceDetailRequest-officeluv-invoice_taxes_at_line.xml", "secret", "supplierid"),
    ],
)
def test_refused_samples_still_authenticate(name: str, secret: str, identity: str) -> None:
    env = parse_envelope(sample(name))
    assert (env.sender_identity, env.shared_secret) == (identity, secret)
    assert credentials_match(env, env.sender_domain.upper(), identity, secret)


def test_ship_notice_user_agent_is_non_ascii() -> None:
    env = parse_envelope(sample("ShipNoticeRequest-cxmlphp-sample-1.2.050.xml"))
    assert env.user_agent == "Supplier\u2019s Super Order Processor"


# --- the refused samples' other content, once the one fault is fixed ---------------------------


def test_confirmation_officedepot_with_a_confirm_id() -> None:
    data = sample("ConfirmationRequest-officeluv-request_doc-officedepot.xml")
    doc = parse(data.replace(b'confirmID=""', b'confirmID="C-1"')).document
    assert isinstance(doc, AcknowledgementDocument)
    assert (doc.acknowledgement_id, doc.order_number, doc.acknowledged_on, doc.currency) == (
        "C-1",
        "400-2591453-0",
        date(2012, 9, 4),
        "USD",
    )
    assert doc.status is AckStatus.ACCEPTED  # "detail", every line accepted as ordered
    lines = doc.lines
    assert [(ln.line_number, ln.quantity, ln.unit, ln.unit_price, ln.status) for ln in lines] == [
        (1, D(20), "RM", D("4.44"), LineStatus.ACCEPTED),
        (2, D(12), "BX", D("1.52"), LineStatus.ACCEPTED),
        (3, D(2), "EA", D("4.14"), LineStatus.ACCEPTED),
    ]
    assert [ln.item.supplier_part for ln in lines] == ["751441", "429175", "908194"]
    assert lines[0].ship_date == date(2012, 9, 5)


def test_a_description_only_item_is_kept_as_text() -> None:
    data = sample("InvoiceDetailRequest-officeluv-invoice_taxes_at_line.xml")
    doc = parse(data).document
    assert isinstance(doc, InvoiceDocument)
    item = doc.lines[0].item
    assert item.description == "NEW 1 NINTENDO WII GAME CONSOLE + WII FIT BUNDLE +GAMES"
    assert (item.supplier_part, item.buyer_part, item.gtin, item.ndc) == (None,) * 4


def test_an_item_with_neither_id_nor_text_is_refused() -> None:
    data = sample("InvoiceDetailRequest-officeluv-invoice_taxes_at_line.xml").replace(
        b'<Description xml:lang="en">NEW 1 NINTENDO WII GAME CONSOLE + WII FIT BUNDLE +GAMES'
        b"</Description>",
        b"",
    )
    with pytest.raises(MissingData) as caught:
        parse(data)
    assert caught.value.path.endswith("/InvoiceDetailItemReference/ItemID")
    assert "nor a Description" in caught.value.reason


def test_invoice_backed_by_multiple_pos() -> None:
    data = sample("InvoiceDetailRequest-officeluv-invoice_backed_by_multiple_pos.xml")
    doc = parse(data).document
    assert isinstance(doc, InvoiceDocument)
    assert (doc.invoice_number, doc.invoice_date, doc.currency) == (
        "INV00001",
        date(2010, 12, 16),
        "USD",
    )
    assert [(ln.line_number, ln.order_number, ln.order_line) for ln in doc.lines] == [
        (1, "2252", 1),
        (2, "2253", 1),
    ]
    assert doc.order_numbers == ("2252", "2253")
    assert [(ln.quantity, ln.unit_price) for ln in doc.lines] == [(D(2), D(100)), (D(2), D(10))]
    assert doc.lines[1].item.description == "Test Item"
    assert (doc.tax, doc.total) == (D(0), D(0))  # NetAmount 0, as the supplier states it


def test_invoice_backed_and_unbacked() -> None:
    data = sample("InvoiceDetailRequest-officeluv-invoice_backed_and_unbacked_by_pos.xml")
    doc = parse(data).document
    assert isinstance(doc, InvoiceDocument)
    assert doc.invoice_number == "INVOICENUMBER"
    assert [(ln.order_number, ln.order_line) for ln in doc.lines] == [("E14994", 1), (None, None)]
    assert doc.order_numbers == ("E14994",)


@pytest.mark.parametrize(
    ("name", "total"),
    [("invoice_taxes_at_line", D(408)), ("invoice_taxes_at_total", D(408))],
)
def test_invoice_tax_and_total(name: str, total: Decimal) -> None:
    data = sample(f"InvoiceDetailRequest-officeluv-{name}.xml")
    doc = parse(data).document
    assert isinstance(doc, InvoiceDocument)
    # NetAmount is empty: total = subtotal 365 + tax 8 + special handling 5 + shipping 30
    assert (doc.tax, doc.total) == (D(8), total)
    assert doc.lines[0].unit_price == D(365)
    assert doc.lines[0].order_number == "123"


def test_multiple_taxes_placeholders_beyond_the_date() -> None:
    data = sample("InvoiceDetailRequest-officeluv-invoice_taxes_at_line_multiple_taxes.xml")
    with pytest.raises(CxmlError) as caught:
        parse(data.replace(b'invoiceDate="invoice_date"', b'invoiceDate="2018-05-04"'))
    assert caught.value.path.endswith("/InvoiceDetailSummary/SubtotalAmount/Money/@currency")
    assert "currency_code" in caught.value.reason
