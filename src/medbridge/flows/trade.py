"""Trade documents in and out, whatever the wire (X12, cXML): exactly once, with one answer.

Inbound (``TradeInbox.accept``): the documents of ONE interchange (an X12 interchange, a cXML
request) are appended to the bus as ``trade.<kind>_received.v1`` (one all-or-nothing append;
each document keyed by its wire identity: sender + ISA13 + GS06 + ST02, or the cXML payloadID),
recorded in ``trade_documents``, and the answer given (the 997, the cXML Response) recorded
with the interchange. A resent interchange is answered with the recorded answer and changes
nothing. A crash between the append and the record is healed by the partner's resend: the
append deduplicates, the record is written then.

Every interchange received is also a message of the message store (``canonical.messages``):
the caller's record is written in the recording transaction (applied; refused when the answer
is 4xx), or alone for what is answered without one (a resend: duplicate; a refusal before
anything is stored), with the answer given as its acknowledgement (``TradeInbox.record``).

A document answering one of OUR orders (acknowledgement, ship notice, invoice) travels under
the order's correlation id, so that the whole procure-to-pay chain shares one id.

Outbound (``TradeOutbox.send``): an order is recorded once (key ``out:<partner>:<kind>:<no>``)
under its correlation id, then handed to the partner's ``SupplierChannel``; a second send of
the same order returns the first receipt and sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from sqlalchemy import Connection, Engine

from medbridge.bus.port import Bus
from medbridge.canonical.events import EventEnvelope, new_event_id
from medbridge.canonical.messages import Direction, MessageRecord, MessageStatus
from medbridge.canonical.partners import TradingPartner
from medbridge.canonical.trade import (
    KIND_OF,
    AcknowledgementDocument,
    InvoiceDocument,
    OrderDocument,
    ShipNoticeDocument,
    TradeDocument,
    document_number,
)
from medbridge.observability import tracing
from medbridge.observability.logging import get_logger
from medbridge.store import messages as message_store
from medbridge.store import procurement as procurement_store
from medbridge.store import trade as store

log = get_logger(__name__)


def event_type(document: TradeDocument) -> str:
    return f"trade.{KIND_OF[type(document)].value}_received.v1"


@dataclass(frozen=True)
class ReceivedDocument:
    document: TradeDocument
    idempotency_key: str
    """The document's wire identity, e.g. ``x12:ZZ:ACME:000000001:1:0001``."""


@dataclass(frozen=True)
class Answer:
    """What to answer the partner: an HTTP status and the body (997, cXML Response)."""

    status: int
    body: str
    duplicate: bool = False


def orders_answered(document: TradeDocument) -> tuple[str, ...]:
    """The numbers of our purchase orders a document answers (empty for an order)."""
    if isinstance(document, AcknowledgementDocument):
        return (document.order_number,)
    if isinstance(document, ShipNoticeDocument):
        return tuple(order.order_number for order in document.orders)
    if isinstance(document, InvoiceDocument):
        return document.order_numbers
    return ()


