"""X12 interchanges, cXML requests and ERP calls in the message store: an accepted interchange is
recorded with its 997 in the transaction of its documents, a resend as a duplicate with the
first 997, a refusal with its reason; cXML likewise with its Response; each ERP posting
that ends as an outbound message, acknowledged with the ERP's move or failed with why."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select
from tests.ledger_support import record_entries

from medbridge.app import MedBridge
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.messages import MessageFilter
from medbridge.canonical.partners import OwnIdentity, TradingPartner
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.flows.messages import MessageBrowser
from medbridge.flows.workflows import ReceiptRefused, submit_receipt
from medbridge.store.tables import trade_interchanges
from paths import SAMPLES

pytestmark = pytest.mark.db

SAMPLE = SAMPLES / "x12" / "856-oopfactory-vics-sopi.edi"


def partner_of(raw: bytes) -> tuple[TradingPartner, OwnIdentity]:
    text = raw.decode("utf-8-sig")
    isa = text[text.index("ISA") :].split(text[text.index("ISA") + 3])
    return (
        TradingPartner(code="SUP", x12_qualifier=isa[5], x12_id=isa[6].strip()),
        OwnIdentity(x12_qualifier=isa[7], x12_id=isa[8].strip()[:15]),
    )


def test_x12_interchanges_are_recorded_with_their_997(medbridge: MedBridge) -> None:
    raw = SAMPLE.read_bytes()
    partner, own = partner_of(raw)
    settings = medbridge.settings.model_copy(
        update={"partners": {"SUP": partner}, "own_identity": own}
    )
    mb = MedBridge.build(settings)
    exchange = mb.x12_exchange()
    first = exchange.receive(raw)
    again = exchange.receive(raw)
    refused = exchange.receive(b"ISA*not an envelope~")
    assert first.status == 200
    assert again.duplicate
    assert refused.status == 400

    browser = MessageBrowser(mb.engine)
    found = browser.search(MessageFilter(protocol="x12")).items
    assert [m.status for m in found] == ["refused", "duplicate", "applied"]
    applied, duplicate = found[2], found[1]
    assert applied.sender == "SUP"
    assert applied.message_type == "856"
    assert applied.event_count >= 1
    assert applied.correlation_id is not None
    with mb.engine.connect() as conn:
        [interchange] = conn.execute(select(trade_interchanges)).all()
    assert applied.idempotency_key == interchange.key
    assert applied.control_id
    detail = browser.get(applied.id)
    assert detail is not None
    assert detail.ack == first.body
    assert detail.ack.startswith("ISA")
    assert detail.events
    assert detail.raw == raw.decode("utf-8")
    assert browser.get(duplicate.id).ack == first.body  # type: ignore[union-attr]
    assert found[0].error is not None
    assert "ISA" in found[0].error


def test_a_refused_cxml_request_is_recorded(medbridge: MedBridge) -> None:
    body = (
        b'<?xml version="1.0"?><cXML payloadID="p-1@x" timestamp="2026-11-20T10:00:00Z">'
        b"<Header><From><Credential domain='NetworkId'><Identity>NOPE</Identity></Credential>"
        b"</From><To><Credential domain='NetworkId'><Identity>MB</Identity></Credential></To>"
        b"<Sender><Credential domain='NetworkId'><Identity>NOPE</Identity>"
        b"<SharedSecret>x</SharedSecret></Credential><UserAgent>t</UserAgent></Sender></Header>"
        b"<Request><InvoiceDetailRequest/></Request></cXML>"
    )
    answer = medbridge.cxml_exchange().receive(body)
    assert answer.status >= 400
    [row] = MessageBrowser(medbridge.engine).search(MessageFilter(protocol="cxml")).items
    assert row.status == "refused"
    assert row.error


def test_erp_calls_are_outbound_messages(medbridge: MedBridge) -> None:
    lines = (
        JournalLine(account="5100-H1", debit=Decimal(5), facility="H1"),
        JournalLine(account="1300-H1", credit=Decimal(5), facility="H1"),
    )
    good = JournalEntry(
        entry_id="JE-1",
        posting_date=date(2026, 11, 20),
        description="dispense",
        source_event_id="event-1",
        correlation_id="corr-1",
        lines=lines,
    )
    bad = good.model_copy(
        update={
            "entry_id": "JE-2",
            "source_event_id": "event-2",
            "lines": tuple(replace_account(line) for line in lines),
        }
    )
    with medbridge.engine.begin() as conn:
        record_entries(conn, [good, bad])
    erp = FakeErp(accounts={"5100-H1", "1300-H1"})
    ErpPosting(medbridge.engine, erp, ErpPostingPolicy(rate_limit=1000.0)).drain(timeout=10)

    browser = MessageBrowser(medbridge.engine)
    found = {m.control_id: m for m in browser.search(MessageFilter(direction="out")).items}
    assert found["JE-1"].status == "acknowledged"
    assert found["JE-1"].protocol == "erp"
    assert found["JE-1"].facility == "H1"
    assert found["JE-1"].business_key == "event-1"
    assert found["JE-2"].status == "failed"
    assert found["JE-2"].error
    detail = browser.get(found["JE-1"].id)
    assert detail is not None
    assert detail.ack is not None
    assert "tryton move" in detail.ack
    assert detail.raw is not None
    assert '"entry_id":"JE-1"' in detail.raw


def replace_account(line: JournalLine) -> JournalLine:
    if line.account == "5100-H1":
        return line.model_copy(update={"account": "9999-H1"})
    return line


def test_a_dock_receipt_is_recorded_even_when_refused(medbridge: MedBridge) -> None:
    with pytest.raises(ReceiptRefused):
        submit_receipt(
            medbridge.engine,
            "PO-NONE",
            shipment_id="SH-1",
            lines=[{"line": 1, "quantity": "5"}],
            received_by="dock-1",
        )
    [row] = MessageBrowser(medbridge.engine).search(MessageFilter(protocol="scan")).items
    assert (row.status, row.control_id, row.business_key, row.sender) == (
        "refused",
        "SH-1",
        "PO-NONE",
        "dock-1",
    )
    assert row.error is not None
    assert "no purchase order" in row.error
