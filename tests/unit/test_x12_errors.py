"""X12 refusals on hand-made inputs: each error names segment position, element and reason,
and the 997 rejects exactly the set (or group) in error while accepting the others."""

from __future__ import annotations

from datetime import date, time

import pytest

from medbridge.canonical.trade import AcknowledgementDocument, LineStatus, OrderDocument
from medbridge.connectors.x12 import ParsedInterchange, functional_ack, parse_interchange
from medbridge.connectors.x12.errors import (
    BadDate,
    BadNumber,
    ControlMismatch,
    CountMismatch,
    DecodeError,
    DuplicateControl,
    InvalidDocument,
    IsaElement,
    IsaLength,
    MissingMandatory,
    MissingSegment,
    SegmentCount,
    UnexpectedSegment,
    UnsupportedSet,
    X12Error,
)

ISA = (
    "ISA*00*          *00*          *ZZ*HOSPITAL       *ZZ*SUPPLIER       "
    "*260102*0800*U*00401*000000123*0*P*>~\n"
)
assert len(ISA) == 107  # 106 + the newline after the terminator


def order_set(control: str, number: str, quantity: str = "10", day: str = "20260102") -> str:
    return (
        f"ST*850*{control}~\n"
        f"BEG*00*NE*{number}**{day}~\n"
        "N1*ST*MAIN WARD*92*WARD-1~\n"
        f"PO1*1*{quantity}*EA*2.5**VN*GLOVE-M*UK*00012345678905~\n"
        "PID*F****NITRILE GLOVES, M~\n"
        "CTT*1~\n"
        f"SE*7*{control}~\n"
    )


def interchange(*sets: str, ge: str | None = None, iea: str = "IEA*1*000000123~\n") -> str:
    count = len(sets)
    trailer = ge if ge is not None else f"GE*{count}*55~\n"
    return (
        ISA + "GS*PO*HOSPITAL*SUPPLIER*20260102*0800*55*X*004010~\n" + "".join(sets) + trailer + iea
    )


def ack(parsed: ParsedInterchange) -> str:
    text = functional_ack(
        parsed,
        interchange_control=7,
        group_control=7,
        set_control=7,
        sent_on=date(2026, 1, 2),
        sent_at=time(8, 1),
    )
    assert text is not None
    assert parse_interchange(text).errors == ()  # our 997 reads back with our codec
    return text


def test_three_good_orders_are_accepted() -> None:
    parsed = parse_interchange(
        interchange(order_set("0001", "PO-1"), order_set("0002", "PO-2"), order_set("0003", "PO-3"))
    )
    assert [d.order_number for d in parsed.documents if isinstance(d, OrderDocument)] == [
        "PO-1",
        "PO-2",
        "PO-3",
    ]
    text = ack(parsed)
    assert text.count("AK5*A~") == 3
    assert "AK9*A*3*3*3~" in text


def sets_with(bad: str) -> ParsedInterchange:
    """Three sets in one group, the middle one ``bad``."""
    return parse_interchange(interchange(order_set("0001", "PO-1"), bad, order_set("0003", "PO-3")))


def only_error(parsed: ParsedInterchange) -> X12Error:
    (error,) = parsed.errors
    assert [d.order_number for d in parsed.documents if isinstance(d, OrderDocument)] == [
        "PO-1",
        "PO-3",
    ]
    return error


def assert_middle_rejected(
    text: str, ak5: str, ak3: str | None = None, set_id: str = "850"
) -> None:
    assert "AK2*850*0001~\nAK5*A~" in text
    assert "AK2*850*0003~\nAK5*A~" in text
    middle = text.split(f"AK2*{set_id}*0002~\n")[1].split("AK2*850*0003")[0]
    assert middle.endswith(f"AK5*R*{ak5}~\n")
    if ak3 is None:
        assert "AK3" not in middle
    else:
        assert middle.startswith(ak3)
    assert "AK9*P*3*3*2~" in text


def test_non_numeric_quantity() -> None:
    parsed = sets_with(order_set("0002", "PO-2", quantity="abc"))
    error = only_error(parsed)
    assert isinstance(error, BadNumber)
    assert error.code == "x12.bad_number"
    # ISA, GS, 7 segments of set 1, then ST BEG N1 PO1: segment 13, 4th in its set
    assert (error.segment_position, error.set_position) == (13, 4)
    assert (error.segment_id, error.element_position, error.element_name) == ("PO1", 2, "PO102")
    assert error.value == "abc"
    assert str(error) == (
        "segment 13 (PO1) [#4 in its transaction set], element PO102:"
        " quantity ordered 'abc' is not a number"
    )
    assert_middle_rejected(ack(parsed), "5", "AK3*PO1*4**8~\nAK4*2**6*abc~\n")


