"""X12 with trading partners: receive an interchange (HTTP body or a partner's file) and answer
it with its 997; send an order as an 850 into the partner's outbound folder.

Receiving, in order (nothing is stored before the last step):

1. too large, not decodable, or an unusable envelope (bad ISA, ISA13 != IEA02 ...) -> 400 with
   the reason naming the segment and element (no 997 can be built without an envelope);
2. the sender (ISA05/ISA06) must be a configured partner -> else 403; the receiver (ISA07/
   ISA08) must be MedBridge -> else 400 naming ISA08;
3. an interchange received before (same sender and ISA13) -> its first 997 again, no effect;
4. every accepted transaction set becomes a canonical document on the bus (key
   ``x12:{ISA05}:{ISA06}:{ISA13}:{GS06}:{ST02}``), and the 997 (one per group: AK5/AK9 say
   which sets were rejected and why) is recorded and answered: 200 when at least one set was
   accepted, 400 when none was. An interchange of 997s only (a partner acknowledging what we
   sent) is recorded and answered 200 with no body: a 997 is never acknowledged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from medbridge.canonical.messages import MessageRecord
from medbridge.canonical.partners import OwnIdentity, PartnerDirectory, TradingPartner
from medbridge.canonical.trade import OrderDocument
from medbridge.connectors.x12 import (
    Envelope,
    ParsedInterchange,
    X12Error,
    functional_ack,
    parse_interchange,
    render,
)
from medbridge.flows.partner_folders import write_atomically
from medbridge.flows.trade import Answer, ChannelError, ReceivedDocument, SendReceipt, TradeInbox
from medbridge.observability.logging import get_logger
from medbridge.store import trade as store
from medbridge.store.messages import MAX_BODY_CHARS

log = get_logger(__name__)

WIRE = "x12"


def interchange_key(parsed: ParsedInterchange) -> str:
    i = parsed.interchange
    return f"x12:{i.sender_qualifier}:{i.sender_id}:{i.control_number}"


class X12Exchange:
    def __init__(
        self,
        inbox: TradeInbox,
        partners: PartnerDirectory,
        own: OwnIdentity,
        *,
        max_bytes: int = 5_000_000,
    ) -> None:
        self.inbox, self.partners, self.own, self.max_bytes = inbox, partners, own, max_bytes

    def receive(
        self, raw: bytes, *, partner: TradingPartner | None = None, client: str | None = None
    ) -> Answer:
        """Receive one interchange. ``partner``: the partner whose folder the file came from
        (the ISA sender must then be that partner). ``client``: the API client that posted it
        (a partner bound to another client refuses it). Recorded as a message (``x12``; from
        a folder, connector ``x12-folder``), with the 997 or the refusal it was answered."""
        return self.receive_recorded(raw, partner=partner, client=client)[0]

    def receive_recorded(
        self, raw: bytes, *, partner: TradingPartner | None = None, client: str | None = None
    ) -> tuple[Answer, MessageRecord]:
        """``receive``, and the interchange's message record."""
        record = MessageRecord(
            protocol="x12",
            connector="x12-folder" if partner is not None else "x12",
            raw=raw[:MAX_BODY_CHARS].decode("utf-8", "replace"),
            sender=partner.code if partner is not None else (client or ""),
            media_type="application/edi-x12",
        )
        given = self._receive(raw, partner, client, record)
        if record.status is None:  # not written with the interchange: a resend, a refusal
            self.inbox.record(record, given)
        return given, record

    def _receive(
        self,
        raw: bytes,
        partner: TradingPartner | None,
        client: str | None,
        record: MessageRecord,
    ) -> Answer:
        if len(raw) > self.max_bytes:
            return Answer(413, f"interchange of {len(raw)} bytes exceeds {self.max_bytes}")
        try:
            parsed = parse_interchange(raw)
        except X12Error as error:
            log.warning("x12.refused", reason=str(error))
            return Answer(400, str(error))
        i = parsed.interchange
        record.control_id = i.control_number
        record.sender = f"{i.sender_qualifier}:{i.sender_id}"
        kinds = dict.fromkeys(s.set_id for g in parsed.groups for s in g.sets)
        record.message_type = ",".join(kinds)[:64]
        sender = self.partners.x12_sender(i.sender_qualifier, i.sender_id)
        if sender is not None:
            record.sender = sender.code
        if sender is None or (partner is not None and sender.code != partner.code):
            return Answer(
                403,
                f"ISA05/ISA06 {i.sender_qualifier}:{i.sender_id} is not a trading partner"
                + (f" (the folder is {partner.code}'s)" if partner is not None else ""),
            )
        if client is not None and sender.api_client not in (None, client):
            return Answer(
                403,
                f"ISA05/ISA06 {i.sender_qualifier}:{i.sender_id} is {sender.code}, whose"
                f" interchanges only its own API client posts, not {client}",
            )
        if (i.receiver_qualifier, i.receiver_id) != (self.own.x12_qualifier, self.own.x12_id):
            return Answer(
                400,
                f"ISA07/ISA08 {i.receiver_qualifier}:{i.receiver_id}: this interchange is not "
                f"addressed to MedBridge ({self.own.x12_qualifier}:{self.own.x12_id})",
            )
        key = interchange_key(parsed)
        answered = self.inbox.answered(key)
        if answered is not None:
            return answered
        documents = [
            ReceivedDocument(s.document, f"x12:{parsed.idempotency_key(g, s)}")
            for g in parsed.groups
            for s in g.sets
            if s.document is not None
        ]
        for report in parsed.ack_reports:
            log.info("x12.acknowledged", partner=sender.code, report=str(report))
        rejected = sum(1 for g in parsed.groups for s in g.sets if not s.accepted)
        for problem in parsed.errors:
            log.warning(
                "x12.set_rejected", partner=sender.code, interchange=key, error=str(problem)
            )

        def answer(conn: Connection) -> Answer:
            now = datetime.now(UTC)
            text = functional_ack(
                parsed,
                interchange_control=store.next_control_number(conn, sender.code, "isa"),
                group_control=store.next_control_number(conn, sender.code, "gs"),
                set_control=1,
                sent_on=now.date(),
                sent_at=now.time().replace(microsecond=0),
                usage=sender.x12_usage,
                version=sender.x12_version,
            )
            if text is None:  # only 997s: acknowledged, never answered
                return Answer(200, "")
            return Answer(200 if documents or not rejected else 400, text)

        return self.inbox.accept(
            partner=sender,
            wire_format=WIRE,
            interchange_key=key,
            documents=documents,
            answer=answer,
            message=record,
        )


