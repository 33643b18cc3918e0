"""Every canonical field survives cXML: ``parse(render(doc)).document == doc`` for generated
orders, acknowledgements, ship notices and invoices (text with markup characters, quotes and
non-ASCII; decimals with up to 4 places), and the envelope survives as well."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medbridge.canonical.trade import (
    AcknowledgementDocument,
    InvoiceDocument,
    OrderDocument,
    ShipNoticeDocument,
)
from medbridge.connectors.cxml import CXML_VERSION, CxmlEnvelope, parse, render
from trade_strategies import trade_documents

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_XML_UNSAFE = {chr(c) for c in range(0x20)} | {"\x7f", "\ufffe", "\uffff"}
_chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="".join(_XML_UNSAFE))
_markup = st.sampled_from(["<", ">", "&", '"', "'", "&amp;", "]]>", "é", "\u2019", "日本", "𝄞"])


def _text(max_size: int) -> st.SearchStrategy[str]:
    pieces = st.lists(st.one_of(_markup, st.text(_chars, min_size=1, max_size=8)), min_size=1)
    return pieces.map("".join).map(lambda s: s.strip()[:max_size].strip()).filter(bool)


partner_id = _text(35)
trade_text = _text(80)
trade = trade_documents(partner_id=partner_id, text=trade_text)

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
@given(trade.orders, envelopes)
def test_order_roundtrip(doc: OrderDocument, envelope: CxmlEnvelope) -> None:
    _roundtrip(doc, envelope)


@SETTINGS
@given(trade.acknowledgements, envelopes)
def test_acknowledgement_roundtrip(doc: AcknowledgementDocument, envelope: CxmlEnvelope) -> None:
    _roundtrip(doc, envelope)


@settings(SETTINGS, max_examples=100)  # the largest documents: kept under ~10 s
@given(trade.ship_notices, envelopes)
def test_ship_notice_roundtrip(doc: ShipNoticeDocument, envelope: CxmlEnvelope) -> None:
    _roundtrip(doc, envelope)


@SETTINGS
@given(trade.invoices, envelopes)
def test_invoice_roundtrip(doc: InvoiceDocument, envelope: CxmlEnvelope) -> None:
    _roundtrip(doc, envelope)
