"""Inbound HL7 v2: the receiver (one message in, one ACK out) and the MLLP listener.

The ACK is built only after the outcome is durable: ``AA`` once the movements are appended
(or were already: a duplicate), or once the message is parked in the exception queue
(accepted for review; ``AE`` if so configured); ``AE`` for content errors and ``AR`` for
unsupported types or versions, each with an ERR segment; ``AR`` with code 207 when the store
cannot be reached, so that the sender keeps the message and sends it again.

MLLP: ``<VT> message <FS><CR>``. Bytes outside a frame are discarded and logged; a frame
larger than ``max_message_bytes`` closes the connection. Messages on one connection are
handled in order (each ACK before the next message); connections run concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from sqlalchemy.exc import InterfaceError, OperationalError

from medbridge.bus.port import AppendResult, BusError
from medbridge.canonical.demand import PharmacyOrder
from medbridge.canonical.inbound import InboundOutcome, InboundReceipt, InboundSink
from medbridge.connectors.hl7v2.ack import build_ack
from medbridge.connectors.hl7v2.codec import Message, decode, parse
from medbridge.connectors.hl7v2.config import Hl7Config, UnmappedAck
from medbridge.connectors.hl7v2.errors import Hl7Error, Hl7ParseError, TableValueNotFound
from medbridge.connectors.hl7v2.mapping import DISPENSE, Header, Mapped, map_message
from medbridge.connectors.hl7v2.strict import validate_strict
from medbridge.observability import metrics
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

START, END = b"\x0b", b"\x1c\x0d"

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


class Hl7Receiver:
    """Turns one HL7 message into its acknowledgement, doing the work in between."""

    def __init__(self, inbound: InboundSink, demand: DemandSink, config: Hl7Config) -> None:
        self.inbound, self.demand, self.config = inbound, demand, config
        self._secret = config.pseudonym_secret.get_secret_value().encode()

    def handle(self, raw: bytes) -> bytes:
        message: Message | None = None
        try:
            text = decode(raw)
            message = parse(text)
            if self.config.strict_validation:
                validate_strict(text)
            mapped = map_message(message, self._secret)
            code, error, text = self._apply(mapped)
        except Hl7Error as problem:
            code, error, text = problem.ack_code, problem, ""
            log.warning(
                "hl7.refused",
                ack=code,
                control_id=message.msh.get(10) if message else None,
                location=problem.location,
                reason=str(problem),
            )
        except (BusError, OperationalError, InterfaceError, OSError) as problem:
            code, error, text = "AR", Hl7Error("store unavailable: send the message again"), ""
            log.error("hl7.store_unavailable", error_type=type(problem).__name__)
        except Exception:  # the sender must hear of it, and must not be told AA
            log.exception("hl7.internal_error")
            code, error, text = "AR", Hl7Error("application internal error: send again"), ""
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

    def _apply(self, mapped: Mapped) -> tuple[str, Hl7Error | None, str]:
        header = mapped.header
        source = f"hl7v2/{header.sending_application}@{header.sending_facility}"
        if mapped.orders:
            results = self.demand.record(
                mapped.orders, source=source, idempotency_key=header.idempotency_key
            )
            duplicate = all(r.duplicate for r in results)
            return (
                "AA",
                None,
                "duplicate: already recorded" if duplicate else "order recorded as demand",
            )
        if not mapped.movements:
            return "AA", None, "no stock movement in this message"
        result = self.inbound.receive(
            mapped.movements, source=source, idempotency_key=header.idempotency_key
        )
        log.info(
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

    def _exception_ack(
        self, header: Header, result: InboundReceipt
    ) -> tuple[str, Hl7Error | None, str]:
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


class MllpListener:
    """An asyncio MLLP server in front of an ``Hl7Receiver``."""

    def __init__(self, receiver: Hl7Receiver, config: Hl7Config, workers: int = 16) -> None:
        self.receiver, self.config = receiver, config
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mllp")
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    def _tls(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.config.host, self.config.port, ssl=self._tls()
        )
        log.info(
            "mllp.listening",
            host=self.config.host,
            port=self.port,
            tls=self.config.tls_cert is not None,
        )

    async def stop(self) -> None:
        """Stop accepting, end open connections (an unanswered message gets no ACK and will
        be resent by its sender), then wait for the work in flight."""
        if self._server is not None:
            self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._executor.shutdown(wait=True, cancel_futures=False)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        peer = writer.get_extra_info("peername")
        buffer = bytearray()
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), self.config.idle_timeout)
                if not chunk:
                    break
                buffer += chunk
                for frame in self._frames(buffer, peer):
                    ack = await loop.run_in_executor(self._executor, self.receiver.handle, frame)
                    writer.write(START + ack + END)
                    await writer.drain()
        except (TimeoutError, ConnectionError, FrameTooLarge) as reason:
            log.info("mllp.closed", peer=str(peer), reason=type(reason).__name__)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    def _frames(self, buffer: bytearray, peer: object) -> list[bytes]:
        frames: list[bytes] = []
        while True:
            start = buffer.find(START)
            if start == -1:
                if buffer.strip():
                    log.warning("mllp.junk_discarded", peer=str(peer), bytes=len(buffer))
                    metrics.STAGE.labels(stage="mllp", outcome="framing_error").inc()
                buffer.clear()
                return frames
            if start > 0:
                if buffer[:start].strip():
                    log.warning("mllp.junk_discarded", peer=str(peer), bytes=start)
                    metrics.STAGE.labels(stage="mllp", outcome="framing_error").inc()
                del buffer[:start]
            end = buffer.find(END)
            nested = buffer.find(START, 1)
            if (
                0 < nested < (end if end != -1 else len(buffer))
            ):  # a new frame began: drop the torn one
                log.warning("mllp.torn_frame_discarded", peer=str(peer), bytes=nested)
                metrics.STAGE.labels(stage="mllp", outcome="framing_error").inc()
                del buffer[:nested]
                continue
            if end == -1:
                if len(buffer) > self.config.max_message_bytes:
                    raise FrameTooLarge(len(buffer))
                return frames
            frames.append(bytes(buffer[1:end]))
            del buffer[: end + len(END)]


class FrameTooLarge(Exception):
    pass


__all__ = ["Hl7ParseError", "Hl7Receiver", "MllpListener"]