def order_interchange(
    document: OrderDocument, *, partner: TradingPartner, own: OwnIdentity, control: int
) -> str:
    """The 850 interchange MedBridge sends for ``document``: ISA13 = GS06 = ``control``."""
    if partner.x12_id is None:
        raise ChannelError(f"partner {partner.code} has no X12 id", permanent=True)
    now = datetime.now(UTC)
    return render(
        [document],
        Envelope(
            sender_qualifier=own.x12_qualifier,
            sender_id=own.x12_id,
            receiver_qualifier=partner.x12_qualifier,
            receiver_id=partner.x12_id,
            interchange_control=control,
            group_control=control,
            set_control=1,
            sent_on=now.date(),
            sent_at=now.time().replace(microsecond=0),
            usage=partner.x12_usage,
            version=partner.x12_version,
            ack_requested=False,
        ),
    )


class X12FolderChannel:
    """Sends orders as 850 interchanges written to the partner's ``outbound_folder`` (where
    its VAN or SFTP job picks them up)."""

    def __init__(self, own: OwnIdentity) -> None:
        self.own = own

    def send(
        self, document: OrderDocument, *, partner: TradingPartner, control: int
    ) -> SendReceipt:
        if partner.outbound_folder is None:
            raise ChannelError(f"partner {partner.code} has no outbound_folder", permanent=True)
        text = order_interchange(document, partner=partner, own=self.own, control=control)
        name = f"850_{control:09d}.x12"
        try:
            write_atomically(partner.outbound_folder, name, text.encode())
        except OSError as error:
            raise ChannelError(f"cannot write {name}: {error}") from error
        return SendReceipt(WIRE, f"{control:09d}", name)
