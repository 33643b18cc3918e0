"""X12 codec and writer: delimiter choice, envelopes written with correct widths and counts,
lossless extension REFs, newline terminators, inbound 997s."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import date, time
from decimal import Decimal

import pytest

from medbridge.canonical.trade import (
    AckLine,
    AcknowledgementDocument,
    AckStatus,
    InvoiceDocument,
    InvoiceLine,
    LineStatus,
    OrderDocument,
    OrderLine,
    PartnerItem,
    Party,
    PartyRole,
)
from medbridge.connectors.x12 import (
    NAME,
    Envelope,
    X12Config,
    functional_ack,
    parse_interchange,
    render,
)
from medbridge.connectors.x12.codec import Delimiters, choose_delimiters, tokenize
from medbridge.connectors.x12.errors import BadNumber, IsaElement, NoSafeDelimiters

ENVELOPE = Envelope(
    sender_qualifier="ZZ",
    sender_id="MEDBRIDGE",
    receiver_qualifier="12",
    receiver_id="8005551234",
    interchange_control=1234,
    group_control=10,
    set_control=100,
    sent_on=date(2026, 3, 4),
    sent_at=time(5, 6),
    usage="T",
)


def order(number: str = "PO-1", description: str | None = "GLOVES") -> OrderDocument:
    return OrderDocument(
        order_number=number,
        order_date=date(2026, 3, 1),
        parties=(Party(role=PartyRole.SHIP_TO, id="WARD-1", name="Main ward"),),
        lines=(
            OrderLine(
                line_number=1,
                item=PartnerItem(supplier_part="GLV-M", ndc="00093721410", description=description),
                quantity=Decimal("2.5"),
                unit="BX",
                unit_price=Decimal("12.3400"),
                requested_delivery=date(2026, 3, 9),
            ),
        ),
    )


def invoice(total: Decimal) -> InvoiceDocument:
    return InvoiceDocument(
        invoice_number="INV-9",
        invoice_date=date(2026, 3, 5),
        lines=(
            InvoiceLine(
                line_number=1,
                item=PartnerItem(gtin="00012345678905"),
                quantity=Decimal(3),
                unit="EA",
                unit_price=Decimal("1.111"),
                order_number="PO-A",
                order_line=3,
            ),
            InvoiceLine(
                line_number=2,
                item=PartnerItem(buyer_part="B-2"),
                quantity=Decimal(1),
                unit="EA",
                unit_price=Decimal(5),
                order_number="PO-B",
            ),
        ),
        tax=Decimal("0.25"),
        total=total,
    )


def test_package_surface() -> None:
    assert NAME == "x12"
    assert X12Config().version == "004010"


def test_rendered_interchange_envelope() -> None:
    text = render([order("PO-1"), invoice(Decimal("8.58")), order("PO-2")], ENVELOPE)
    lines = text.splitlines()
    assert len(lines[0]) == 106
    assert lines[0].startswith(
        "ISA*00*          *00*          *ZZ*MEDBRIDGE      *12*8005551234     "
    )
    assert lines[0].endswith("*260304*0506*U*00401*000001234*0*T*>~")
    gs = [line for line in lines if line.startswith("GS*")]
    assert gs == [
        "GS*PO*MEDBRIDGE*8005551234*20260304*0506*10*X*004010~",
        "GS*IN*MEDBRIDGE*8005551234*20260304*0506*11*X*004010~",
    ]
    assert [line for line in lines if line.startswith(("ST*", "GE*", "IEA"))] == [
        "ST*850*0100~",
        "ST*850*0101~",
        "GE*2*10~",
        "ST*810*0102~",
        "GE*1*11~",
        "IEA*2*000001234~",
    ]
    parsed = parse_interchange(text)
    assert parsed.errors == ()
    assert [type(d).__name__ for d in parsed.documents] == [
        "OrderDocument",
        "OrderDocument",
        "InvoiceDocument",
    ]
    keys = [parsed.idempotency_key(g, s) for g in parsed.groups for s in g.sets]
    assert keys[0] == "ZZ:MEDBRIDGE:000001234:10:0100"


def test_delimiters_avoid_the_data() -> None:
    awkward = "A*B|C^D!E~F'G>H:I\\J`K"
    text = render([order(description=awkward)], ENVELOPE)
    delimiters, _ = tokenize(text)
    assert delimiters.element == "\x1d"
    assert delimiters.segment == "\x1c"
    assert delimiters.component == "\x1f"
    (document,) = parse_interchange(text).documents
    assert document == order(description=awkward)


def test_preferred_delimiters_when_safe() -> None:
    assert choose_delimiters(["abc"]) == Delimiters("*", ">", "~", None)
    assert choose_delimiters(["a*b"]).element == "|"
    assert choose_delimiters(["a~b"]).segment == "'"


def test_no_safe_delimiters() -> None:
    with pytest.raises(NoSafeDelimiters) as caught:
        choose_delimiters(["*|^!~\x1d"])
    assert caught.value.code == "x12.no_delimiters"
    assert "element separator" in str(caught.value)


def test_5010_envelope_has_a_repetition_separator() -> None:
    envelope = replace(ENVELOPE, version="005010")
    text = render([order()], envelope)
    assert text[82] == "^"
    assert "*00501*" in text[:106]
    parsed = parse_interchange(text)
    assert parsed.interchange.delimiters.repetition == "^"
    assert parsed.groups[0].group.version == "005010"
    assert parsed.documents == (order(),)
    ack = functional_ack(
        parsed,
        interchange_control=1,
        group_control=1,
        set_control=1,
        sent_on=date(2026, 1, 1),
        sent_at=time(0, 0),
        version="005010",
    )
    assert ack is not None
    assert "AK1*PO*10*005010~" in ack


def test_envelope_refuses_bad_widths() -> None:
    with pytest.raises(IsaElement):
        replace(ENVELOPE, sender_id="X" * 16)
    with pytest.raises(IsaElement):
        replace(ENVELOPE, version="003060")


def test_invoice_total_beyond_two_decimals_travels_in_an_extension_ref() -> None:
    exact = invoice(Decimal("8.5830"))
    text = render([exact], ENVELOPE)
    assert "REF*ZZ*TOTAL*8.583~" in text
    assert "TDS*858~" in text
    assert "REF*PO*PO-A~" in text  # two orders: per line, BIG04 empty
    assert "REF*LI*3~" in text
    assert parse_interchange(text).documents == (exact,)
    plain = render([invoice(Decimal("8.58"))], ENVELOPE)
    assert "TOTAL" not in plain


def test_substitute_description_travels_in_an_extension_ref() -> None:
    ack = AcknowledgementDocument(
        acknowledgement_id="ACK-1",
        order_number="PO-1",
        acknowledged_on=date(2026, 3, 2),
        status=AckStatus.ACCEPTED_WITH_CHANGES,
        lines=(
            AckLine(
                line_number=1,
                item=PartnerItem(supplier_part="GLV-M"),
                status=LineStatus.SUBSTITUTED,
                quantity=Decimal(2),
                unit="BX",
                ship_date=date(2026, 3, 6),
                substitute=PartnerItem(supplier_part="GLV-M2", description="GLOVES V2"),
            ),
            AckLine(
                line_number=2,
                item=PartnerItem(buyer_part="X"),
                status=LineStatus.REJECTED,
                quantity=Decimal(0),
                unit="EA",
            ),
        ),
    )
    text = render([ack], ENVELOPE)
    assert "BAK*00*AC*PO-1*20260302****ACK-1*20260302~" in text
    assert "ACK*IS*2*BX*068*20260306**VN*GLV-M2~" in text
    assert "REF*ZZ*SUBST*GLOVES V2~" in text
    assert "ACK*IR*0*EA~" in text
    assert parse_interchange(text).documents == (ack,)


def test_newline_terminated_interchanges() -> None:
    text = render([order()], ENVELOPE)
    for newline in ("\r\n", "\n", "\r"):
        plain = text.replace("~\n", newline)
        assert plain[105] == newline[0]
        parsed = parse_interchange(plain.encode("utf-8"))
        assert parsed.interchange.delimiters.newline_terminated
        assert parsed.documents == (order(),)


def test_parse_partner_997() -> None:
    ours = parse_interchange(render([order("PO-1"), order("PO-2")], ENVELOPE))
    assert ours.errors == ()
    partner_997 = (
        "ISA*00*          *00*          *12*8005551234     *ZZ*MEDBRIDGE      "
        "*260304*0600*U*00401*000000077*0*P*>~"
        "GS*FA*8005551234*MEDBRIDGE*20260304*0600*77*X*004010~"
        "ST*997*0001~AK1*PO*10~"
        "AK2*850*0100~AK5*A~"
        "AK2*850*0101~AK3*PO1*4**8~AK4*2**6*abc~AK5*R*5~"
        "AK9*P*2*2*1~SE*10*0001~GE*1*77~IEA*1*000000077~"
    )
    parsed = parse_interchange(partner_997)
    assert parsed.only_acknowledgements
    assert parsed.documents == ()
    (report,) = parsed.ack_reports
    assert (report.functional_id, report.group_control, report.status) == ("PO", "10", "P")
    assert not report.accepted
    assert report.rejected_sets == ("0101",)
    assert (report.included, report.received, report.accepted_count) == (2, 2, 1)
    assert report.sets[1].codes == ("5",)
    assert report.sets[1].errors == ("PO1 at 4: segment code 8", "element 2: code 6 ('abc')")
    assert (
        functional_ack(
            parsed,
            interchange_control=1,
            group_control=1,
            set_control=1,
            sent_on=date(2026, 1, 1),
            sent_at=time(0, 0),
        )
        is None
    )


def test_errors_pickle_with_their_positions() -> None:
    error = BadNumber(
        "quantity 'abc' is not a number",
        segment_position=14,
        set_position=5,
        segment_id="PO1",
        element_position=2,
        value="abc",
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.element_name, copy.value, str(copy)) == (
        "x12.bad_number",
        "PO102",
        "abc",
        str(error),
    )
    assert isinstance(error, ValueError)


def test_mixed_interchange_acks_only_the_business_groups() -> None:
    body = (
        "GS*FA*8005551234*MEDBRIDGE*20260304*0600*77*X*004010~"
        "ST*997*0001~AK1*PO*10~AK9*A*1*1*1~SE*4*0001~GE*1*77~"
        "GS*PO*8005551234*MEDBRIDGE*20260304*0600*78*X*004010~"
        "ST*850*0001~BEG*00*NE*PO-9**20260304~PO1*1*1*EA*1**VN*X~SE*4*0001~GE*1*78~"
    )
    isa = (
        "ISA*00*          *00*          *12*8005551234     *ZZ*MEDBRIDGE      "
        "*260304*0600*U*00401*000000078*0*P*>~"
    )
    parsed = parse_interchange(isa + body + "IEA*2*000000078~")
    assert parsed.errors == ()
    assert not parsed.only_acknowledgements
    (report,) = parsed.ack_reports
    assert report.accepted
    text = functional_ack(
        parsed,
        interchange_control=5,
        group_control=5,
        set_control=5,
        sent_on=date(2026, 3, 4),
        sent_at=time(6, 1),
    )
    assert text is not None
    assert "AK1*PO*78~" in text
    assert "AK1*FA" not in text
    assert text.count("GS*FA*MEDBRIDGE*8005551234*") == 1
