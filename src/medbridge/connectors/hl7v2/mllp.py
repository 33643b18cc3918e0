"""The MLLP transport: ``<VT> message <FS><CR>`` over TCP (optionally TLS), in front of an
``Hl7Receiver``.

What the listener promises:

- **Its own event loop.** ``start_in_thread`` runs the listener on a private loop in its own
  thread, so HL7 traffic never shares a loop with the HTTP API or the workers (measured on
  main: junk on 200 MLLP connections stalled ``/health`` for 10 s when they shared one).
- **Pipelining, ACKs in order.** A connection may send messages without waiting for each ACK;
  up to ``max_in_flight`` are worked on at once (their appends are committed together by the
  group commit), and the ACKs go back in the order the messages came. Beyond that, reading
  stops until the oldest is answered (back-pressure), a connection sending faster than
  ``max_messages_per_second`` is slowed down, not refused, and a connection yields the loop
  after every ``frames_per_turn`` messages (round-robin between connections). A connection
  whose messages are refused (junk, content errors) is slowed down to
  ``max_refusals_per_second``: a sender of garbage gets its negative ACKs, slowly, and
  cannot take the loop from the senders of valid messages.
- **Bounded junk.** De-framing is linear in the bytes received (``MllpFramer`` never rescans);
  bytes outside a frame and torn frames (a new start byte before the end) are discarded and
  counted (``medbridge_stage_total{stage="mllp",outcome="framing_error"}``), and logged at
  a bounded rate with the count; a frame larger than ``max_message_bytes`` closes the
  connection. One sender's junk costs that sender's share of the loop, nobody else's.
- **Only known senders, when configured.** With ``tls`` the listener speaks TLS only (a
  cleartext client fails the handshake); with a CA in it, a sender must present a
  certificate of that CA. With ``allowed_sources``, a connection from outside those networks
  is reset at once, before anything it sent is read, logged at a bounded rate and counted
  (``medbridge_stage_messages_total{stage="mllp",outcome="source_refused"}``). Under TLS
  that check comes after the handshake: asyncio hands a TLS connection over only then.
- **Nothing acknowledged early.** An ACK is written only once the receiver's outcome is
  durable; a connection closed before its ACK gets none, and the sender resends.
- **Traced when tracing is on.** Each message is an ``mllp.receive`` span (SERVER), from its
  frame to its ACK, the root of its dispense's trace: the events it yields carry its context.
  Off, the listener does not touch the tracing library.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from medbridge.connectors.hl7v2.config import Hl7Config, MllpTls
from medbridge.connectors.hl7v2.inbound import Hl7Receiver
from medbridge.connectors.hl7v2.tls import bound_client, server_context, source_allowed
from medbridge.observability import metrics, tracing
from medbridge.observability.logging import BoundedLog, get_logger

log = get_logger(__name__)

START, END = b"\x0b", b"\x1c\x0d"


class FrameTooLarge(Exception):
    pass


class MllpFramer:
    """Incremental de-framing of one connection's bytes.

    ``feed`` returns the complete frames (without their framing bytes); ``junk`` and ``torn``
    count what was discarded since the last ``take_discarded``. Whitespace between frames
    (a trailing newline) is not junk. Each byte is scanned a bounded number of times.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._in_frame = False
        self._scan = 0
        self.junk = 0
        self.torn = 0

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        while True:
            if not self._in_frame:
                start = buffer.find(START)
                if start == -1:
                    self._discard(len(buffer))
                    return frames
                if start:
                    self._discard(start)
                self._in_frame, self._scan = True, 1
            end = buffer.find(END, self._scan)
            nested = buffer.find(START, self._scan, end if end != -1 else len(buffer))
            if nested != -1:  # a new frame began before this one ended: drop the torn one
                self.torn += 1
                del buffer[:nested]
                self._scan = 1
                continue
            if end == -1:
                if len(buffer) > self.max_frame:
                    raise FrameTooLarge(len(buffer))
                self._scan = max(1, len(buffer) - 1)  # END is two bytes: keep one of overlap
                return frames
            frames.append(bytes(buffer[1:end]))
            del buffer[: end + len(END)]
            self._in_frame, self._scan = False, 0

    def _discard(self, n: int) -> None:
        if bytes(self._buffer[:n]).strip():
            self.junk += n
        del self._buffer[:n]

    def take_discarded(self) -> tuple[int, int]:
        junk, torn = self.junk, self.torn
        self.junk = self.torn = 0
        return junk, torn


