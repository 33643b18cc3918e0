"""X12 samples (../shared/samples/x12, SOURCES.md "## X12"): every file either maps to the
canonical documents asserted here or is refused with a typed error naming where and why; every
inbound group with a usable envelope gets a 997 that our own codec reads back."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from pathlib import Path

import pytest

from medbridge.canonical.trade import (
    AcknowledgementDocument,
    AckStatus,
    CatalogDocument,
    InvoiceDocument,
    InvoicePurpose,
    LineStatus,
    OrderDocument,
    PartyRole,
    ShipNoticeDocument,
)
from medbridge.connectors.x12 import ParsedInterchange, functional_ack, parse_interchange
from medbridge.connectors.x12.envelope import parse_envelope
from medbridge.connectors.x12.errors import (
    BadElement,
    BadNumber,
    InvalidIsaVersion,
    IsaLength,
    UnsupportedVersion,
    X12Error,
)
from paths import SAMPLES

X12 = SAMPLES / "x12"
FILES = sorted(p.name for p in X12.glob("*.edi"))
ACK_CONTROLS = {
    "interchange_control": 900,
    "group_control": 90,
    "set_control": 9,
    "sent_on": date(2026, 1, 2),
    "sent_at": time(8, 5),
}

# file -> (error class, ISA element, reason fragment): refused as a whole interchange
REFUSED: dict[str, tuple[type[X12Error], int, str]] = {
    "850-oopfactory-adobe-clp-isa00300.edi": (IsaLength, 6, "14 characters wide, expected 15"),
    "850-oopfactory-adobe-shrinkwrapped.edi": (IsaLength, 6, "14 characters wide, expected 15"),
    "810-oopfactory-adobe.edi": (InvalidIsaVersion, 12, "'00040' is not an interchange"),
    "810-oopfactory-walmart.edi": (InvalidIsaVersion, 12, "'00040' is not an interchange"),
    "832-oopfactory-hibcc-medsurg-ex1.edi": (InvalidIsaVersion, 12, "'00040'"),
    "832-oopfactory-hibcc-medsurg-ex2-contract-pricing.edi": (InvalidIsaVersion, 12, "'00040'"),
}


def read(name: str) -> bytes:
    return (X12 / name).read_bytes()


def parse(name: str) -> ParsedInterchange:
    return parse_interchange(read(name))


def repaired(name: str) -> bytes:
    """The sample with only its invalid ISA12 ``00040`` replaced by ``00401``."""
    data = read(name)
    for sep in (b"*", b"^"):
        data = data.replace(sep + b"00040" + sep, sep + b"00401" + sep, 1)
    return data


def only(parsed: ParsedInterchange) -> object:
    (document,) = parsed.documents
    return document


def test_every_sample_is_covered() -> None:
    assert len(FILES) == 21
    for name in FILES:
        assert name in REFUSED or name in MAPPED or name in REJECTED_SETS or name in GROUP_REFUSED


# --- refused interchanges -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_interchange_names_the_isa_element(name: str) -> None:
    cls, element, fragment = REFUSED[name]
    with pytest.raises(cls) as caught:
        parse(name)
    error = caught.value
    assert error.segment_id == "ISA"
    assert error.segment_position == 1
    assert error.element_position == element
    assert error.element_name == f"ISA{element:02d}"
    assert fragment in error.reason
    assert f"element ISA{element:02d}" in str(error)
    assert error.code in ("x12.isa_length", "x12.isa_version")


def test_short_isa_is_not_guessed_even_though_the_rest_would_read() -> None:
    with pytest.raises(IsaLength) as caught:
        parse_envelope(read("850-oopfactory-adobe-clp-isa00300.edi"))
    assert caught.value.value == "00000000      "


def test_short_isa_bodies_read_once_isa06_is_padded() -> None:
    """Only the refusal is about the ISA: padded to 15, the bodies map (the shrink-wrapped one
    also ends every segment with a blank before CRLF, which is tolerated)."""
    shrink = read("850-oopfactory-adobe-shrinkwrapped.edi").replace(
        b"*PARTNER       *", b"*PARTNER        *", 1
    )
    parsed = parse_interchange(shrink)
    assert parsed.interchange.delimiters.newline_terminated
    order = only(parsed)
    assert isinstance(order, OrderDocument)
    assert (order.order_number, order.order_date) == ("MH80312", date(2009, 4, 21))
    (line,) = order.lines
    assert (line.quantity, line.unit_price, line.item.buyer_part) == (
        11,
        Decimal("1499.95"),
        "12345678",
    )
    clp = read("850-oopfactory-adobe-clp-isa00300.edi").replace(
        b"~00000000      ~", b"~00000000       ~", 1
    )
    parsed = parse_interchange(clp)
    assert parsed.interchange.version == "00300"  # GS08 004010 governs the body
    order = only(parsed)
    assert isinstance(order, OrderDocument)
    assert order.order_number == "ANSI-X12-CLP"
    assert [ln.unit_price for ln in order.lines] == [Decimal("157.50"), Decimal("160")]


# --- mapped samples -------------------------------------------------------------------------


def check_850_pgwglass(parsed: ParsedInterchange) -> None:
    assert parsed.interchange.delimiters.segment == "|"
    assert parsed.interchange.delimiters.component == "~"
    order = only(parsed)
    assert isinstance(order, OrderDocument)
    assert order.order_number == "S41000439"
    assert order.order_date == date(2010, 8, 10)
    assert [line.line_number for line in order.lines] == [1, 2, 3, 4]
    assert [line.quantity for line in order.lines] == [5, 12, 2, 1]
    assert [line.unit_price for line in order.lines] == [
        Decimal("5.09"),
        Decimal("63.11"),
        Decimal("8.02"),
        Decimal("85.25"),
    ]
    assert order.lines[0].item.buyer_part == "0459001004"
    assert order.lines[0].item.description == "FUSE, BUSSMAN FNA-4/10"
    assert {line.requested_delivery for line in order.lines} == {date(2010, 8, 20)}
    assert [(p.role, p.id) for p in order.parties] == [(PartyRole.SHIP_TO, "W_341001")]


def check_850_tlp(parsed: ParsedInterchange) -> None:
    assert parsed.interchange.delimiters.element == "~"
    assert parsed.interchange.delimiters.newline_terminated
    order = only(parsed)
    assert isinstance(order, OrderDocument)
    assert order.order_number == "TLP-X12"
    assert order.order_date == date(2010, 6, 14)
    (line,) = order.lines
    assert (line.quantity, line.unit, line.unit_price) == (1, "EA", 665)
    assert line.item.buyer_part == "12345678"
    roles = {p.role: p for p in order.parties}
    assert roles[PartyRole.BUYER].name == "SOLD TO"
    assert roles[PartyRole.BILL_TO].id == "ID Number"


def check_850_sitestuff(parsed: ParsedInterchange) -> None:
    order = only(parsed)
    assert isinstance(order, OrderDocument)
    assert order.order_number == "6190"
    assert [(ln.line_number, ln.quantity, ln.unit, ln.unit_price) for ln in order.lines] == [
        (6917, 1, "PK", Decimal("10.98")),
        (6915, 1, "EA", Decimal("219")),
    ]
    assert [ln.item.supplier_part for ln in order.lines] == ["123456", "654321"]
    assert [ln.item.description for ln in order.lines] == ["DESCRIPTION 1", "DESCRIPTION 2"]


def check_855_simmons(parsed: ParsedInterchange) -> None:
    (group,) = parsed.groups
    assert [s.control_number for s in group.sets] == ["0001", "0002"]
    first, second = parsed.documents
    assert isinstance(first, AcknowledgementDocument)
    assert isinstance(second, AcknowledgementDocument)
    assert (first.order_number, first.acknowledgement_id) == ("7542", "83517234")
    assert first.acknowledged_on == date(2011, 9, 28)
    assert first.status is AckStatus.ACCEPTED
    assert [(ln.line_number, ln.quantity, ln.unit_price) for ln in first.lines] == [
        (100, 1, Decimal(7700)),
        (200, 1, Decimal(23500)),
    ]
    assert first.lines[0].item.buyer_part == "4620451B"
    assert first.lines[0].item.supplier_part == "64620451"
    assert {ln.status for ln in first.lines} == {LineStatus.ACCEPTED}
    assert (second.order_number, len(second.lines)) == ("99035", 1)


def check_855_adobe(parsed: ParsedInterchange) -> None:
    ack = only(parsed)
    assert isinstance(ack, AcknowledgementDocument)
    assert ack.order_number == "0132710645"
    assert ack.acknowledgement_id == "0132710645"  # no BAK08: the order number
    (line,) = ack.lines
    assert (line.line_number, line.quantity, line.unit_price) == (10, 1, 369)
    assert line.item.buyer_part == "T05249"
    assert line.item.description == "APRO,9.0,WIN,AOO,UE,1PK,N/A"


def check_856_edi1source(parsed: ParsedInterchange) -> None:
    asn = only(parsed)
    assert isinstance(asn, ShipNoticeDocument)
    assert asn.shipment_id == "829716"
    assert asn.shipped_on == date(2011, 12, 6)
    assert (asn.carrier, asn.tracking_number) == ("XXXX", "5787970539")
    (order,) = asn.orders
    assert order.order_number == "99999817"
    (pack,) = order.packs
    assert pack.sscc is None
    assert [(ln.line_number, ln.quantity, ln.unit) for ln in pack.lines] == [
        (1, 24, "EA"),
        (2, 6, "EA"),
    ]
    assert pack.lines[0].item.gtin == "00999999310145"  # UP 12 digits, zero-padded
    assert pack.lines[0].item.supplier_part == "87787D"
    assert pack.lines[1].item.description == "RED WIDGET"


def check_856_ex1(parsed: ParsedInterchange) -> None:
    assert parsed.interchange.delimiters.element == "~"
    assert parsed.interchange.delimiters.segment == "*"
    assert parsed.interchange.delimiters.component == "`"
    asn = only(parsed)
    assert isinstance(asn, ShipNoticeDocument)
    assert asn.shipment_id == "123456"
    assert asn.expected_delivery == date(2001, 4, 22)
    (order,) = asn.orders
    lines = order.packs[0].lines
    assert [(ln.line_number, ln.item.buyer_part, ln.quantity, ln.unit) for ln in lines] == [
        (1, "1234-123456", 16, "PC"),
        (2, "1234-654321", 23, "LB"),
        (4, "1234-223456", 16, "PC"),
    ]


def check_856_ellipsis(parsed: ParsedInterchange) -> None:
    assert parsed.interchange.delimiters.segment == "\u2026"
    asn = only(parsed)
    assert isinstance(asn, ShipNoticeDocument)
    assert (asn.shipment_id, asn.carrier, asn.tracking_number) == (
        "146940",
        "AVRT",
        "0123456789",
    )
    (order,) = asn.orders  # S/I with the PRF at item level
    assert order.order_number == "5500005194"
    lines = order.packs[0].lines
    assert [(ln.line_number, ln.quantity) for ln in lines] == [(30, 1596), (10, 1152), (20, 1440)]
    assert lines[0].item.buyer_part == "000 260 056 524"
    assert lines[0].item.supplier_part == "abc123"


def check_856_retail(parsed: ParsedInterchange) -> None:
    asn = only(parsed)
    assert isinstance(asn, ShipNoticeDocument)
    assert asn.shipment_id == "DELIVERYNUMBER"
    assert asn.expected_delivery == date(2011, 9, 13)
    (order,) = asn.orders  # HL*2**O: no parent ids, hierarchy by level
    assert order.order_number == "PO NUMBER"
    lines = order.packs[0].lines
    assert len(lines) == 7
    assert sum(ln.quantity for ln in lines) == 65
    assert (lines[0].item.buyer_part, lines[0].item.supplier_part) == ("100014544", "25555120")


def check_856_vics(parsed: ParsedInterchange) -> None:
    (group,) = parsed.groups
    assert group.group.version == "004010VICS"
    asn = only(parsed)
    assert isinstance(asn, ShipNoticeDocument)
    assert asn.shipment_id == "521649209219"
    assert asn.shipped_on == date(2012, 5, 10)
    assert asn.carrier == "FED2"
    (order,) = asn.orders
    assert order.order_number == "SO/VINCE1"
    (pack,) = order.packs
    assert pack.sscc == "007121610006156802"  # MAN*GM 00 + SSCC-18
    (line,) = pack.lines
    assert line.item.gtin == "00883932284904"
    assert (line.quantity, line.unit) == (1, "EA")
    assert line.item.description == "16X12MM SMALL WHEATON"


def check_810_tempurpedic(parsed: ParsedInterchange) -> None:
    invoice = only(parsed)
    assert isinstance(invoice, InvoiceDocument)
    assert (invoice.invoice_number, invoice.invoice_date) == ("3323399", date(2011, 10, 31))
    assert invoice.purpose is InvoicePurpose.INVOICE
    assert invoice.order_numbers == ("981903",)
    assert len(invoice.lines) == 7
    assert invoice.lines[0].item.supplier_part == "10190150"
    assert (invoice.lines[0].quantity, invoice.lines[0].unit_price) == (11, 1305)
    assert invoice.total == Decimal("56358.00")
    assert invoice.tax == 0


def check_810_multi(parsed: ParsedInterchange) -> None:
    assert parsed.interchange.version == "00403"
    first, second = parsed.documents
    assert isinstance(first, InvoiceDocument)
    assert isinstance(second, InvoiceDocument)
    assert (first.invoice_number, second.invoice_number) == ("465266", "465267")
    assert first.order_numbers == second.order_numbers == ("539893",)
    assert [ln.line_number for ln in first.lines] == [1, 2, 3, 4]  # IT101 empty: ordinal
    assert first.lines[0].item.gtin == "00001055503223"
    assert first.lines[0].item.description == "SSS CONVENIENT SIZE - 120ML"
    assert (first.lines[0].quantity, first.lines[0].unit) == (16, "CA")
    assert first.total == Decimal("8432.02")
    assert second.total == Decimal("1129.92")
    roles = {p.role: p.id for p in first.parties}
    assert roles[PartyRole.SUPPLIER] == "2055574240000"


def check_810_manualbilling(parsed: ParsedInterchange) -> None:
    invoice = only(parsed)
    assert isinstance(invoice, InvoiceDocument)
    assert (invoice.invoice_number, invoice.invoice_date) == ("3662", date(1998, 10, 14))
    [line] = invoice.lines
    # a service line: no product id, only its PID description
    assert line.item.description == "RMR Scheduling Coordinator - Estimated RMR"
    assert line.item.supplier_part is None
    assert line.unit_price == Decimal("2896035.3")
    assert invoice.total == Decimal("2896035.30")  # TDS 289603530: implied 2 decimals


MAPPED = {
    "850-oopfactory-pgwglass-4010.edi": check_850_pgwglass,
    "850-oopfactory-adobe-tlp-tilde-elemsep.edi": check_850_tlp,
    "850-oopfactory-sitestuff-p2p.edi": check_850_sitestuff,
    "855-oopfactory-simmons-multi-st.edi": check_855_simmons,
    "855-oopfactory-adobe.edi": check_855_adobe,
    "856-oopfactory-edi1source-004060.edi": check_856_edi1source,
    "856-oopfactory-ex1-tilde-elemsep.edi": check_856_ex1,
    "856-oopfactory-ex3-ellipsis-segterm.edi": check_856_ellipsis,
    "856-oopfactory-ex4-retail-sotpi.edi": check_856_retail,
    "856-oopfactory-vics-sopi.edi": check_856_vics,
    "810-oopfactory-tempurpedic.edi": check_810_tempurpedic,
    "810-oopfactory-multiinvoice-004030.edi": check_810_multi,
    "810-oopfactory-manualbilling.edi": check_810_manualbilling,
}


@pytest.mark.parametrize("name", sorted(MAPPED))
def test_sample_maps_to_canonical(name: str) -> None:
    parsed = parse(name)
    assert parsed.errors == ()
    MAPPED[name](parsed)


def test_pretty_printed_and_compact_read_the_same() -> None:
    data = read("856-oopfactory-vics-sopi.edi").decode("utf-8-sig")
    compact = "".join(line.strip() for line in data.splitlines())
    assert parse_interchange(compact).documents == parse("856-oopfactory-vics-sopi.edi").documents


# --- the HIBCC 832 bodies, under a repaired ISA12 --------------------------------------------


def test_hibcc_832_ex1_catalog_with_pkl_pack_levels() -> None:
    catalog = only(parse_interchange(repaired("832-oopfactory-hibcc-medsurg-ex1.edi")))
    assert isinstance(catalog, CatalogDocument)
    assert catalog.catalog_id == "2000"
    assert catalog.effective_from == date(2000, 3, 1)
    roles = {p.role: p for p in catalog.parties}
    assert roles[PartyRole.MANUFACTURER].id == "08KUG8732"
    assert roles[PartyRole.SUPPLIER].name == "HC DISTRIBUTOR"
    (entry,) = catalog.items
    assert entry.item.gtin == "50387698433528"
    assert entry.item.description == "DRAPE, SMALL TOWEL, CLEAR PLASTIC, ADHESIVE STRIP"
    (price,) = entry.prices  # the PKL-level CTP*SLP has no canonical place
    assert (price.tier, price.amount, price.unit) == (None, Decimal("66.50"), "CA")
    assert price.effective_from == date(2000, 3, 15)
    assert [(p.unit, p.quantity, p.gtin) for p in entry.packs] == [
        ("CA", 1, "50387698433528"),
        ("BX", 4, "30387698433527"),
    ]


def test_hibcc_832_ex2_contract_tiers_and_sln_pack_levels() -> None:
    catalog = only(
        parse_interchange(repaired("832-oopfactory-hibcc-medsurg-ex2-contract-pricing.edi"))
    )
    assert isinstance(catalog, CatalogDocument)
    assert catalog.catalog_id == "CT21000"
    assert (catalog.effective_from, catalog.effective_to) == (date(2000, 1, 1), date(2000, 12, 31))
    roles = {p.role: p for p in catalog.parties}
    assert (roles[PartyRole.GROUP].id, roles[PartyRole.GROUP].name) == ("8Y67JSD66", "HC GROUP ORG")
    assert roles[PartyRole.MANUFACTURER].id == "08KUG8732"
    (entry,) = catalog.items
    assert entry.item.supplier_part == "1000"
    assert entry.item.gtin == "50387698433528"
    assert [(p.tier, p.amount, p.unit, p.effective_from) for p in entry.prices] == [
        ("C01", Decimal("65"), "CA", date(2000, 3, 1)),
        ("C02", Decimal("62.20"), "CA", date(2000, 3, 1)),
        ("C03", Decimal("58.75"), "CA", date(2000, 3, 1)),
    ]
    assert [(p.unit, p.quantity, p.gtin) for p in entry.packs] == [
        ("CA", 1, "50387698433522"),
        ("BX", 4, "30387698433527"),
        ("EA", 20, "00387698433521"),
    ]


def test_repaired_adobe_and_walmart_810_bodies() -> None:
    adobe = only(parse_interchange(repaired("810-oopfactory-adobe.edi")))
    assert isinstance(adobe, InvoiceDocument)
    assert (adobe.invoice_number, adobe.order_numbers) == ("0013833070", ("V8748745",))
    assert adobe.lines[0].item.gtin == "00883919019161"
    assert adobe.total == Decimal("160.00")
    walmart = only(parse_interchange(repaired("810-oopfactory-walmart.edi")))
    assert isinstance(walmart, InvoiceDocument)
    assert walmart.lines[0].item.buyer_part == "001719653"
    assert walmart.lines[0].item.gtin == "00022108955228"  # UP before UK: the first GTIN
    assert walmart.total == Decimal("3875.30")


# --- sets and groups rejected inside a usable interchange ------------------------------------

# file -> (error class, segment id, set position, element, reason fragment)
REJECTED_SETS: dict[str, tuple[type[X12Error], str, int, int, str, str]] = {
    # a credit line priced negative: the canonical invoice line refuses it (credit memos are
    # separate documents, BIG07 CR)
    "810-oopfactory-californiaiso.edi": (BadNumber, "IT1", 22, 4, "is negative", "6"),
}
GROUP_REFUSED = {"856-oopfactory-ex2-003060.edi": (UnsupportedVersion, "003060")}


@pytest.mark.parametrize("name", sorted(REJECTED_SETS))
def test_unmappable_set_is_rejected_with_position(name: str) -> None:
    cls, segment_id, position, element, fragment, code = REJECTED_SETS[name]
    parsed = parse(name)
    assert parsed.documents == ()
    (error,) = parsed.errors
    assert isinstance(error, cls)
    assert isinstance(error, BadElement)
    assert (error.segment_id, error.set_position, error.element_position) == (
        segment_id,
        position,
        element,
    )
    assert fragment in error.reason
    ack = functional_ack(parsed, **ACK_CONTROLS)
    assert ack is not None
    assert f"AK3*{segment_id}*{position}**8~" in ack
    assert f"AK4*{element}**{code}" in ack
    assert "AK5*R*5~" in ack
    assert "AK9*R*1*1*0~" in ack


def test_003060_group_is_refused_with_ak905_2() -> None:
    parsed = parse("856-oopfactory-ex2-003060.edi")
    (group,) = parsed.groups
    (error,) = group.errors
    assert isinstance(error, UnsupportedVersion)
    assert (error.segment_id, error.element_position, error.value) == ("GS", 8, "003060")
    assert error.ak905 == "2"
    assert parsed.documents == ()
    ack = functional_ack(parsed, **ACK_CONTROLS)
    assert ack is not None
    assert "AK1*SH*1~" in ack
    assert "AK9*R*1*1*0*2~" in ack
    assert "AK2" not in ack


# --- 997 for every usable group --------------------------------------------------------------

USABLE = sorted(set(MAPPED) | set(REJECTED_SETS) | set(GROUP_REFUSED))


@pytest.mark.parametrize("name", USABLE)
def test_every_usable_group_gets_a_997_that_reparses(name: str) -> None:
    parsed = parse(name)
    text = functional_ack(parsed, **ACK_CONTROLS)
    assert text is not None
    answer = parse_interchange(text.encode("utf-8"))
    assert answer.errors == ()
    assert answer.only_acknowledgements
    assert functional_ack(answer, **ACK_CONTROLS) is None  # never answer a 997
    i, a = parsed.interchange, answer.interchange
    assert (a.sender_qualifier, a.sender_id) == (i.receiver_qualifier, i.receiver_id)
    assert (a.receiver_qualifier, a.receiver_id) == (i.sender_qualifier, i.sender_id)
    assert a.control_number == "000000900"
    reports = answer.ack_reports
    assert len(reports) == len(parsed.groups)
    for report, group in zip(reports, parsed.groups, strict=True):
        assert report.functional_id == group.group.functional_id
        assert report.group_control == group.group.control_number
        if group.errors:
            assert report.status == "R"
            assert report.sets == ()
            continue
        assert [(s.set_id, s.control_number) for s in report.sets] == [
            (s.set_id, s.control_number) for s in group.sets
        ]
        assert [s.accepted for s in report.sets] == [s.accepted for s in group.sets]
        accepted = sum(s.accepted for s in group.sets)
        assert report.accepted_count == accepted
        assert report.received == len(group.sets)
        expected = "A" if accepted == len(group.sets) else ("P" if accepted else "R")
        assert report.status == expected


def test_idempotency_key_from_sample() -> None:
    parsed = parse("855-oopfactory-simmons-multi-st.edi")
    (group,) = parsed.groups
    keys = [parsed.idempotency_key(group, s) for s in group.sets]
    assert keys == ["01:121792154:000076417:76417:0001", "01:121792154:000076417:76417:0002"]


def sample_paths() -> list[Path]:
    return [X12 / name for name in FILES]
