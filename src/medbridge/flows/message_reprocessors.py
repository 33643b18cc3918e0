"""What feeds a stored raw message back through its connector's inbound path (the message
browser's ``Reprocessor``): the same receiver a new message meets, so the idempotency key is
derived from the message again (the original one) and the outcome is recorded like any
other message's."""

from __future__ import annotations

from medbridge.canonical.messages import MessageRecord
from medbridge.connectors.fhir import FhirReceiver
from medbridge.connectors.hl7v2 import Hl7Receiver
from medbridge.flows.cxml_exchange import CxmlExchange
from medbridge.flows.messages import MessageSummary
from medbridge.flows.x12_exchange import X12Exchange


class Hl7Reprocessor:
    """An HL7 v2 message, as if it came over MLLP again (its ACK is recorded, not sent)."""

    def __init__(self, receiver: Hl7Receiver) -> None:
        self.receiver = receiver

    def __call__(self, raw: str, media_type: str, original: MessageSummary) -> MessageRecord | None:
        return self.receiver.handle_recorded(raw.encode("utf-8"))[1]


class FhirReprocessor:
    """A FHIR body, as if its client posted it to the same URL again."""

    def __init__(self, receiver: FhirReceiver) -> None:
        self.receiver = receiver

    def __call__(self, raw: str, media_type: str, original: MessageSummary) -> MessageRecord | None:
        expected = original.message_type or None
        _, record = self.receiver.handle_recorded(
            raw.encode("utf-8"), media_type, client=original.sender, expected=expected
        )
        return record


class X12Reprocessor:
    """An X12 interchange, as if its partner posted it again: a resend is answered with its
    first 997 (duplicate); one refused before (say, from a partner configured since) is
    accepted now."""

    def __init__(self, exchange: X12Exchange) -> None:
        self.exchange = exchange

    def __call__(self, raw: str, media_type: str, original: MessageSummary) -> MessageRecord | None:
        return self.exchange.receive_recorded(raw.encode("utf-8"))[1]


class CxmlReprocessor:
    """A cXML request, as if its partner posted it again (idempotent by payloadID)."""

    def __init__(self, exchange: CxmlExchange) -> None:
        self.exchange = exchange

    def __call__(self, raw: str, media_type: str, original: MessageSummary) -> MessageRecord | None:
        return self.exchange.receive_recorded(raw.encode("utf-8"))[1]
