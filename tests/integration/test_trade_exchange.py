"""The trade inbox and outbox: documents of one interchange appended and recorded once, the
answer kept for resends, answers to our orders under the order's correlation id, outbound
control numbers allocated once and reused by a retry."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Connection, Engine, func, select

from medbridge.bus.sql import SqlBus
from medbridge.canonical.partners import TradingPartner
from medbridge.canonical.trade import (
    AcknowledgementDocument,
    AckStatus,
    OrderDocument,
    OrderLine,
    PartnerItem,
)
from medbridge.flows.trade import (
    Answer,
    ChannelError,
    ReceivedDocument,
    SendReceipt,
    TradeInbox,
    TradeOutbox,
    event_type,
)
from medbridge.store import trade as store
from medbridge.store.tables import bus_events, messages, trade_control_numbers

pytestmark = pytest.mark.db

ACME = TradingPartner(code="ACME", x12_id="ACMEEDI")
ORDER = OrderDocument(
    order_number="PO-7",
    order_date=date(2026, 11, 1),
    lines=(
        OrderLine(
            line_number=1,
            item=PartnerItem(supplier_part="GZ-10"),
            quantity=Decimal(4),
            unit="BX",
            unit_price=Decimal("3.10"),
        ),
    ),
)
ACK = AcknowledgementDocument(
    acknowledgement_id="A-1",
    order_number="PO-7",
    acknowledged_on=date(2026, 11, 2),
    status=AckStatus.ACCEPTED,
)


def events(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(bus_events.c.type, bus_events.c.correlation_id).order_by(bus_events.c.seq)
        )
        return [(r.type, r.correlation_id) for r in rows]


class Recording:
    """A channel that records what it was asked to send (and can fail once)."""

    def __init__(self, fail_first: bool = False) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail_first = fail_first

    def send(
        self, document: OrderDocument, *, partner: TradingPartner, control: int
    ) -> SendReceipt:
        self.sent.append((document.order_number, control))
        if self.fail_first:
            self.fail_first = False
            raise ChannelError("partner unreachable")
        return SendReceipt("x12", f"{control:09d}")


def test_an_interchange_is_applied_and_answered_once(engine: Engine) -> None:
    inbox = TradeInbox(engine, SqlBus(engine, partitions=2))
    answers = 0

    def answer(conn: Connection) -> Answer:
        nonlocal answers
        answers += 1
        return Answer(200, f"997 #{store.next_control_number(conn, 'ACME', 'isa')}")

    received = [ReceivedDocument(ACK, "x12:ZZ:ACMEEDI:1:1:0001")]
    first = inbox.accept(
        partner=ACME,
        wire_format="x12",
        interchange_key="x12:ZZ:ACMEEDI:1",
        documents=received,
        answer=answer,
    )
    again = inbox.answered("x12:ZZ:ACMEEDI:1")
    resent = inbox.accept(
        partner=ACME,
        wire_format="x12",
        interchange_key="x12:ZZ:ACMEEDI:1",
        documents=received,
        answer=answer,
    )
    assert first == Answer(200, "997 #1")
    assert again == Answer(200, "997 #1", duplicate=True)
    assert resent == Answer(200, "997 #1", duplicate=True)
    assert answers == 1, "a resend is answered from the record, no new control number"
    assert (
        [t for t, _ in events(engine)] == [event_type(ACK)] == ["trade.acknowledgement_received.v1"]
    )
    with engine.connect() as conn:
        rows = store.find_documents(conn, partner="ACME", kind="acknowledgement")
    assert len(rows) == 1
    assert AcknowledgementDocument.model_validate(rows[0].document) == ACK


def test_answers_to_our_order_share_its_correlation_id(engine: Engine) -> None:
    correlation = uuid4()
    outbox = TradeOutbox(engine, lambda partner: Recording())
    outbox.send(ORDER, partner=ACME, correlation_id=correlation)
    inbox = TradeInbox(engine, SqlBus(engine, partitions=2))
    inbox.accept(
        partner=ACME,
        wire_format="x12",
        interchange_key="k",
        answer=lambda c: Answer(200, ""),
        documents=[ReceivedDocument(ACK, "k:1")],
    )
    [(_, correlation_id)] = events(engine)
    assert UUID(correlation_id) == correlation
    with engine.connect() as conn:
        [row] = store.find_documents(conn, kind="acknowledgement")
    assert UUID(row.correlation_id) == correlation


def test_an_order_is_sent_once_and_a_retry_reuses_its_control_number(engine: Engine) -> None:
    channel = Recording(fail_first=True)
    outbox = TradeOutbox(engine, lambda partner: channel)
    with pytest.raises(ChannelError):
        outbox.send(ORDER, partner=ACME, correlation_id=None)
    receipt = outbox.send(ORDER, partner=ACME, correlation_id=None)
    again = outbox.send(ORDER, partner=ACME, correlation_id=None)
    assert channel.sent == [("PO-7", 1), ("PO-7", 1)], "the retry carries the same control"
    assert receipt.control == again.control == "000000001"
    assert again.detail == "sent before"
    other = ORDER.model_copy(update={"order_number": "PO-8"})
    outbox.send(other, partner=ACME, correlation_id=None)
    assert channel.sent[-1] == ("PO-8", 2)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(bus_events)).scalar() == 0
        assert len(store.find_documents(conn, direction="out")) == 2


def test_control_numbers_wrap_after_nine_digits(engine: Engine) -> None:
    with engine.begin() as conn:
        assert store.next_control_number(conn, "ACME", "isa") == 1
        assert store.next_control_number(conn, "ACME", "isa") == 2
        assert store.next_control_number(conn, "OTHER", "isa") == 1
        conn.execute(
            trade_control_numbers.update()
            .values(last=store.CONTROL_MAX)
            .where(trade_control_numbers.c.partner == "ACME")
        )
        assert store.next_control_number(conn, "ACME", "isa") == 1


class Refusing:
    """A channel whose partner refuses the order for good."""

    def send(
        self, document: OrderDocument, *, partner: TradingPartner, control: int
    ) -> SendReceipt:
        raise ChannelError("400: unknown buyer", permanent=True)


def test_an_order_sent_is_an_outbound_message_once_it_ends(engine: Engine) -> None:
    """The message browser's outbound orders: a transient failure records nothing (it is
    retried), the delivery records one ``sent`` message with its control number, a refusal for
    good one ``failed`` message with the reason."""
    channel = Recording(fail_first=True)
    outbox = TradeOutbox(engine, lambda partner: channel)
    with pytest.raises(ChannelError):
        outbox.send(ORDER, partner=ACME, correlation_id=None)
    outbox.send(ORDER, partner=ACME, correlation_id=None)
    outbox.send(ORDER, partner=ACME, correlation_id=None)  # sent before: no second message
    refused = ORDER.model_copy(update={"order_number": "PO-9"})
    with pytest.raises(ChannelError):
        TradeOutbox(engine, lambda partner: Refusing()).send(
            refused, partner=ACME, correlation_id=None
        )
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                messages.c.direction,
                messages.c.business_key,
                messages.c.status,
                messages.c.control_id,
                messages.c.error,
                messages.c.correlation_id,
            ).order_by(messages.c.received_at)
        ).all()
    assert [(r.direction, r.business_key, r.status) for r in rows] == [
        ("out", "PO-7", "sent"),
        ("out", "PO-9", "failed"),
    ]
    assert rows[0].control_id == "000000001"
    assert rows[0].correlation_id is not None  # its trace: the order's correlation
    assert rows[1].error == "400: unknown buyer"