def test_bad_date() -> None:
    parsed = sets_with(order_set("0002", "PO-2", day="20261302"))
    error = only_error(parsed)
    assert isinstance(error, BadDate)
    assert (error.segment_id, error.set_position, error.element_name) == ("BEG", 2, "BEG05")
    assert "'20261302' is not a date" in str(error)
    assert_middle_rejected(ack(parsed), "5", "AK3*BEG*2**8~\nAK4*5**8*20261302~\n")


def test_missing_beg() -> None:
    bad = order_set("0002", "PO-2").replace("BEG*00*NE*PO-2**20260102~\n", "")
    bad = bad.replace("SE*7*", "SE*6*")
    parsed = sets_with(bad)
    error = only_error(parsed)
    assert isinstance(error, MissingMandatory)
    assert error.code == "x12.missing_segment"
    assert error.segment_id == "BEG"
    assert error.element_position is None
    assert "no BEG segment" in str(error)
    assert_middle_rejected(ack(parsed), "5", "AK3*BEG*2**3~\n")


def test_wrong_se01_count() -> None:
    parsed = sets_with(order_set("0002", "PO-2").replace("SE*7*", "SE*9*"))
    error = only_error(parsed)
    assert isinstance(error, SegmentCount)
    assert error.code == "x12.segment_count"
    assert (error.segment_id, error.element_name, error.set_position) == ("SE", "SE01", 7)
    assert "SE01 says '9' segments, ST..SE holds 7" in str(error)
    assert_middle_rejected(ack(parsed), "4")


def test_st02_differs_from_se02() -> None:
    parsed = sets_with(order_set("0002", "PO-2").replace("SE*7*0002", "SE*7*0020"))
    error = only_error(parsed)
    assert isinstance(error, ControlMismatch)
    assert error.code == "x12.control_mismatch"
    assert (error.segment_id, error.element_name) == ("SE", "SE02")
    assert "SE02 '0020' does not match ST02 '0002'" in str(error)
    assert_middle_rejected(ack(parsed), "3")


def test_duplicate_st02_in_group() -> None:
    parsed = sets_with(order_set("0001", "PO-2"))
    (error,) = parsed.errors
    assert isinstance(error, DuplicateControl)
    assert error.ak502 == "23"


def test_unsupported_transaction_set() -> None:
    bad = "ST*940*0002~\nW05*N*1~\nSE*3*0002~\n"
    parsed = sets_with(bad)
    error = only_error(parsed)
    assert isinstance(error, UnsupportedSet)
    assert (error.segment_id, error.element_name, error.value) == ("ST", "ST01", "940")
    assert_middle_rejected(ack(parsed), "1", set_id="940")


def test_missing_se_trailer() -> None:
    bad = order_set("0002", "PO-2").replace("SE*7*0002~\n", "")
    parsed = sets_with(bad)
    error = only_error(parsed)
    assert isinstance(error, MissingSegment)
    assert error.segment_id == "SE"
    assert_middle_rejected(ack(parsed), "2")


def test_invalid_canonical_line_is_rejected() -> None:
    parsed = sets_with(order_set("0002", "PO-2", quantity="0"))  # quantity must be > 0
    error = only_error(parsed)
    assert isinstance(error, InvalidDocument)
    assert error.segment_id == "PO1"
    assert "quantity" in error.reason


# --- group-level ----------------------------------------------------------------------------


def test_gs06_differs_from_ge02_rejects_the_group() -> None:
    parsed = parse_interchange(interchange(order_set("0001", "PO-1"), ge="GE*1*56~\n"))
    (group,) = parsed.groups
    (error,) = group.errors
    assert isinstance(error, ControlMismatch)
    assert (error.segment_id, error.element_name) == ("GE", "GE02")
    assert "GE02 '56' does not match GS06 '55'" in str(error)
    assert parsed.documents == ()
    text = ack(parsed)
    assert "AK1*PO*55~\nAK9*R*1*1*0*4~" in text


def test_ge01_count_rejects_the_group() -> None:
    parsed = parse_interchange(interchange(order_set("0001", "PO-1"), ge="GE*2*55~\n"))
    (error,) = parsed.groups[0].errors
    assert isinstance(error, CountMismatch)
    assert "AK9*R*2*1*0*5~" in ack(parsed)


