"""Inbound HL7 v2: the receiver (one message in, one ACK out). The MLLP transport in front
of it is ``connectors.hl7v2.mllp``.

The ACK is built only after the outcome is durable: ``AA`` once the movements are appended
(or were already: a duplicate), or once the message is parked in the exception queue
(accepted for review; ``AE`` if so configured); ``AE`` for content errors and ``AR`` for
unsupported types or versions, each with an ERR segment; ``AR`` with code 207 when the store
cannot be reached, so that the sender keeps the message and sends it again. ``AR`` is kept
for what a resend can cure (or what the standard rejects in MSH): a message the mapping fails
on, even through a fault of ours, is ``AE`` with code 207, never ``AR``, which would have the
sender resend the same bytes for ever.

Every message is recorded for the message browser (``canonical.messages``): with its
movements (applied or duplicate, in their transaction; parked, in its exception's), or, for a
refusal, through the sink's ``MessageLog`` with the NAK sent. The ACK of an applied or
duplicate message is built once, when its row is written, and that is the ACK sent. A
message answered ``AR`` because the store was unreachable is not recorded (nothing was
stored: the sender sends it again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import InterfaceError, OperationalError

from medbridge.bus.port import AppendResult, BusError
from medbridge.canonical.demand import PharmacyOrder
from medbridge.canonical.inbound import (
    AsyncInboundSink,
    InboundOutcome,
    InboundReceipt,
    InboundSink,
)
from medbridge.canonical.messages import MessageLog, MessageRecord, MessageStatus
from medbridge.connectors.hl7v2.ack import build_ack
from medbridge.connectors.hl7v2.codec import Message, decode, parse
from medbridge.connectors.hl7v2.config import Hl7Config, UnmappedAck
from medbridge.connectors.hl7v2.errors import (
    Hl7Error,
    Hl7ParseError,
    OutsideSenderScope,
    TableValueNotFound,
)
from medbridge.connectors.hl7v2.mapping import DISPENSE, Header, Mapped, map_message
from medbridge.connectors.hl7v2.strict import validate_strict
from medbridge.observability import metrics, tracing
from medbridge.observability.logging import BoundedLog, get_logger

log = get_logger(__name__)

# where each unresolved field of an inbound movement sits in the message
_FIELDS_RDS = {
    "item": ("RXD", 2),
    "unit": ("RXD", 5),
    "location": ("RXD", 30),
    "patient_location": ("PV1", 3),
}
_FIELDS_DFT = {
    "item": ("FT1", 7),
    "unit": ("FT1", 7),
    "location": ("FT1", 13),
    "patient_location": ("PV1", 3),
}


class DemandSink(Protocol):
    """Where pharmacy orders go (expected demand, not stock movements)."""

    def record(
        self, orders: Sequence[PharmacyOrder], *, source: str, idempotency_key: str
    ) -> list[AppendResult]: ...


REFUSED_BODY_CHARS = 65_536
"""A refused message's body is kept this long at most: a flood of junk must not fill the disk."""

_DUPLICATE = "duplicate: already applied"
_STORED = (MessageStatus.APPLIED, MessageStatus.DUPLICATE)

Outcome = tuple[str, Hl7Error | None, str]
"""An ACK code, the error for its ERR segment, and MSA-3's text."""


Pending = Coroutine[Any, Any, Outcome] | Future[Outcome]
"""The outcome to come: a coroutine for the event loop, or a worker thread's future."""


@dataclass
class _Step:
    """A message after parsing and mapping: its outcome, or the outcome to come."""

    message: Message | None
    done: Outcome | None = None
    pending: Pending | None = None
    record: MessageRecord | None = None


