"""A simulated supplier: a trading partner on the far side of the wire, for tests and the demo.

It is a ``SupplierChannel`` like the real ones (X12 into a folder, cXML over HTTP): MedBridge
sends it orders exactly as it sends them to a real supplier. It reads each order off the wire
the partner's way (the 850 interchange or the OrderRequest MedBridge renders, parsed by the
same connectors, the cXML credential checked), decides its answers with
``supplier_behaviour.answer`` (faults: backorders, substitutions, price changes, partial
shipments, rejections, over-invoicing, duplicate invoices), and sends them back over the same
wire: 855/856/810 interchanges or Confirmation/ShipNotice/InvoiceDetail requests, each
answered by MedBridge's real inbound path (``deliver``: the exchanges in process, or a
client of ``/v1/edi/x12`` and ``/cxml``). Answers are due ``delay`` seconds apart;
``pump()`` sends the ones due (``run`` pumps in a thread). OrderRequests reach it through
``handle_order_request``, which checks the cXML credential as the supplier would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from medbridge.canonical.partners import OwnIdentity, TradingPartner, WireFormat
from medbridge.canonical.trade import OrderDocument, TradeDocument, document_number
from medbridge.connectors.cxml import (
    CxmlEnvelope,
    CxmlError,
    authenticate,
    render_error,
    render_response,
)
from medbridge.connectors.cxml import parse as parse_cxml
from medbridge.connectors.cxml import render as render_cxml
from medbridge.connectors.x12 import Envelope, parse_interchange
from medbridge.connectors.x12 import render as render_x12
from medbridge.demo.supplier_behaviour import Faults, answer
from medbridge.flows.cxml_exchange import order_request
from medbridge.flows.trade import Answer, ChannelError, SendReceipt
from medbridge.flows.x12_exchange import order_interchange
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

Deliver = Callable[[str, bytes], Answer]
"""Hands one wire document (``"x12"`` or ``"cxml"``, its bytes) to MedBridge; its answer."""


@dataclass(frozen=True)
class Delivery:
    due: float
    partner: TradingPartner
    document: TradeDocument


@dataclass
class SimulatedSupplier:
    own: OwnIdentity
    """MedBridge's identity: whom the supplier addresses its answers to."""
    deliver: Deliver
    faults: Faults = field(default_factory=Faults)
    delay: float = 0.0
    shared_secret: str | None = None
    """The secret the supplier expects on OrderRequests; None: the partner's configured one."""
    clock: Callable[[], float] = time.monotonic
    orders: list[OrderDocument] = field(default_factory=list)
    """Every order taken (once per wire identity), as read off the wire."""
    received: list[tuple[str, OrderDocument]] = field(default_factory=list)
    """(wire identity, order) of every delivery, resends included."""
    answers: list[tuple[str, Answer]] = field(default_factory=list)
    """(document number, MedBridge's answer) for every document sent back."""
    _pending: list[Delivery] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _control: int = field(default_factory=lambda: int(time.time()) % 900_000_000)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the SupplierChannel port -------------------------------------------------------

    def send(
        self, document: OrderDocument, *, partner: TradingPartner, control: int
    ) -> SendReceipt:
        if partner.wire_format is WireFormat.X12:
            wire = order_interchange(document, partner=partner, own=self.own, control=control)
            parsed = parse_interchange(wire)
            if parsed.errors or len(parsed.documents) != 1:
                raise ChannelError(f"the supplier cannot read the 850: {parsed.errors}")
            received = parsed.documents[0]
            identity = f"{control:09d}"
        else:
            identity, body = order_request(document, partner=partner, own=self.own, control=control)
            reply = self.handle_order_request(body, partner=partner)
            if reply.status != 200:
                raise ChannelError(reply.body, permanent=True)
            return SendReceipt(WireFormat.CXML.value, identity, "200 OK")
        if not isinstance(received, OrderDocument):
            raise ChannelError("the supplier received something other than an order")
        self._take(received, partner, identity)
        return SendReceipt(WireFormat.X12.value, identity, "written")

    def handle_order_request(self, body: bytes, *, partner: TradingPartner) -> Answer:
        """The supplier's cXML endpoint: an OrderRequest in, a cXML Response out."""
        now = datetime.now(UTC)
        try:
            message = parse_cxml(body)
            configured = partner.cxml_shared_secret
            expected = self.shared_secret or (
                configured.get_secret_value() if configured is not None else ""
            )
            authenticate(message, self.own.cxml_domain, self.own.cxml_identity, expected)
        except CxmlError as error:
            return Answer(
                error.status, render_error(error, payload_id="sim", timestamp=now).decode()
            )
        if not isinstance(message.document, OrderDocument):
            return Answer(450, render_response(450, payload_id="sim", timestamp=now).decode())
        self._take(message.document, partner, message.envelope.payload_id)
        return Answer(200, render_response(200, payload_id="sim", timestamp=now).decode())

    def take(self, order: OrderDocument, partner: TradingPartner, identity: str) -> None:
        """An order read off the wire elsewhere (e.g. an 850 file picked up from the partner's
        folder), ``identity`` its wire identity (ISA13): answered once per identity."""
        self._take(order, partner, identity)

    def _take(
        self,
        order: OrderDocument,
        partner: TradingPartner,
        identity: str,
        delivered: Callable[[TradeDocument], bool] | None = None,
    ) -> None:
        with self._lock:
            self.received.append((identity, order))
            if identity in self._seen:  # a resend of what we already have: answered once
                return
            self._seen.add(identity)
            self.orders.append(order)
            start = self.clock()
            due = [d for d in answer(order, self.faults) if delivered is None or not delivered(d)]
            for n, document in enumerate(due):
                self._pending.append(Delivery(start + self.delay * (n + 1), partner, document))

    def continue_after(self, control: int) -> None:
        """Number the next interchanges after ``control`` (the last one MedBridge has)."""
        with self._lock:
            self._control = max(self._control, control % 999_999_999)

    def resume(
        self,
        order: OrderDocument,
        partner: TradingPartner,
        identity: str,
        delivered: Callable[[TradeDocument], bool],
    ) -> None:
        """An order taken before a restart (the supplier's books outlive MedBridge's process):
        the answers ``delivered`` says MedBridge has not received yet are sent again, in turn.
        The answers are the same ones: they are drawn from the order number."""
        self._take(order, partner, identity, delivered)

    # --- answering ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    def pump(self, *, all_due: bool = False) -> int:
        """Send every answer that is due (or all of them); return how many were sent."""
        now = self.clock()
        with self._lock:
            due = [d for d in self._pending if all_due or d.due <= now]
            self._pending = [d for d in self._pending if d not in due]
        for delivery in due:
            self._send_back(delivery.partner, delivery.document)
        return len(due)

    def _send_back(self, partner: TradingPartner, document: TradeDocument) -> None:
        with self._lock:
            self._control = self._control % 999_999_999 + 1
            control = self._control
        now = datetime.now(UTC).replace(microsecond=0)
        if partner.wire_format is WireFormat.X12:
            assert partner.x12_id is not None
            wire = "x12"
            body = render_x12(
                [document],
                Envelope(
                    sender_qualifier=partner.x12_qualifier,
                    sender_id=partner.x12_id,
                    receiver_qualifier=self.own.x12_qualifier,
                    receiver_id=self.own.x12_id,
                    interchange_control=control,
                    group_control=control,
                    set_control=1,
                    sent_on=now.date(),
                    sent_at=now.time(),
                    usage=partner.x12_usage,
                    version=partner.x12_version,
                ),
            ).encode()
        else:
            assert partner.cxml_identity is not None
            assert partner.cxml_shared_secret is not None
            wire = "cxml"
            body = render_cxml(
                document,  # type: ignore[arg-type]  # a supplier never sends a catalog here
                envelope=CxmlEnvelope(
                    payload_id=f"{control}.{document_number(document)}@{partner.cxml_identity}",
                    timestamp=now,
                    from_domain=partner.cxml_domain,
                    from_identity=partner.cxml_identity,
                    to_domain=self.own.cxml_domain,
                    to_identity=self.own.cxml_identity,
                    sender_domain=partner.cxml_domain,
                    sender_identity=partner.cxml_identity,
                    shared_secret=partner.cxml_shared_secret.get_secret_value(),
                    user_agent="MedBridge supplier simulator",
                ),
            )
        reply = self.deliver(wire, body)
        self.answers.append((document_number(document), reply))
        if reply.status != 200:
            log.warning(
                "supplier_sim.refused", document=document_number(document), status=reply.status
            )

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.pump()
            except Exception:  # MedBridge unreachable: the answers are lost, as they would be
                log.exception("supplier_sim.pump_failed")
            stop.wait(interval)
