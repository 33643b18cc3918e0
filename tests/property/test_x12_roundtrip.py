"""X12 round trip: for every canonical trade document, ``parse(render(doc)) == doc``.

Text fields draw from an alphabet rich in X12 delimiter candidates (``* ~ ^ : | > ! \\ '``)
plus non-ASCII letters, so the renderer's delimiter choice is exercised; amounts have up to 4
decimal places.
"""

from __future__ import annotations

from datetime import date, time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medbridge.canonical.trade import (
    AcknowledgementDocument,
    CatalogDocument,
    InvoiceDocument,
    OrderDocument,
    ShipNoticeDocument,
    TradeDocument,
)
from medbridge.connectors.x12 import Envelope, parse_interchange, render
from trade_strategies import trade_documents

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENVELOPE = Envelope(
    sender_qualifier="ZZ",
    sender_id="MEDBRIDGE",
    receiver_qualifier="01",
    receiver_id="123456789",
    interchange_control=42,
    group_control=7,
    set_control=1,
    sent_on=date(2026, 1, 2),
    sent_at=time(9, 30),
)

AWKWARD = "*~^:|>!\\'`{}-/ .,#&"
_chars = st.sampled_from(list(AWKWARD) + list("AZaz09éßЖ漢…"))


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_chars, min_size=1, max_size=max_size).map(str.strip).filter(bool)


trade = trade_documents(partner_id=_text(35), text=_text(80))


def round_trip(document: TradeDocument) -> TradeDocument:
    text = render([document], ENVELOPE)
    parsed = parse_interchange(text.encode("utf-8"))
    assert parsed.errors == ()
    (result,) = parsed.documents
    return result


@SETTINGS
@given(trade.orders)
def test_order_round_trip(document: OrderDocument) -> None:
    assert round_trip(document) == document


@SETTINGS
@given(trade.acknowledgements)
def test_acknowledgement_round_trip(document: AcknowledgementDocument) -> None:
    assert round_trip(document) == document


@SETTINGS
@given(trade.ship_notices)
def test_ship_notice_round_trip(document: ShipNoticeDocument) -> None:
    assert round_trip(document) == document


@SETTINGS
@given(trade.invoices)
def test_invoice_round_trip(document: InvoiceDocument) -> None:
    assert round_trip(document) == document


@SETTINGS
@given(trade.catalogs)
def test_catalog_round_trip(document: CatalogDocument) -> None:
    assert round_trip(document) == document


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(trade.orders, trade.invoices, trade.ship_notices), min_size=1, max_size=4)
)
def test_many_documents_in_one_interchange(documents: list[TradeDocument]) -> None:
    """One group per functional id, one set per document; order kept within a group."""
    parsed = parse_interchange(render(documents, ENVELOPE))
    assert parsed.errors == ()
    by_kind: dict[type, list[TradeDocument]] = {}
    for document in documents:
        by_kind.setdefault(type(document), []).append(document)
    got: dict[type, list[TradeDocument]] = {}
    for document in parsed.documents:
        got.setdefault(type(document), []).append(document)
    assert got == by_kind
    assert len(parsed.groups) == len(by_kind)
