"""``POST /v1/edi/x12`` and the partner folders with every shared X12 sample: each interchange
either becomes canonical documents on the bus (answered with a 997 accepting them) or is
refused with a reason naming the segment and element; each inbound group gets a 997; a resent
interchange gets the same 997 and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from medbridge.app import MedBridge
from medbridge.canonical.partners import OwnIdentity, TradingPartner
from medbridge.canonical.trade import OrderDocument
from medbridge.connectors.x12 import parse_interchange
from medbridge.governance.permissions import Role
from medbridge.store.tables import bus_events
from paths import SAMPLES

pytestmark = pytest.mark.db

X12 = sorted((SAMPLES / "x12").glob("*.edi"))
MEDIA = {"Content-Type": "application/edi-x12"}
ENVELOPE_REFUSED = {  # sample -> the ISA element named (SOURCES.md flags these envelopes)
    "810-oopfactory-adobe.edi": "ISA12",
    "810-oopfactory-walmart.edi": "ISA12",
    "832-oopfactory-hibcc-medsurg-ex1.edi": "ISA12",
    "832-oopfactory-hibcc-medsurg-ex2-contract-pricing.edi": "ISA12",
    "850-oopfactory-adobe-clp-isa00300.edi": "ISA06",
    "850-oopfactory-adobe-shrinkwrapped.edi": "ISA06",
}
MakeClient = Callable[..., tuple[TestClient, MedBridge]]
GROUP_REFUSED = {"856-oopfactory-ex2-003060.edi"}  # GS08 003060: 997 AK9*R, AK905 = 2


def parties(raw: bytes) -> tuple[TradingPartner, OwnIdentity]:
    """The sample's sender as a partner, its receiver as MedBridge (read off the ISA the way
    the codec does, also for the envelopes it refuses: their fixed positions still hold)."""
    text = raw.decode("utf-8-sig")
    start = text.index("ISA")
    sep = text[start + 3]
    isa = text[start:].split(sep)
    partner = TradingPartner(code="SUP", x12_qualifier=isa[5], x12_id=isa[6].strip())
    own = OwnIdentity(x12_qualifier=isa[7], x12_id=isa[8].strip()[:15])
    return partner, own


@pytest.fixture
def client_for(medbridge: MedBridge) -> Iterator[MakeClient]:
    opened: list[TestClient] = []

    def make(raw: bytes, **partner: object) -> tuple[TestClient, MedBridge]:
        sup, own = parties(raw)
        settings = medbridge.settings.model_copy(
            update={
                "partners": {"SUP": sup.model_copy(update=partner)},
                "own_identity": own,
            }
        )
        mb = MedBridge.build(settings)
        client = TestClient(mb.api())
        client.__enter__()
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        opened.append(client)
        return client, mb

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def events(mb: MedBridge) -> list[str]:
    with mb.engine.connect() as conn:
        return list(conn.execute(select(bus_events.c.type).order_by(bus_events.c.seq)).scalars())


@pytest.mark.parametrize("sample", X12, ids=lambda p: p.name)
def test_every_sample_is_received_or_refused_with_its_position(
    sample: Path, client_for: MakeClient
) -> None:
    raw = sample.read_bytes()
    client, mb = client_for(raw)
    answer = client.post("/v1/edi/x12", content=raw, headers=MEDIA)
    if sample.name in ENVELOPE_REFUSED:
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("text/plain")
        assert f"element {ENVELOPE_REFUSED[sample.name]}" in answer.text
        assert "segment 1 (ISA)" in answer.text
        assert events(mb) == []
        return
    parsed = parse_interchange(raw)
    ack = parse_interchange(answer.text)  # the 997 is itself valid X12
    assert answer.headers["content-type"].startswith("application/edi-x12")
    acked_groups = [s.ack_report for s in (s for g in ack.groups for s in g.sets)]
    assert len(acked_groups) == len(parsed.groups), "one 997 per inbound group"
    assert ack.interchange.sender_id == mb.settings.own_identity.x12_id
    assert ack.interchange.receiver_id == parsed.interchange.sender_id
    segments = answer.text.replace("\n", "")
    if sample.name in GROUP_REFUSED:
        assert answer.status_code == 400
        assert "AK9" in segments
        assert events(mb) == []
        return
    assert len(events(mb)) == len(parsed.documents)
    accepted = [s for g in parsed.groups for s in g.sets if s.accepted]
    assert answer.status_code == (200 if accepted else 400)
    again = client.post("/v1/edi/x12", content=raw, headers=MEDIA)
    assert again.text == answer.text, "a resend is answered with the same 997"
    assert again.headers["X-MedBridge-Duplicate"] == "true"
    assert len(events(mb)) == len(parsed.documents), "and changes nothing"


def test_documents_are_readable_with_their_keys(client_for: MakeClient) -> None:
    raw = (SAMPLES / "x12" / "855-oopfactory-simmons-multi-st.edi").read_bytes()
    client, _ = client_for(raw)
    assert client.post("/v1/edi/x12", content=raw, headers=MEDIA).status_code == 200
    items = client.get("/v1/trade-documents", params={"kind": "acknowledgement"}).json()["items"]
    assert len(items) == 2
    # sender + ISA13 + GS06 + ST02
    assert [d["idempotency_key"] for d in items] == [
        "x12:01:121792154:000076417:76417:0001",
        "x12:01:121792154:000076417:76417:0002",
    ]
    assert {d["partner"] for d in items} == {"SUP"}


def test_unknown_sender_wrong_receiver_no_key_and_garbage(client_for: MakeClient) -> None:
    raw = (SAMPLES / "x12" / "850-oopfactory-sitestuff-p2p.edi").read_bytes()
    client, mb = client_for(raw, x12_id="SOMEONEELSE")
    refused = client.post("/v1/edi/x12", content=raw, headers=MEDIA)
    assert refused.status_code == 403
    assert "ISA05/ISA06 ZZ:SITESTUFFP2P is not a trading partner" in refused.text
    client2, _ = client_for(raw.replace(b"SUPPLIERID     ", b"NOTMEDBRIDGE   "))
    wrong = client2.post(
        "/v1/edi/x12", content=raw.replace(b"SUPPLIERID     ", b"NOTUS          "), headers=MEDIA
    )
    assert wrong.status_code == 400
    assert "ISA07/ISA08" in wrong.text
    assert client.post("/v1/edi/x12", content=b"hello", headers=MEDIA).status_code == 400
    assert (
        client.post("/v1/edi/x12", content=raw, headers={**MEDIA, "X-API-Key": "nope"}).status_code
        == 401
    )
    assert events(mb) == []


def test_a_partner_bound_to_an_api_client_is_posted_by_that_client_only(
    client_for: MakeClient,
) -> None:
    """Issue 15: an X12 partner bound to its API client; another integration client posting
    that partner's ISA sender gets 403 and nothing is stored."""
    raw = (SAMPLES / "x12" / "850-oopfactory-sitestuff-p2p.edi").read_bytes()
    client, mb = client_for(raw, api_client="sup-edi")
    other = mb.clients.register("another-van", Role.INTEGRATION)
    refused = client.post("/v1/edi/x12", content=raw, headers={**MEDIA, "X-API-Key": other})
    assert refused.status_code == 403
    assert "only its own API client posts, not another-van" in refused.text
    assert events(mb) == []
    own = mb.clients.register("sup-edi", Role.INTEGRATION)
    accepted = client.post("/v1/edi/x12", content=raw, headers={**MEDIA, "X-API-Key": own})
    assert accepted.status_code == 200, accepted.text
    assert events(mb) != []


