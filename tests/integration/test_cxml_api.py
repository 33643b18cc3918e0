"""``POST /cxml`` with every shared cXML sample: authenticated by the Sender credential and its
SharedSecret, answered with a cXML Response whose Status is also the HTTP status; the document
appended once per payloadID; a refusal names the path at fault and stores nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from medbridge.app import MedBridge
from medbridge.canonical.partners import TradingPartner, WireFormat
from medbridge.connectors.cxml import CxmlError, CxmlMessage, parse, parse_envelope, parse_response
from medbridge.flows.trade import event_type
from medbridge.store.tables import bus_events
from paths import SAMPLES

pytestmark = pytest.mark.db

CXML = sorted((SAMPLES / "cxml").glob("*.xml"))
XML = {"Content-Type": "text/xml; charset=utf-8"}
MakeClient = Callable[..., tuple[TestClient, MedBridge]]


@pytest.fixture
def client_for(medbridge: MedBridge) -> Iterator[MakeClient]:
    opened: list[TestClient] = []

    def make(
        raw: bytes, secret: str | None = None, identity: str | None = None
    ) -> tuple[TestClient, MedBridge]:
        envelope = parse_envelope(raw)
        partner = TradingPartner(
            code="SUP",
            wire_format=WireFormat.CXML,
            cxml_domain=envelope.sender_domain,
            cxml_identity=identity or envelope.sender_identity,
            cxml_shared_secret=SecretStr(secret or envelope.shared_secret or "agreed-secret"),
        )
        mb = MedBridge.build(medbridge.settings.model_copy(update={"partners": {"SUP": partner}}))
        client = TestClient(mb.api())
        client.__enter__()
        opened.append(client)
        return client, mb

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def events(mb: MedBridge) -> list[str]:
    with mb.engine.connect() as conn:
        return list(conn.execute(select(bus_events.c.type).order_by(bus_events.c.seq)).scalars())


def read(raw: bytes) -> tuple[CxmlMessage | None, CxmlError | None]:
    try:
        return parse(raw), None
    except CxmlError as error:
        return None, error


@pytest.mark.parametrize("sample", CXML, ids=lambda p: p.name)
def test_every_sample_is_received_or_refused_naming_the_path(
    sample: Path, client_for: MakeClient
) -> None:
    raw = sample.read_bytes()
    client, mb = client_for(raw)
    answer = client.post("/cxml", content=raw, headers=XML)
    status = parse_response(answer.content)
    assert answer.status_code == status.status_code
    assert answer.headers["content-type"].startswith("text/xml")
    if parse_envelope(raw).shared_secret is None:
        assert answer.status_code == 401, "no SharedSecret: never authenticated"
        assert "Sender" in status.message
        assert events(mb) == []
        return
    message, error = read(raw)
    if error is not None:
        assert answer.status_code == error.status
        assert error.path in status.message, "the Status names the path at fault"
        assert events(mb) == []
        return
    assert message is not None
    assert answer.status_code == 200
    assert events(mb) == [event_type(message.document)]
    again = client.post("/cxml", content=raw, headers=XML)
    assert again.status_code == 200
    assert again.content == answer.content, "a resent payloadID gets the first Response"
    assert len(events(mb)) == 1


def test_a_wrong_shared_secret_is_401_and_stores_nothing(client_for: MakeClient) -> None:
    raw = (SAMPLES / "cxml" / "OrderRequest-cxmlphp-sample-1.2.050.xml").read_bytes()
    client, mb = client_for(raw, secret="not-coyote")
    answer = client.post("/cxml", content=raw, headers=XML)
    assert answer.status_code == 401
    assert parse_response(answer.content).status_code == 401
    assert events(mb) == []


def test_an_unknown_sender_and_a_wrong_secret_get_the_same_answer(
    client_for: MakeClient,
) -> None:
    """Issue 15: the answer must not tell whether a sender is one of our partners."""
    raw = (SAMPLES / "cxml" / "OrderRequest-cxmlphp-sample-1.2.050.xml").read_bytes()
    wrong_secret, mb = client_for(raw, secret="not-coyote")
    unknown, _ = client_for(raw, identity="someone-else")
    answers = [c.post("/cxml", content=raw, headers=XML) for c in (wrong_secret, unknown)]
    statuses = [parse_response(a.content) for a in answers]
    assert [a.status_code for a in answers] == [401, 401]
    assert statuses[0].status_code == statuses[1].status_code == 401
    assert statuses[0].message == statuses[1].message
    assert events(mb) == []


def test_hostile_and_oversize_documents_are_refused(client_for: MakeClient, tmp_path: Path) -> None:
    raw = (SAMPLES / "cxml" / "OrderRequest-cxmlphp-sample-1.2.050.xml").read_bytes()
    client, mb = client_for(raw)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE cXML [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<cXML payloadID="1@x" timestamp="2026-01-01T00:00:00Z"><Header>&x;</Header></cXML>'
    ).encode()
    refused = client.post("/cxml", content=xxe, headers=XML)
    assert refused.status_code in (400, 406)
    assert b"TOP-SECRET-CANARY" not in refused.content
    assert client.post("/cxml", content=b"not xml", headers=XML).status_code == 406
    big = client.post("/cxml", content=b"<cXML>" + b" " * 3_000_000, headers=XML)
    assert big.status_code == 413
    assert events(mb) == []


def test_doctype_flood_and_bad_numbers_are_4xx_naming_the_problem(client_for: MakeClient) -> None:
    raw = (SAMPLES / "cxml" / "OrderRequest-cxmlphp-sample-1.2.050.xml").read_bytes()
    client, mb = client_for(raw)
    flood = b'<?xml version="1.0"?>' + b"<!DOCTYPE" * 100_000 + b"<cXML/>"  # was quadratic
    answer = client.post("/cxml", content=flood, headers=XML)
    assert answer.status_code == 406
    assert b"not well-formed" in answer.content or b"DOCTYPE" in answer.content
    assert events(mb) == []
