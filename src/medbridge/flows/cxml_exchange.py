"""cXML with trading partners: receive a request (``POST /cxml``) and answer it with a cXML
Response; send an order as an OrderRequest to the partner's cXML endpoint.

Receiving, in order (nothing is stored before the last step):

1. too large, not XML, forbidden markup (DTD subset, entities), not cXML -> the error's status
   (400/406) in a Response whose Status names the path at fault;
2. the Sender credential must be a configured partner's, with its SharedSecret -> else 401;
3. a payloadID received before from that partner -> the first Response again, no effect;
4. the request is mapped (ConfirmationRequest, ShipNoticeRequest, InvoiceDetailRequest;
   another request type -> 450) and its document appended and recorded under the key
   ``cxml:{partner}:{payloadID}``; 200 OK.

The HTTP status of the answer is the cXML status code, so that both a cXML client (which
reads the Status element) and a plain HTTP client see the outcome.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import httpx
from sqlalchemy import Connection

from medbridge.canonical.messages import MessageRecord
from medbridge.canonical.partners import OwnIdentity, PartnerDirectory, TradingPartner
from medbridge.canonical.trade import OrderDocument
from medbridge.connectors.cxml import (
    CxmlEnvelope,
    CxmlError,
    authenticate,
    parse,
    parse_envelope,
    parse_response,
    render,
    render_error,
    render_response,
)
from medbridge.flows.trade import Answer, ChannelError, ReceivedDocument, SendReceipt, TradeInbox
from medbridge.observability.logging import get_logger
from medbridge.store.messages import MAX_BODY_CHARS

log = get_logger(__name__)

WIRE = "cxml"
USER_AGENT = "MedBridge"


def payload_id(own: OwnIdentity) -> str:
    """A fresh cXML payloadID for an answer: ``<time>.<random>@<our identity>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp}.{secrets.token_hex(8)}@{own.cxml_identity}"


class CxmlExchange:
    def __init__(
        self,
        inbox: TradeInbox,
        partners: PartnerDirectory,
        own: OwnIdentity,
        *,
        max_bytes: int = 2_000_000,
    ) -> None:
        self.inbox, self.partners, self.own, self.max_bytes = inbox, partners, own, max_bytes

    def _refuse(self, error: CxmlError) -> Answer:
        log.warning("cxml.refused", code=error.code, path=error.path, reason=error.reason)
        body = render_error(error, payload_id=payload_id(self.own), timestamp=datetime.now(UTC))
        return Answer(error.status, body.decode())

    def receive(self, raw: bytes) -> Answer:
        """Receive one cXML request; recorded as a message with the Response it was
        answered (a refused one too: its sender is unknown until authenticated)."""
        return self.receive_recorded(raw)[0]

    def receive_recorded(self, raw: bytes) -> tuple[Answer, MessageRecord]:
        """``receive``, and the request's message record."""
        record = MessageRecord(
            protocol="cxml",
            connector="cxml",
            raw=raw[:MAX_BODY_CHARS].decode("utf-8", "replace"),
            media_type="text/xml",
        )
        given = self._receive(raw, record)
        if record.status is None:  # not written with the request: a resend, a refusal
            self.inbox.record(record, given)
        return given, record

    def _receive(self, raw: bytes, record: MessageRecord) -> Answer:
        try:
            envelope = parse_envelope(raw, max_bytes=self.max_bytes)
            record.control_id = envelope.payload_id[:200]
            partner = self._authenticate(envelope)
        except CxmlError as error:
            return self._refuse(error)
        record.sender = partner.code
        key = f"cxml:{partner.code}:{envelope.payload_id}"
        answered = self.inbox.answered(key)
        if answered is not None:
            return answered
        try:
            message = parse(raw, max_bytes=self.max_bytes)
        except CxmlError as error:
            return self._refuse(error)
        record.message_type = str(message.kind)

        def answer(_conn: Connection) -> Answer:
            body = render_response(
                200, payload_id=payload_id(self.own), timestamp=datetime.now(UTC)
            )
            return Answer(200, body.decode())

        return self.inbox.accept(
            partner=partner,
            wire_format=WIRE,
            interchange_key=key,
            documents=[ReceivedDocument(message.document, key)],
            answer=answer,
            message=record,
        )

    def _authenticate(self, envelope: CxmlEnvelope) -> TradingPartner:
        """The partner, or the same 401 for an unknown sender as for a wrong secret (and the
        same comparison work): the answer never tells who our partners are."""
        partner = self.partners.cxml_sender(envelope.sender_domain, envelope.sender_identity)
        secret = partner.cxml_shared_secret if partner is not None else None
        if partner is None or secret is None:
            log.warning("cxml.unknown_sender", domain=envelope.sender_domain[:64])
            authenticate(envelope, "\x00", "\x00", secrets.token_urlsafe(32))  # raises 401
            raise AssertionError("a made-up credential matched")  # pragma: no cover
        authenticate(
            envelope, partner.cxml_domain, partner.cxml_identity or "", secret.get_secret_value()
        )
        return partner


def order_request(
    document: OrderDocument, *, partner: TradingPartner, own: OwnIdentity, control: int
) -> tuple[str, bytes]:
    """The OrderRequest MedBridge sends for ``document`` and its payloadID, which is derived
    from ``control`` so that a retry carries the same one."""
    if partner.cxml_identity is None or partner.cxml_shared_secret is None:
        raise ChannelError(f"partner {partner.code} has no cXML identity", permanent=True)
    pid = f"{control:09d}.{document.order_number}@{own.cxml_identity}"
    envelope = CxmlEnvelope(
        payload_id=pid,
        timestamp=datetime.now(UTC).replace(microsecond=0),
        from_domain=own.cxml_domain,
        from_identity=own.cxml_identity,
        to_domain=partner.cxml_domain,
        to_identity=partner.cxml_identity,
        sender_domain=own.cxml_domain,
        sender_identity=own.cxml_identity,
        shared_secret=partner.cxml_shared_secret.get_secret_value(),
        user_agent=USER_AGENT,
    )
    return pid, render(document, envelope=envelope)


class CxmlHttpChannel:
    """Sends orders as cXML OrderRequests POSTed to the partner's ``cxml_url``; delivered when
    the partner answers a 2xx Status. 4xx: refused for good (permanent); else transient."""

    def __init__(self, own: OwnIdentity, *, timeout: float = 30.0) -> None:
        self.own, self.timeout = own, timeout

    def send(
        self, document: OrderDocument, *, partner: TradingPartner, control: int
    ) -> SendReceipt:
        if partner.cxml_url is None:
            raise ChannelError(f"partner {partner.code} has no cxml_url", permanent=True)
        pid, body = order_request(document, partner=partner, own=self.own, control=control)
        try:
            reply = httpx.post(
                partner.cxml_url,
                content=body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=self.timeout,
            )
            response = parse_response(reply.content)
        except httpx.HTTPError as error:
            raise ChannelError(f"{partner.cxml_url}: {error}") from error
        except CxmlError as error:
            raise ChannelError(f"{partner.cxml_url} answered no cXML Response: {error}") from error
        if 200 <= response.status_code < 300:
            return SendReceipt(WIRE, pid, f"{response.status_code} {response.status_text}")
        reason = f"{response.status_code} {response.status_text}: {response.message}"
        raise ChannelError(reason, permanent=400 <= response.status_code < 500)