def test_missing_ge_rejects_the_group() -> None:
    parsed = parse_interchange(interchange(order_set("0001", "PO-1"), ge=""))
    (error,) = parsed.groups[0].errors
    assert isinstance(error, MissingSegment)
    assert error.segment_id == "GE"
    assert "AK9*R*1*1*0*3~" in ack(parsed)


# --- interchange-level: raised --------------------------------------------------------------


def test_missing_iea_is_refused() -> None:
    with pytest.raises(MissingSegment) as caught:
        parse_interchange(interchange(order_set("0001", "PO-1"), iea=""))
    assert caught.value.segment_id == "IEA"


def test_isa13_differs_from_iea02() -> None:
    with pytest.raises(ControlMismatch) as caught:
        parse_interchange(interchange(order_set("0001", "PO-1"), iea="IEA*1*000000124~"))
    assert caught.value.element_name == "IEA02"
    assert "does not match ISA13 '000000123'" in str(caught.value)


def test_iea01_group_count() -> None:
    with pytest.raises(CountMismatch) as caught:
        parse_interchange(interchange(order_set("0001", "PO-1"), iea="IEA*2*000000123~"))
    assert caught.value.element_name == "IEA01"


def test_segment_outside_a_group() -> None:
    with pytest.raises(UnexpectedSegment) as caught:
        parse_interchange(ISA + "BEG*00*NE*1**20260101~\nIEA*0*000000123~")
    assert (caught.value.segment_id, caught.value.segment_position) == ("BEG", 2)


@pytest.mark.parametrize(
    ("isa", "element", "fragment"),
    [
        (ISA.replace("*000000123*", "*00000123*"), 13, "ISA13 '00000123' is 8 characters"),
        (ISA.replace("*260102*", "*2601022*"), 9, "ISA09 '2601022' is 7 characters"),
        (ISA.replace("*HOSPITAL       *", "*HOSPITAL        *"), 6, "16 characters wide"),
        (ISA[:60], 8, "ISA08 'SUPPLIIEA' is 9 characters wide, expected 15"),
        (ISA[:30], 4, "no element separator '*' after ISA04"),
    ],
)
def test_isa_width_errors_name_the_element(isa: str, element: int, fragment: str) -> None:
    with pytest.raises(IsaLength) as caught:
        parse_interchange(isa + ("IEA*0*000000123~" if len(isa) > 40 else ""))
    assert caught.value.element_position == element
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "element"),
    [("*000000123*", "*00000012A*", 13), ("*0*P*", "*2*P*", 14), ("*0*P*", "*0*X*", 15)],
)
def test_isa_values_are_checked(old: str, new: str, element: int) -> None:
    with pytest.raises(IsaElement) as caught:
        parse_interchange(interchange(order_set("0001", "PO-1")).replace(old, new, 1))
    assert caught.value.element_name == f"ISA{element:02d}"
    assert caught.value.code == "x12.isa_element"


def test_855_line_ship_date_from_dtm() -> None:
    text = (
        ISA.replace("00401*000000123", "00401*000000123")
        + "GS*PR*SUPPLIER*HOSPITAL*20260102*0800*5*X*004010~\n"
        "ST*855*0001~\nBAK*00*AC*PO-1*20260102~\nPO1*1*5*EA*2**VN*X~\n"
        "ACK*IB*5*EA~\nDTM*068*20260120~\nCTT*1~\nSE*7*0001~\nGE*1*5~\nIEA*1*000000123~"
    )
    (document,) = parse_interchange(text).documents
    assert isinstance(document, AcknowledgementDocument)
    (line,) = document.lines
    assert (line.status, line.ship_date) == (LineStatus.BACKORDERED, date(2026, 1, 20))
    assert document.acknowledgement_id == "PO-1"


def test_not_utf8_names_the_byte_offset() -> None:
    data = interchange(order_set("0001", "PO-1")).encode("utf-8")
    broken = data[:200] + b"\xff" + data[200:]
    with pytest.raises(DecodeError) as caught:
        parse_interchange(b"\xef\xbb\xbf" + broken)
    assert caught.value.code == "x12.encoding"
    assert "byte offset 203: b'\\xff" in str(caught.value)  # counted with the BOM


def test_not_an_interchange() -> None:
    with pytest.raises(X12Error) as caught:
        parse_interchange(b"UNA:+.? 'UNB+UNOC:3")
    assert caught.value.code == "x12.isa_length"
