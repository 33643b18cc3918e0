"""Inbound HL7 v2: the receiver (one message in, one ACK out). The MLLP transport in front
of it is ``connectors.hl7v2.mllp``.

The ACK is built only after the outcome is durable: ``AA`` once the movements are appended
(or were already: a duplicate), or once the message is parked in the exception queue
(accepted for review; ``AE`` if so configured); ``AE`` for content errors and ``AR`` for
unsupported types or versions, each with an ERR segment; ``AR`` with code 207 when the store
cannot be reached, so that the sender keeps the message and sends it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable
from uuid import UUID

from sqlalchemy.exc import InterfaceError, OperationalError

from medbridge.bus.port import AppendResult, BusError
from medbridge.canonical.demand import PharmacyOrder
from medbridge.canonical.inbound import (
    InboundMovement,
    InboundOutcome,
    InboundReceipt,
    InboundSink,
)
from medbridge.connectors.hl7v2.ack import build_ack
from medbridge.connectors.hl7v2.codec import Message, decode, parse
from medbridge.connectors.hl7v2.config import Hl7Config, UnmappedAck
from medbridge.connectors.hl7v2.errors import Hl7Error, Hl7ParseError, TableValueNotFound
from medbridge.connectors.hl7v2.mapping import DISPENSE, Header, Mapped, map_message
from medbridge.connectors.hl7v2.strict import validate_strict
from medbridge.observability import metrics
from medbridge.observability.logging import BoundedLog, get_logger

log = get_logger(__name__)
T = TypeVar("T")

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


Outcome = tuple[str, Hl7Error | None, str]
"""An ACK code, the error for its ERR segment, and MSA-3's text."""


@runtime_checkable
class DeferredInboundSink(Protocol):
    """An ``InboundSink`` that can answer later: the future resolves once the outcome is
    durable. Called from an event loop, it must not block."""

    def receive_nowait(
        self,
        drafts: Sequence[InboundMovement],
        *,
        source: str,
        idempotency_key: str,
        correlation_id: UUID | None = None,
    ) -> Future[InboundReceipt]: ...


def _then(future: Future[T], fn: Callable[[T], Outcome]) -> Future[Outcome]:
    done: Future[Outcome] = Future()

    def chain(f: Future[T]) -> None:
        error = f.exception()
        if error is not None:
            done.set_exception(error)
            return
        try:
            done.set_result(fn(f.result()))
        except Exception as problem:
            done.set_exception(problem)

    future.add_done_callback(chain)
    return done


@dataclass
class _Step:
    """A message after parsing and mapping: its outcome, or the future of it."""

    message: Message | None
    done: Outcome | None = None
    pending: Future[Outcome] | None = None


class Hl7Receiver:
    """Turns one HL7 message into its acknowledgement, doing the work in between.

    ``handle`` blocks (a thread per message); ``handle_async`` parses and maps on the event
    loop and waits for the durable outcome without a thread (the group commit releases it).
    Refusals are logged at a bounded rate (``BoundedLog``): junk must not flood the log.
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

    def handle(self, raw: bytes) -> bytes:
        step = self.begin(raw)
        outcome = step.done
        if step.pending is not None:
            try:
                outcome = step.pending.result()
            except Exception as problem:
                outcome = self._failed(problem)
        assert outcome is not None
        return self._ack(step.message, outcome)

    async def handle_async(self, raw: bytes) -> bytes:
        step = self.begin(raw)
        return self.ack_now(step) if step.pending is None else await self.finish_async(step)

    def begin(self, raw: bytes) -> _Step:
        """Parse, map and hand over: the outcome now (a refusal, a message with nothing to
        store) or the future of the durable one."""
        return self._begin(raw)

    def ack_now(self, step: _Step) -> bytes:
        assert step.done is not None
        return self._ack(step.message, step.done)

    async def finish_async(self, step: _Step) -> bytes:
        assert step.pending is not None
        try:
            outcome = await asyncio.wrap_future(step.pending)
        except Exception as problem:
            outcome = self._failed(problem)
        return self._ack(step.message, outcome)

    def _begin(self, raw: bytes) -> _Step:
        message: Message | None = None
        try:
            text = decode(raw)
            message = parse(text)
            if self.config.strict_validation:
                validate_strict(text)
            mapped = map_message(message, self._secret)
            applied = self._apply(mapped)
        except Hl7Error as problem:
            self._refusals.warning(
                "hl7.refused",
                ack=problem.ack_code,
                control_id=message.msh.get(10) if message else None,
                location=problem.location,
                reason=str(problem),
            )
            return _Step(message, done=(problem.ack_code, problem, ""))
        except Exception as problem:
            return _Step(message, done=self._failed(problem))
        if isinstance(applied, Future):
            return _Step(message, pending=applied)
        return _Step(message, done=applied)

    def _failed(self, problem: BaseException) -> Outcome:
        if isinstance(problem, (BusError, OperationalError, InterfaceError, OSError)):
            log.error("hl7.store_unavailable", error_type=type(problem).__name__)
            return "AR", Hl7Error("store unavailable: send the message again"), ""
        # the sender must hear of it, and must not be told AA
        log.error("hl7.internal_error", error_type=type(problem).__name__, error=str(problem))
        return "AR", Hl7Error("application internal error: send again"), ""

    def _ack(self, message: Message | None, outcome: Outcome) -> bytes:
        code, error, text = outcome
        metrics.STAGE.labels(stage="hl7v2", outcome=code).inc()
        ack = build_ack(
            message,
            code,
            error=error,
            text=text,
            receiving_application=self.config.receiving_application,
            receiving_facility=self.config.receiving_facility,
        )
        return ack.encode("utf-8")

    def _apply(self, mapped: Mapped) -> Outcome | Future[Outcome]:
        header = mapped.header
        source = f"hl7v2/{header.sending_application}@{header.sending_facility}"
        if mapped.orders:
            return self._executor.submit(self._record_orders, mapped, source)
        if not mapped.movements:
            return "AA", None, "no stock movement in this message"
        if isinstance(self.inbound, DeferredInboundSink):
            received = self.inbound.receive_nowait(
                mapped.movements, source=source, idempotency_key=header.idempotency_key
            )
        else:
            received = self._executor.submit(
                self.inbound.receive,
                mapped.movements,
                source=source,
                idempotency_key=header.idempotency_key,
            )
        return _then(received, lambda result: self._received(mapped, result))

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

    def _received(self, mapped: Mapped, result: InboundReceipt) -> Outcome:
        header = mapped.header
        log.debug(
            "hl7.received",
            control_id=header.control_id,
            type=f"{header.message_type}^{header.trigger}",
            outcome=result.outcome.value,
            movements=len(mapped.movements),
            correlation_id=str(result.event_ids[0]) if result.event_ids else None,
        )
        if result.outcome is InboundOutcome.ACCEPTED:
            return "AA", None, ""
        if result.outcome is InboundOutcome.DUPLICATE:
            return "AA", None, "duplicate: already applied"
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


__all__ = ["DeferredInboundSink", "Hl7ParseError", "Hl7Receiver"]