def test_a_bad_set_is_rejected_alone_in_the_997(client_for: MakeClient) -> None:
    raw = (SAMPLES / "x12" / "855-oopfactory-simmons-multi-st.edi").read_bytes()
    text = raw.decode("utf-8-sig")
    # break the second set's PO102 quantity: that set is rejected, the first accepted
    broken = text.replace("PO1*100*1*EA*9000", "PO1*100*X*EA*9000")
    assert broken != text
    client, mb = client_for(raw)
    answer = client.post("/v1/edi/x12", content=broken.encode(), headers=MEDIA)
    assert answer.status_code == 200
    flat = answer.text.replace("\n", "")
    assert "AK5*A" in flat
    assert "AK5*R" in flat
    assert "AK9*P*2*2*1" in flat
    assert events(mb) == ["trade.acknowledgement_received.v1"]


def test_partner_folders_receive_files_and_write_the_997(
    client_for: MakeClient, tmp_path: Path
) -> None:
    raw = (SAMPLES / "x12" / "856-oopfactory-vics-sopi.edi").read_bytes()
    inbound, outbound = tmp_path / "in", tmp_path / "out"
    _, mb = client_for(raw, inbound_folder=inbound, outbound_folder=outbound)
    folders = mb.partner_folders()
    assert folders is not None
    inbound.mkdir()
    (inbound / "asn1.edi").write_bytes(raw)
    (inbound / ".half-written.edi").write_bytes(raw[:40])
    bad = (SAMPLES / "x12" / "850-oopfactory-adobe-shrinkwrapped.edi").read_bytes()
    (inbound / "bad.edi").write_bytes(bad)
    outcomes = {o.file: o.status for o in folders.scan()}
    assert outcomes == {"asn1.edi": 200, "bad.edi": 400}
    assert (inbound / "processed" / "asn1.edi").exists()
    assert (inbound / "rejected" / "bad.edi").exists()
    assert "ISA06" in (inbound / "rejected" / "bad.edi.reason.txt").read_text()
    assert (inbound / ".half-written.edi").exists(), "hidden files are left alone"
    ack = parse_interchange((outbound / "asn1.997.x12").read_bytes())
    assert len(ack.ack_reports) == 1
    assert events(mb) == ["trade.ship_notice_received.v1"]
    (inbound / "asn1-again.edi").write_bytes(raw)  # the same interchange under another name
    folders.scan()
    assert events(mb) == ["trade.ship_notice_received.v1"]
    with mb.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(bus_events)).scalar() == 1


