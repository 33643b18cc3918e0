"""Issue 15's fuzzing findings, each as the exact input that once escaped as an untyped
exception: every one is now refused with its connector's typed error, naming where."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from medbridge.connectors.cxml import CxmlError
from medbridge.connectors.cxml import parse as parse_cxml
from medbridge.connectors.cxml.errors import ForbiddenMarkup
from medbridge.connectors.fhir.codec import decode, recognise
from medbridge.connectors.fhir.errors import FhirError
from medbridge.connectors.flatfile import FlatFileConfig
from medbridge.connectors.flatfile import parse as parse_snapshot
from medbridge.connectors.flatfile.codec import trailer_count
from medbridge.connectors.flatfile.errors import BadValue, MalformedSnapshot
from medbridge.connectors.gs1 import Gs1Error
from medbridge.connectors.gs1 import parse as parse_scan
from medbridge.connectors.gs1.errors import Malformed
from medbridge.connectors.hl7v2.ack import build_ack
from medbridge.connectors.hl7v2.codec import parse as parse_hl7
from medbridge.connectors.hl7v2.errors import ContentError, Hl7Error, RequiredFieldMissing
from medbridge.connectors.hl7v2.mapping import map_message
from medbridge.connectors.x12 import X12Error, parse_interchange
from medbridge.connectors.x12.errors import BadNumber

# --- HL7 v2 ----------------------------------------------------------------------------------

MSH = "MSH|^~\\&|CABINET|H1|MB|MB|20261120100000||RDS^O13^RDS_O13|CTL1|P|2.5.1"


def rds(code: str = "0409-4888-02", when: str = "20261120100000", location: str = "") -> str:
    fields = [""] * 31
    fields[2], fields[3], fields[4], fields[5] = f"{code}^Vancomycin^L", when, "2", "VIAL"
    fields[30] = location
    return f"{MSH}\rPV1|1|I|WARD-4\rRXD" + "|".join(fields) + "\r"


def refusal(text: str) -> Hl7Error:
    message = parse_hl7(text)
    with pytest.raises(Hl7Error) as caught:
        map_message(message, b"secret")
    ack = build_ack(message, caught.value.ack_code, error=caught.value)
    assert "MSA|AE|CTL1" in ack  # a content error: the sender must not resend it
    return caught.value


@pytest.mark.parametrize(
    ("code", "cls"),
    [("\u2028", RequiredFieldMissing), ("X" * 65, ContentError), ("\u2029 \u2028", Hl7Error)],
)
def test_hl7_item_code_the_canonical_model_refuses_is_a_content_error_at_rxd_2(
    code: str, cls: type[Hl7Error]
) -> None:
    error = refusal(rds(code=code))
    assert isinstance(error, cls)
    assert error.ack_code == "AE"
    assert (error.segment, error.sequence, error.field) == ("RXD", 1, 2)


@pytest.mark.parametrize("location", ["\u2028", "L" * 121])
def test_hl7_location_the_canonical_model_refuses_is_a_content_error_at_rxd_30(
    location: str,
) -> None:
    error = refusal(rds(location=location))
    assert (error.segment, error.field, error.ack_code) == ("RXD", 30, "AE")
    assert "location" in str(error)


def test_hl7_sending_facility_too_long_for_a_source_system_names_msh_4() -> None:
    text = rds().replace("|CABINET|H1|", "|CABINET|" + "F" * 70 + "|")
    error = refusal(text)
    assert (error.segment, error.field) == ("MSH", 4)


@pytest.mark.parametrize("when", ["20261120100000+2500", "20261120100000-0060"])
def test_hl7_time_zone_offset_out_of_range_is_a_content_error(when: str) -> None:
    error = refusal(rds(when=when))
    assert isinstance(error, ContentError)
    assert (error.segment, error.field) == ("RXD", 3)
    assert "offset" in str(error)


@pytest.mark.parametrize("quantity", ["NaN", "sNaN", "Infinity", "\u0662"])
def test_hl7_quantity_that_is_not_a_finite_ascii_number_is_a_content_error(
    quantity: str,
) -> None:
    error = refusal(rds().replace("|2|VIAL|", f"|{quantity}|VIAL|"))
    assert (error.segment, error.field) == ("RXD", 4)


# --- X12 -------------------------------------------------------------------------------------

ISA = (
    "ISA*00*          *00*          *ZZ*SUPPLIER       *ZZ*MEDBRIDGE      "
    "*261120*1000*U*00401*000000001*0*P*>~"
)


def interchange(po1: str, se_count: str | None = None) -> str:
    body = ["BEG*00*SA*PO-1**20261120", po1, "CTT*1"]
    count = se_count or str(len(body) + 2)
    return (
        ISA
        + "GS*PO*SUPPLIER*MEDBRIDGE*20261120*1000*1*X*004010~ST*850*0001~"
        + "~".join(body)
        + f"~SE*{count}*0001~GE*1*1~IEA*1*000000001~"
    )


def test_x12_sample_interchange_of_these_tests_is_accepted() -> None:
    parsed = parse_interchange(interchange("PO1*1*5*EA*5.09**VN*PART-1"))
    assert parsed.errors == ()
    assert len(parsed.documents) == 1


@pytest.mark.parametrize(
    "quantity",
    ["9" * 4301, "1" * 31_000 + "x", "\u0661\u0662", "\u0663\u0660", "1\u00b2", "1." + "1" * 5000],
)
def test_x12_number_too_long_or_not_ascii_is_a_bad_number_at_po102(quantity: str) -> None:
    parsed = parse_interchange(interchange(f"PO1*1*{quantity}*EA*5.09**VN*PART-1"))
    (error,) = parsed.errors
    assert isinstance(error, BadNumber)
    assert error.element_name == "PO102"


@pytest.mark.parametrize("count", ["5\u00b2", "\u0665", "9" * 4301])
def test_x12_counts_in_unicode_digits_or_too_long_are_typed(count: str) -> None:
    try:
        parsed = parse_interchange(interchange("PO1*1*5*EA*5.09**VN*PART-1", se_count=count))
    except X12Error:
        return
    assert parsed.errors
    assert all(isinstance(e, X12Error) for e in parsed.errors)


def test_x12_unicode_digits_in_isa13_are_refused() -> None:
    with pytest.raises(X12Error) as caught:
        parse_interchange(
            interchange("PO1*1*5*EA*5.09").replace("000000001*0*P", "\u0660" * 9 + "*0*P")
        )
    assert "ISA13" in str(caught.value)


# --- GS1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scan", ["]", "]C", "]\u2028", "(\u0660\u0661)123"])
def test_gs1_broken_symbology_identifier_is_malformed(scan: str) -> None:
    with pytest.raises(Malformed):
        parse_scan(scan)


def test_gs1_scan_longer_than_any_symbol_is_refused_before_parsing() -> None:
    with pytest.raises(Gs1Error):
        parse_scan("01" + "0" * 400_000)


# --- flat files ------------------------------------------------------------------------------

CONFIG = FlatFileConfig(source="legacy")
HEADER = b"item,location,lot,quantity\nVANCO-1G,H1-PHARM,V1,37\n"


@pytest.mark.parametrize("trailer", ["#EOF,1\u00b2", "#EOF,\u0661", "#EOF," + "9" * 4301])
def test_flatfile_trailer_count_that_is_not_ascii_digits_is_malformed(trailer: str) -> None:
    assert trailer_count(trailer.split(","), CONFIG) == -1
    with pytest.raises(MalformedSnapshot) as caught:
        parse_snapshot(HEADER + trailer.encode(), CONFIG, "snap.csv")
    assert caught.value.line == 3


def test_flatfile_quantity_in_unicode_digits_is_a_bad_value() -> None:
    raw = "item,location,lot,quantity\nVANCO-1G,H1-PHARM,V1,\u0663\u0667\n#EOF,1\n".encode()
    with pytest.raises(BadValue) as caught:
        parse_snapshot(raw, CONFIG, "snap.csv")
    assert (caught.value.line, caught.value.column) == (2, "quantity")


# --- cXML and FHIR ---------------------------------------------------------------------------


def test_cxml_many_doctype_openings_are_refused_typed() -> None:
    raw = b'<?xml version="1.0"?>' + b"<!DOCTYPE" * 50_000 + b"<cXML/>"
    with pytest.raises(CxmlError):
        parse_cxml(raw)


def test_cxml_internal_subset_is_still_refused_after_the_linear_rewrite() -> None:
    raw = b'<?xml version="1.0"?><!DOCTYPE cXML [<!ELEMENT cXML ANY>]><cXML/>'
    with pytest.raises(ForbiddenMarkup):
        parse_cxml(raw)


def test_fhir_xml_integer_of_4301_digits_is_a_typed_refusal() -> None:
    xml = (
        '<MedicationDispense xmlns="http://hl7.org/fhir"><status value="completed"/>'
        f'<dosageInstruction><sequence value="{"9" * 4301}"/></dosageInstruction>'
        "</MedicationDispense>"
    ).encode()
    with pytest.raises(FhirError) as caught:
        recognise(decode(xml, "application/fhir+xml", max_bytes=1_000_000))
    assert caught.value.status == 400


def test_gs1_a_valid_scan_still_maps_to_a_receipt_line() -> None:
    from medbridge.connectors.gs1 import to_receipt_line

    line = to_receipt_line(
        parse_scan("010703206980498815210526100329"),
        location="H1-DOCK",
        source_system="gs1:dock",
        received_at=datetime(2021, 1, 1, tzinfo=UTC),
    )
    assert line.lot == "0329"


def test_fhir_bundle_whose_entry_is_not_a_list_is_malformed() -> None:
    payload = decode(
        b'{"resourceType": "Bundle", "type": "batch", "entry": 1.5}',
        "application/fhir+json",
        max_bytes=1_000_000,
    )
    with pytest.raises(FhirError) as caught:
        list(payload.entries())
    assert caught.value.status == 400
    assert "Bundle.entry" in str(caught.value)
