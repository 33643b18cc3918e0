"""Hostile and broken input: XXE, billion laughs, oversize, not XML, wrong root, unsupported
requests. Each is refused with its typed error and cXML status, quickly, reading nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from medbridge.connectors.cxml import CxmlConfig, CxmlError, parse, parse_response
from medbridge.connectors.cxml.errors import (
    ForbiddenMarkup,
    MissingData,
    NotCxml,
    NotWellFormed,
    TooLarge,
    UnsupportedRequest,
)
from paths import SAMPLES

ORDER = (SAMPLES / "cxml" / "OrderRequest-cxmlphp-sample-1.2.050.xml").read_bytes()
SECRET = "TOP-SECRET-7f3a9c"


def _refused(data: bytes, kind: type[CxmlError], status: int, **kw: int) -> CxmlError:
    with pytest.raises(CxmlError) as caught:
        parse(data, **kw)
    assert isinstance(caught.value, kind), caught.value
    assert caught.value.status == status
    return caught.value


def test_xxe_external_file_entity_is_never_read(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    data = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE cXML [<!ENTITY xxe SYSTEM "file://{secret_file}">]>\n'
        '<cXML payloadID="p" timestamp="2024-01-01T00:00:00Z"><Header><From><Credential '
        'domain="d"><Identity>&xxe;</Identity></Credential></From></Header></cXML>'
    ).encode()
    error = _refused(data, ForbiddenMarkup, 406)
    assert SECRET not in str(error)


def test_xxe_in_utf16_is_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    text = f'<!DOCTYPE cXML [<!ENTITY xxe SYSTEM "file://{secret_file}">]><cXML><x>&xxe;</x></cXML>'
    error = _refused(text.encode("utf-16"), NotWellFormed, 406)
    assert SECRET not in str(error)


def test_etc_passwd_entity_is_refused() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<cXML>&e;</cXML>"
    )
    error = _refused(data, ForbiddenMarkup, 406)
    assert "root:" not in str(error)


def test_undeclared_entity_reference_behind_an_external_dtd_is_refused() -> None:
    data = ORDER.replace(b"<Identity>coyote", b"<Identity>&xxe;coyote").replace(
        b"<SharedSecret>coyote", b"<SharedSecret>&xxe;"
    )
    _refused(data, NotWellFormed, 406)


def test_billion_laughs_is_refused_quickly() -> None:
    lol = ['<!ENTITY lol0 "lol">']
    lol += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    data = f'<?xml version="1.0"?><!DOCTYPE cXML [{"".join(lol)}]><cXML>&lol9;</cXML>'.encode()
    started = time.perf_counter()
    _refused(data, ForbiddenMarkup, 406)
    assert time.perf_counter() - started < 0.5


def test_internal_subset_without_entities_is_refused() -> None:
    data = ORDER.replace(b'cXML.dtd">', b'cXML.dtd" [<!ATTLIST cXML version CDATA "9">]>')
    _refused(data, ForbiddenMarkup, 406)


def test_standard_doctype_is_tolerated_and_not_fetched() -> None:
    # no_network + load_dtd off: the parse of a sample with an http DTD is offline and fast
    started = time.perf_counter()
    assert parse(ORDER).document
    assert time.perf_counter() - started < 0.5


def test_oversize_is_refused_before_parsing() -> None:
    error = _refused(ORDER, TooLarge, 400, max_bytes=len(ORDER) - 1)
    assert "limit" in error.reason
    assert parse(ORDER, max_bytes=len(ORDER)).document
    # not even well-formed: the size check comes first
    _refused(b"<" * 5000, TooLarge, 400, max_bytes=4096)
    assert CxmlConfig().max_bytes == 2 * 1024 * 1024


@pytest.mark.parametrize("data", [b"", b"   ", b"hello", b"{}", b"<cXML>", b"<a></b>", b"\xff\xfe"])
def test_not_xml(data: bytes) -> None:
    _refused(data, NotWellFormed, 406)


def test_not_bytes() -> None:
    with pytest.raises(TypeError):
        parse("<cXML/>")  # type: ignore[arg-type]


def test_wrong_root() -> None:
    error = _refused(b'<?xml version="1.0"?><Invoice><x/></Invoice>', NotCxml, 400)
    assert error.path == "/Invoice"


def test_bom_and_non_ascii_are_read() -> None:
    data = b"\xef\xbb\xbf" + ORDER.replace(
        b"hello from item 1", "Gaze \u00e9t\u00e9 \u2013 \u65e5\u672c".encode()
    )
    doc = parse(data).document
    assert doc.lines[0].item.description == "Gaze \u00e9t\u00e9 \u2013 \u65e5\u672c"  # type: ignore[union-attr]


@pytest.mark.parametrize("request_tag", ["ProfileRequest", "PunchOutSetupRequest"])
def test_unsupported_request(request_tag: str) -> None:
    data = ORDER.replace(b"<OrderRequest>", f"<{request_tag}>".encode()).replace(
        b"</OrderRequest>", f"</{request_tag}>".encode()
    )
    error = _refused(data, UnsupportedRequest, 450)
    assert error.path == f"/cXML/Request/{request_tag}"


def test_a_response_is_not_a_request() -> None:
    data = (
        b'<cXML payloadID="p" timestamp="2024-01-01T00:00:00Z">'
        b'<Response><Status code="200" text="OK"/></Response></cXML>'
    )
    _refused(data, MissingData, 400)  # no Header: it is not a request
    assert parse_response(data).ok


def test_missing_mandatory_attribute_names_it() -> None:
    error = _refused(ORDER.replace(b'orderID="DO1234"', b""), MissingData, 400)
    assert error.path == "/cXML/Request/OrderRequest/OrderRequestHeader/@orderID"


def test_bad_timestamp_and_bad_amount_name_their_place() -> None:
    error = _refused(
        ORDER.replace(b'timestamp="2000-10-12T18:39:09-08:00"', b'timestamp="x"'), CxmlError, 400
    )
    assert error.path == "/cXML/@timestamp"
    error = _refused(ORDER.replace(b">2.10<", b">2,10<"), CxmlError, 400)
    assert error.code == "cxml.invalid_amount"
    assert error.path == "/cXML/Request/OrderRequest/ItemOut[1]/ItemDetail/UnitPrice/Money"


def test_currency_mismatch_is_refused() -> None:
    error = _refused(
        ORDER.replace(b'<Money currency="EUR">3.20', b'<Money currency="USD">3.20'), CxmlError, 400
    )
    assert error.path.endswith("ItemOut[2]/ItemDetail/UnitPrice/Money/@currency")