def test_the_product_outbox_writes_the_850_to_the_partner_folder(
    client_for: MakeClient, tmp_path: Path
) -> None:
    raw = (SAMPLES / "x12" / "850-oopfactory-sitestuff-p2p.edi").read_bytes()
    _, mb = client_for(raw, outbound_folder=tmp_path / "out")
    [order] = parse_interchange(raw).documents
    assert isinstance(order, OrderDocument)
    partner = mb.settings.partners["SUP"]
    first = mb.trade_outbox().send(order, partner=partner, correlation_id=None)
    again = mb.trade_outbox().send(order, partner=partner, correlation_id=None)
    assert again.control == first.control
    [written] = sorted((tmp_path / "out").glob("*.x12"))
    sent = parse_interchange(written.read_bytes())
    assert sent.documents == (order,)
    assert sent.interchange.control_number == first.control
    assert sent.interchange.receiver_id == partner.x12_id


@pytest.mark.parametrize(
    ("quantity", "reason"),
    [
        ("9" * 4301, "4301 characters is not a number"),  # int() refuses over 4,300 digits
        ("\u0661\u0662", "is not a number"),  # Arabic-Indic digits: \d matched them
        ("1" * 31_000 + "x", "31001 characters is not a number"),  # the quadratic regex's run
    ],
)
def test_hostile_numbers_are_a_4xx_997_naming_the_element_never_a_500(
    client_for: MakeClient, quantity: str, reason: str
) -> None:
    raw = (SAMPLES / "x12" / "850-oopfactory-sitestuff-p2p.edi").read_bytes()
    hostile = raw.replace(b"PO1*6917*1*PK", f"PO1*6917*{quantity}*PK".encode())
    assert hostile != raw
    client, mb = client_for(raw)
    answer = client.post("/v1/edi/x12", content=hostile, headers=MEDIA)
    assert answer.status_code == 400, answer.text
    assert "AK5*R" in answer.text.replace("\n", "")
    assert "AK4*2*" in answer.text  # AK4: the element at fault, PO102
    assert events(mb) == []
    parsed = parse_interchange(hostile)
    assert any(reason in str(e) and e.element_name == "PO102" for e in parsed.errors)


def test_unicode_digits_in_the_envelope_are_a_400_naming_isa13(client_for: MakeClient) -> None:
    raw = (SAMPLES / "x12" / "850-oopfactory-sitestuff-p2p.edi").read_bytes()
    text = raw.decode("utf-8-sig")
    control = text.split("*")[13]
    hostile = text.replace(control, "\u0660" * len(control), 1).encode()
    client, mb = client_for(raw)
    answer = client.post("/v1/edi/x12", content=hostile, headers=MEDIA)
    assert answer.status_code == 400
    assert "ISA13" in answer.text
    assert events(mb) == []