class Hl7Receiver:
    """Turns one HL7 message into its acknowledgement, doing the work in between.

    ``handle`` blocks (for a thread). On an event loop, ``begin`` parses and maps at once and
    hands the movements over; ``finish_async`` waits for the durable outcome without a thread
    (the group commit releases it), and ``ack_now`` answers what needed no waiting (a
    refusal). Refusals are logged at a bounded rate (``BoundedLog``): junk must not flood the
    log.
    """

    def __init__(
        self,
        inbound: InboundSink,
        demand: DemandSink,
        config: Hl7Config,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.inbound, self.demand, self.config = inbound, demand, config
        self._secret = config.pseudonym_secret.get_secret_value().encode()
        self._executor = executor or ThreadPoolExecutor(max_workers=8, thread_name_prefix="hl7")
        self._refusals = BoundedLog(log)
        self._async = inbound if isinstance(inbound, AsyncInboundSink) else None
        self._log = inbound if isinstance(inbound, MessageLog) else None

    def handle(self, raw: bytes) -> bytes:
        return self.handle_recorded(raw)[0]

    def handle_recorded(self, raw: bytes) -> tuple[bytes, MessageRecord | None]:
        """``handle``, and the message's record (None: the sink keeps no message log)."""
        step = self._begin(raw, on_loop=False)
        outcome = step.done
        if isinstance(step.pending, Future):
            try:
                outcome = step.pending.result()
            except Exception as problem:
                outcome = self._failed(problem)
        assert outcome is not None
        return self._ack(step.message, outcome, step.record), step.record

    async def handle_async(self, raw: bytes) -> bytes:
        step = self.begin(raw)
        return self.ack_now(step) if step.pending is None else await self.finish_async(step)

    def begin(self, raw: bytes, sender: str | None = None) -> _Step:
        """On the event loop: parse, map and hand over; the outcome now (a refusal, a
        message with nothing to store) or the outcome to come. ``sender``: the API client
        the connection is bound to (by its address), if any."""
        return self._begin(raw, on_loop=True, sender=sender)

    def ack_now(self, step: _Step) -> bytes:
        assert step.done is not None
        return self._ack(step.message, step.done, step.record)

    async def finish_async(self, step: _Step) -> bytes:
        pending = step.pending
        assert pending is not None
        try:
            if isinstance(pending, Future):
                outcome = await asyncio.wrap_future(pending)
            else:
                outcome = await pending
        except Exception as problem:
            outcome = self._failed(problem)
        return self._ack(step.message, outcome, step.record)

    def _begin(self, raw: bytes, *, on_loop: bool, sender: str | None = None) -> _Step:
        message: Message | None = None
        text: str | None = None
        try:
            text = decode(raw)
            message = parse(text)
            if self.config.strict_validation:
                validate_strict(text)
            mapped = map_message(message, self._secret)
        except Hl7Error as problem:
            self._refusals.warning(
                "hl7.refused",
                ack=problem.ack_code,
                control_id=message.msh.get(10) if message else None,
                location=problem.location,
                reason=str(problem),
            )
            record = self._refused(raw, text, message, str(problem))
            return _Step(message, done=(problem.ack_code, problem, ""), record=record)
        except Exception as problem:
            # a fault of ours on this content: the same bytes would fail again, so AE (AR
            # would have the sender resend them for ever)
            log.error("hl7.internal_error", error_type=type(problem).__name__, error=str(problem))
            record = self._refused(raw, text, message, "application internal error")
            return _Step(
                message, done=("AE", Hl7Error("application internal error"), ""), record=record
            )
        record = self._record(text, message, mapped.header)
        try:
            applied = self._apply(mapped, on_loop, sender, record)
        except Exception as problem:
            return _Step(message, done=self._failed(problem), record=record)
        if isinstance(applied, tuple):
            return _Step(message, done=applied, record=record)
        return _Step(message, pending=applied, record=record)

    # --- the message store's record ------------------------------------------------------

    def _record(self, text: str, message: Message, header: Header) -> MessageRecord | None:
        if self._log is None:
            return None
        record = MessageRecord(
            protocol="hl7v2",
            connector="hl7v2",
            raw=text,
            sender=f"hl7v2/{header.sending_application}@{header.sending_facility}",
            message_type=f"{header.message_type}^{header.trigger}",
            control_id=header.control_id,
            facility=header.sending_facility or None,
            media_type="x-application/hl7-v2+er7",
        )

        def acknowledge(status: MessageStatus) -> str | None:
            if status is MessageStatus.APPLIED:
                return self._ack_text(message, ("AA", None, ""))
            if status is MessageStatus.DUPLICATE:
                return self._ack_text(message, ("AA", None, _DUPLICATE))
            return None

        record.acknowledge = acknowledge
        return record

    def _refused(
        self, raw: bytes, text: str | None, message: Message | None, reason: str
    ) -> MessageRecord | None:
        if self._log is None:
            return None
        msh = message.msh if message else None
        kind = f"{msh.get(9, 1)}^{msh.get(9, 2)}" if msh else ""
        body = text if text is not None else raw[:REFUSED_BODY_CHARS].decode("utf-8", "replace")
        return MessageRecord(
            protocol="hl7v2",
            connector="hl7v2",
            raw=body[:REFUSED_BODY_CHARS],
            sender=f"hl7v2/{msh.get(3)}@{msh.get(4)}" if msh else "",
            message_type=kind.strip("^"),
            control_id=(msh.get(10) if msh else "") or "",
            facility=(msh.get(4) if msh else None) or None,
            media_type="x-application/hl7-v2+er7",
            status=MessageStatus.REFUSED,
            error=reason,
        )

    def _failed(self, problem: BaseException) -> Outcome:
        if isinstance(problem, (BusError, OperationalError, InterfaceError, OSError)):
            log.error("hl7.store_unavailable", error_type=type(problem).__name__)
            return "AR", Hl7Error("store unavailable: send the message again"), ""
        # the sender must hear of it, and must not be told AA
        log.error("hl7.internal_error", error_type=type(problem).__name__, error=str(problem))
        return "AR", Hl7Error("application internal error: send again"), ""

    def _ack_text(self, message: Message | None, outcome: Outcome) -> str:
        code, error, text = outcome
        return build_ack(
            message,
            code,
            error=error,
            text=text,
            receiving_application=self.config.receiving_application,
            receiving_facility=self.config.receiving_facility,
        )

    def _ack(
        self, message: Message | None, outcome: Outcome, record: MessageRecord | None = None
    ) -> bytes:
        code = outcome[0]
        metrics.stage("hl7v2", code).inc()
        if tracing.enabled():
            tracing.annotate(
                **{
                    "hl7.ack_code": code,
                    "hl7.message_control_id": message.msh.get(10) if message else None,
                    "hl7.message_type": (
                        f"{message.msh.get(9)}^{message.msh.get(9, 2)}" if message else None
                    ),
                }
            )
        if (
            record is not None
            and record.ack is not None
            and code == "AA"
            and record.status in _STORED
        ):
            return record.ack.encode("utf-8")  # built when its row was written
        ack = self._ack_text(message, outcome)
        if record is not None and self._log is not None:
            if record.status is MessageStatus.REFUSED and record.ack is None:
                record.ack = ack
                self._log.record_message(record)
            elif record.status is MessageStatus.PARKED:
                self._log.record_ack(record.id, ack)
            elif record.status is None and code == "AA":  # orders, or nothing to store
                record.ack = ack
                duplicate = outcome[2].startswith("duplicate")
                record.settle(MessageStatus.DUPLICATE if duplicate else MessageStatus.APPLIED)
                self._log.record_message(record)
        return ack.encode("utf-8")

    def _apply(
        self, mapped: Mapped, on_loop: bool, sender: str | None, record: MessageRecord | None
    ) -> Outcome | Pending:
        header = mapped.header
        source = f"hl7v2/{header.sending_application}@{header.sending_facility}"
        if mapped.orders:
            if not on_loop:
                return self._record_orders(mapped, source)
            return self._executor.submit(self._record_orders, mapped, source)
        if not mapped.movements:
            return "AA", None, "no stock movement in this message"
        if on_loop and self._async is not None:
            return self._receive_async(self._async, mapped, source, sender, record)
        if on_loop:
            return self._executor.submit(self._receive, mapped, source, sender, record)
        return self._receive(mapped, source, sender, record)

    def _receive(
        self, mapped: Mapped, source: str, sender: str | None, record: MessageRecord | None
    ) -> Outcome:
        result = self.inbound.receive(
            mapped.movements,
            source=source,
            idempotency_key=mapped.header.idempotency_key,
            sender=sender,
            message=record,
        )
        return self._received(mapped, result, record)

    async def _receive_async(
        self,
        sink: AsyncInboundSink,
        mapped: Mapped,
        source: str,
        sender: str | None,
        record: MessageRecord | None,
    ) -> Outcome:
        result = await sink.receive_async(
            mapped.movements,
            source=source,
            idempotency_key=mapped.header.idempotency_key,
            sender=sender,
            message=record,
        )
        return self._received(mapped, result, record)

    def _record_orders(self, mapped: Mapped, source: str) -> Outcome:
        header = mapped.header
        results = self.demand.record(
            mapped.orders, source=source, idempotency_key=header.idempotency_key
        )
        duplicate = all(r.duplicate for r in results)
        return (
            "AA",
            None,
            "duplicate: already recorded" if duplicate else "order recorded as demand",
        )

    def _received(
        self, mapped: Mapped, result: InboundReceipt, record: MessageRecord | None = None
    ) -> Outcome:
        # no log line per message: the trace (GET /v1/trace) and the stage counters say it,
        # and a structlog call cost more than the parse
        header = mapped.header
        if result.outcome is InboundOutcome.ACCEPTED:
            return "AA", None, ""
        if result.outcome is InboundOutcome.DUPLICATE:
            return "AA", None, _DUPLICATE
        if result.outcome is InboundOutcome.REFUSED:
            problem = result.problems[0] if result.problems else None
            fields = (
                _FIELDS_RDS if (header.message_type, header.trigger) in DISPENSE else _FIELDS_DFT
            )
            segment, number = fields.get(problem.field if problem else "", ("MSH", 4))
            reason = problem.reason if problem else "outside the sender's facilities"
            if record is not None:
                record.status, record.error = MessageStatus.REFUSED, reason
            error = OutsideSenderScope(reason, segment=segment, field=number)
            return "AE", error, "refused: nothing stored"
        return self._exception_ack(header, result)

    def _exception_ack(self, header: Header, result: InboundReceipt) -> Outcome:
        text = f"accepted for review: exception {result.exception_id}"
        if self.config.unmapped_ack is UnmappedAck.ACCEPT or not result.problems:
            return "AA", None, text
        problem = result.problems[0]
        fields = _FIELDS_RDS if (header.message_type, header.trigger) in DISPENSE else _FIELDS_DFT
        segment, number = fields.get(problem.field, ("MSH", 4))
        sequence = problem.index + 1 if segment in ("RXD", "FT1") else 1
        reason = f"{problem.field} {problem.value!r}: {problem.reason}"
        error = TableValueNotFound(
            f"{reason} (exception {result.exception_id})",
            segment=segment,
            sequence=sequence,
            field=number,
        )
        return "AE", error, text


__all__ = ["Hl7ParseError", "Hl7Receiver"]