class TradeInbox:
    def __init__(self, engine: Engine, bus: Bus) -> None:
        self.engine, self.bus = engine, bus

    def answered(self, interchange_key: str) -> Answer | None:
        """The answer already given to this interchange, if it was received before."""
        with self.engine.connect() as conn:
            stored = store.answer_of(conn, interchange_key)
        return Answer(stored.status, stored.answer, duplicate=True) if stored else None

    def accept(
        self,
        *,
        partner: TradingPartner,
        wire_format: str,
        interchange_key: str,
        documents: Sequence[ReceivedDocument],
        answer: Callable[[Connection], Answer],
        message: MessageRecord | None = None,
    ) -> Answer:
        """Append and record ``documents``; record and return ``answer(conn)``, computed in
        the recording transaction (so that control numbers it allocates are kept only if the
        answer is recorded). An interchange received before gets its first answer back."""
        with self.engine.connect() as conn:
            correlations = [self._correlation(conn, partner.code, d.document) for d in documents]
        traceparent, tracestate = tracing.headers_of()  # the request's span, when tracing is on
        envelopes = [
            EventEnvelope[TradeDocument](
                type=event_type(d.document),
                source=f"{wire_format}:{partner.code}",
                subject=f"{partner.code}:{document_number(d.document)}",
                correlation_id=correlation,
                idempotency_key=d.idempotency_key,
                traceparent=traceparent,
                tracestate=tracestate,
                data=d.document,
            )
            for d, correlation in zip(documents, correlations, strict=True)
        ]
        results = self.bus.append(envelopes) if envelopes else []
        with self.engine.begin() as conn:
            stored = store.answer_of(conn, interchange_key)
            if stored is not None:
                return Answer(stored.status, stored.answer, duplicate=True)
            store.record_documents(
                conn,
                [
                    {
                        "idempotency_key": d.idempotency_key,
                        "interchange": interchange_key,
                        "partner": partner.code,
                        "direction": "in",
                        "wire_format": wire_format,
                        "kind": KIND_OF[type(d.document)].value,
                        "number": document_number(d.document),
                        "document": d.document.model_dump(mode="json"),
                        "event_id": str(r.event_id),
                        "correlation_id": str(r.correlation_id),
                    }
                    for d, r in zip(documents, results, strict=True)
                ],
            )
            given = answer(conn)
            store.record_interchange(
                conn,
                key=interchange_key,
                partner=partner.code,
                wire_format=wire_format,
                direction="in",
                status=given.status,
                answer=given.body,
            )
            if message is not None:
                message.sender = partner.code
                message.event_count = len(results)
                message.idempotency_key = interchange_key
                if results:
                    message.correlation_id = str(results[0].correlation_id)
                if documents and not message.business_key:
                    message.business_key = document_number(documents[0].document)
                message.ack = given.body
                message.settle(_status(given))
                message_store.write(conn, [message])
        log.info(
            "trade.received",
            partner=partner.code,
            wire_format=wire_format,
            interchange=interchange_key,
            documents=len(documents),
            status=given.status,
        )
        return given

    def record(self, message: MessageRecord, given: Answer) -> None:
        """Write ``message`` answered ``given`` without an accept (a resend, a refusal)."""
        message.ack = message.ack if message.ack is not None else given.body
        if message.status is None:
            message.settle(MessageStatus.DUPLICATE if given.duplicate else _status(given))
        if message.status is MessageStatus.REFUSED and message.error is None:
            message.error = given.body[:2000]
        message_store.MessageRecorder(self.engine).write([message])

    @staticmethod
    def _correlation(conn: Connection, partner: str, document: TradeDocument) -> UUID | None:
        for number in orders_answered(document):
            sent = store.find_documents(
                conn, partner=partner, kind="order", number=number, direction="out", limit=1
            )
            if sent:
                return UUID(sent[0].correlation_id)
        return None


def _status(given: Answer) -> MessageStatus:
    return MessageStatus.REFUSED if given.status >= 400 else MessageStatus.APPLIED


# --- outbound -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendReceipt:
    """What a channel reports after handing a document to the partner."""

    wire_format: str
    control: str
    """The wire identity of what was sent (``ISA13/GS06/ST02``, the cXML payloadID)."""
    detail: str = ""


class SupplierChannel(Protocol):
    """The port every way of sending a document to a supplier implements (X12 into the
    partner's folder, cXML over HTTP, the supplier simulator).

    ``send`` renders ``document`` with ``control`` as its wire identity (X12 ISA13 and GS06,
    the number in the cXML payloadID) and returns once the partner has it (written, or
    answered 2xx). A retry after a failure passes the same ``control``, so a partner that did
    get the first attempt sees a duplicate it can recognise. It raises ``ChannelError`` when
    the document could not be delivered."""

    def send(
        self, document: OrderDocument, *, partner: TradingPartner, control: int
    ) -> SendReceipt: ...