class _Pace:
    """At most ``rate`` messages per second on one connection (0: unbounded)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self._clock = rate, clock
        self._next = 0.0

    def delay(self) -> float:
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        self._next = max(self._next, now - 1.0) + 1.0 / self.rate  # up to 1 s of burst
        return max(0.0, self._next - now - 1.0)


def _tls_options(tls: MllpTls) -> dict[str, Any]:
    return {"ssl": server_context(tls), "ssl_handshake_timeout": tls.handshake_timeout}


def _client_certificates(tls: MllpTls | None) -> str:
    if tls is None or tls.ca_file is None:
        return "not asked"
    return "required" if tls.require_client_cert else "verified if presented"


def _end_receipt(span: tracing.Span | None, answer: asyncio.Future[bytes]) -> None:
    error = None if answer.cancelled() else answer.exception()
    tracing.end(span, error)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (uvicorn[standard] brings it)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class MllpListener:
    """An asyncio MLLP server in front of an ``Hl7Receiver``."""

    def __init__(self, receiver: Hl7Receiver, config: Hl7Config) -> None:
        self.receiver, self.config = receiver, config
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._junk_log = BoundedLog(log, per_interval=5, interval=5.0)
        self._refused_log = BoundedLog(log, per_interval=5, interval=5.0)
        self._broken: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    # --- on its own loop -------------------------------------------------------------------

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Listen on a private event loop in a thread of its own (uvloop when installed:
        the listener's loop is its hot path)."""
        loop = _new_loop()
        thread = threading.Thread(target=loop.run_forever, name="mllp-listener", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout)

    def stop_in_thread(self, timeout: float = 30.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            self._loop = self._thread = None

    # --- on the caller's loop --------------------------------------------------------------

    async def start(self) -> None:
        tls = self.config.tls
        self._server = await asyncio.start_server(
            self._connection,
            self.config.host,
            self.config.port,
            backlog=1024,
            **({} if tls is None else _tls_options(tls)),
        )
        log.info(
            "mllp.listening",
            host=self.config.host,
            port=self.port,
            tls=tls is not None,
            client_certificates=_client_certificates(tls),
            allowed_sources=[str(network) for network in self.config.allowed_sources] or "any",
        )

    async def stop(self) -> None:
        """Stop accepting, end open connections (an unanswered message gets no ACK and will
        be resent by its sender)."""
        if self._server is not None:
            self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        if self.config.allowed_sources and not source_allowed(
            peername, self.config.allowed_sources
        ):
            self._refuse_source(writer, str(peername))
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        peer = str(peername)
        client = bound_client(peername, self.config.source_clients)
        framer = MllpFramer(self.config.max_message_bytes)
        pace = _Pace(self.config.max_messages_per_second)
        refusals = _Pace(self.config.max_refusals_per_second)
        answers: asyncio.Queue[asyncio.Future[bytes] | None] = asyncio.Queue(
            maxsize=self.config.max_in_flight
        )
        sender = asyncio.create_task(self._send_acks(answers, writer))
        try:
            while writer not in self._broken:
                chunk = await asyncio.wait_for(reader.read(65536), self.config.idle_timeout)
                if not chunk:
                    break
                frames = framer.feed(chunk)
                self._count_discarded(framer, peer)
                for n, frame in enumerate(frames, start=1):
                    answer, refused = self._answer(frame, client)
                    await answers.put(answer)
                    delay = (refusals if refused else pace).delay()
                    if delay:
                        await asyncio.sleep(delay)
                    elif n % self.config.frames_per_turn == 0:
                        await asyncio.sleep(0)  # every connection gets its turn
        except (TimeoutError, ConnectionError, FrameTooLarge, ssl.SSLError) as reason:
            log.info("mllp.closed", peer=peer, reason=type(reason).__name__)
        finally:
            await answers.put(None)  # answer what was read, then close
            with contextlib.suppress(Exception):
                await sender
            self._broken.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    def _answer(self, frame: bytes, client: str | None) -> tuple[asyncio.Future[bytes], bool]:
        """The ACK of ``frame``: at once for a refusal (no task, no thread), else once its
        outcome is durable; and whether it was refused at once. ``client``: the API client
        the connection's address is bound to."""
        if tracing.enabled():
            return self._answer_traced(frame, client)
        return self._answer_now(frame, client)

    def _answer_now(self, frame: bytes, client: str | None) -> tuple[asyncio.Future[bytes], bool]:
        step = self.receiver.begin(frame, sender=client)
        if step.pending is None:
            done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            done.set_result(self.receiver.ack_now(step))
            return done, step.done is not None and step.done[0] != "AA"
        return asyncio.ensure_future(self.receiver.finish_async(step)), False

    def _answer_traced(
        self, frame: bytes, client: str | None
    ) -> tuple[asyncio.Future[bytes], bool]:
        """``_answer`` inside an ``mllp.receive`` span, current while the message is mapped
        and handed over (its task keeps it), ended when its ACK is ready."""
        span = tracing.start_span(
            "mllp.receive",
            kind=tracing.SpanKind.SERVER,
            attributes={
                "network.transport": "tcp",
                "server.port": self.port,
                "medbridge.connector": "hl7v2",
                "medbridge.client": client,
                "messaging.message.body.size": len(frame),
            },
        )
        with tracing.current(span):  # the task of a pending outcome copies the context
            answer, refused = self._answer_now(frame, client)
        answer.add_done_callback(functools.partial(_end_receipt, span))
        return answer, refused

    async def _send_acks(
        self, answers: asyncio.Queue[asyncio.Future[bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        """Write each ACK in order once its message's outcome is durable. A connection the
        peer broke stops the reading (``sender.done()``) but the queue is still drained, so
        the reader is never left waiting on a full queue."""
        broken = False
        while True:
            pending = await answers.get()
            if pending is None:
                return
            ack = await pending
            if broken:
                continue
            try:
                writer.write(START + ack + END)
                if answers.empty():
                    await writer.drain()
            except (ConnectionError, ssl.SSLError, RuntimeError):
                broken = True
                self._broken.add(writer)

    def _refuse_source(self, writer: asyncio.StreamWriter, peer: str) -> None:
        """A sender outside ``allowed_sources``: closed at once (reset), nothing read."""
        writer.transport.abort()
        metrics.stage("mllp", "source_refused").inc()
        self._refused_log.warning("mllp.source_refused", peer=peer)

    def _count_discarded(self, framer: MllpFramer, peer: str) -> None:
        junk, torn = framer.take_discarded()
        if junk or torn:
            metrics.stage("mllp", "framing_error").inc((1 if junk else 0) + torn)
            self._junk_log.warning("mllp.junk_discarded", peer=peer, bytes=junk, torn=torn)