class ChannelError(Exception):
    """A document could not be delivered to the partner (transient unless ``permanent``)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.permanent = reason, permanent


PENDING = 0
"""``trade_interchanges.status`` of an outbound document allocated but not yet delivered."""


class TradeOutbox:
    def __init__(
        self, engine: Engine, channels: Callable[[TradingPartner], SupplierChannel]
    ) -> None:
        self.engine, self.channels = engine, channels

    def send(
        self, document: OrderDocument, *, partner: TradingPartner, correlation_id: UUID | None
    ) -> SendReceipt:
        """Send ``document`` once. Its control number is allocated and recorded before the
        send (outside any transaction held over the network); a retry after a failure or a
        crash reuses it; once delivered, further sends return the first receipt."""
        key = f"out:{partner.code}:order:{document.order_number}"
        with self.engine.begin() as conn:
            sent = store.answer_of(conn, key)
            if sent is not None and sent.status != PENDING:
                return SendReceipt(partner.wire_format.value, sent.answer, "sent before")
            if sent is not None:
                control = int(sent.answer)
            else:
                control = store.next_control_number(conn, partner.code, "interchange")
                store.record_documents(
                    conn,
                    [
                        {
                            "idempotency_key": key,
                            "interchange": key,
                            "partner": partner.code,
                            "direction": "out",
                            "wire_format": partner.wire_format.value,
                            "kind": "order",
                            "number": document.order_number,
                            "document": document.model_dump(mode="json"),
                            "event_id": None,
                            "correlation_id": str(correlation_id or new_event_id()),
                        }
                    ],
                )
                store.record_interchange(
                    conn,
                    key=key,
                    partner=partner.code,
                    wire_format=partner.wire_format.value,
                    direction="out",
                    status=PENDING,
                    answer=str(control),
                )
        try:
            receipt = self.channels(partner).send(document, partner=partner, control=control)
        except ChannelError as error:
            if error.permanent:  # a transient one is retried: recorded once it ends
                with self.engine.begin() as conn:
                    message_store.write(
                        conn,
                        [self._sent(conn, document, partner, key, MessageStatus.FAILED, error)],
                    )
            raise
        with self.engine.begin() as conn:
            store.complete_interchange(conn, key, status=200, answer=receipt.control)
            message_store.write(
                conn, [self._sent(conn, document, partner, key, MessageStatus.SENT, receipt)]
            )
        log.info(
            "trade.sent",
            partner=partner.code,
            order=document.order_number,
            wire_format=receipt.wire_format,
            control=receipt.control,
        )
        return receipt

    @staticmethod
    def _sent(
        conn: Connection,
        document: OrderDocument,
        partner: TradingPartner,
        key: str,
        status: MessageStatus,
        outcome: SendReceipt | ChannelError,
    ) -> MessageRecord:
        """The order as an outbound message of the message store (sent, with the partner's
        control number; or failed for good, with the reason). Its raw form is the canonical
        order the channel rendered in the partner's format (an 850, a cXML OrderRequest)."""
        order = procurement_store.order(conn, document.order_number) or {}
        documents = store.find_documents(
            conn,
            partner=partner.code,
            kind="order",
            number=document.order_number,
            direction="out",
            limit=1,
        )
        return MessageRecord(
            protocol=partner.wire_format.value,
            connector=f"{partner.wire_format.value}-out",
            raw=document.model_dump_json(),
            direction=Direction.OUT,
            sender=partner.code,
            message_type="850" if partner.wire_format.value == "x12" else "OrderRequest",
            control_id=outcome.control if isinstance(outcome, SendReceipt) else key,
            business_key=document.order_number,
            facility=order.get("facility"),
            idempotency_key=key,
            correlation_id=documents[0].correlation_id if documents else None,
            media_type="application/json",
            status=status,
            ack=f"delivered: control {outcome.control}"
            if isinstance(outcome, SendReceipt)
            else None,
            error=outcome.reason if isinstance(outcome, ChannelError) else None,
        )


__all__ = [
    "Answer",
    "ChannelError",
    "ReceivedDocument",
    "SendReceipt",
    "SupplierChannel",
    "TradeInbox",
    "TradeOutbox",
    "event_type",
]
