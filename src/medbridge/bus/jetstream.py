"""The Bus port over NATS JetStream, for scale-out (``MEDBRIDGE_BUS_URL=nats://...``).

Layout: one stream (``JetStreamConfig.stream``) over the subjects ``<prefix>.<partition>``;
an event is published to the subject of its partition (``partition_for``), with its idempotency
key as ``Nats-Msg-Id`` (duplicates recognised for the stream's ``duplicate_window``) and its
headers (event id, type, subject, correlation, causation, ``traceparent``, ``tracestate``); the
payload is the envelope's JSON. ``append`` pipelines the publishes and returns once every
PubAck is in: a PubAck means the server stored the message (file storage, fsync per the server's
``sync_interval``). For a duplicate the PubAck names the original's sequence, from which the
original's id and correlation are read.

Each consumer group has one durable pull consumer per partition (``<group>-p<partition>``,
explicit acks, unlimited deliveries: the consumer loop counts attempts itself). ``fetch``
takes the partition's lease (see ``jetstream_support``), pulls what is available without
waiting and keeps it until ``commit``, which acks everything up to a sequence (the last ack
waits for the server's confirmation), terminates what was dead-lettered, and gives the lease
back. Messages a process fetched but never committed are redelivered once the ack wait has
passed; ``close`` hands them back at once (nak). Dead letters go to a ``DeadLetterStore``
(the SQL one: JetStream has none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from medbridge.bus.jetstream_support import EventLoopThread, Leases
from medbridge.bus.port import (
    AppendResult,
    Bus,
    BusError,
    BusMessage,
    BusUnavailable,
    DeadLetterStore,
    trace_headers,
)
from medbridge.canonical.events import EventEnvelope
from medbridge.observability.logging import get_logger
from medbridge.observability.metrics import APPEND_SECONDS

log = get_logger(__name__)

H_EVENT_ID = "MedBridge-Event-Id"
H_TYPE = "MedBridge-Type"
H_SUBJECT = "MedBridge-Subject"
H_KEY = "MedBridge-Idempotency-Key"
H_CORRELATION = "MedBridge-Correlation-Id"
H_CAUSATION = "MedBridge-Causation-Id"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"
H_MSG_ID = "Nats-Msg-Id"


@dataclass(frozen=True)
class JetStreamConfig:
    """Where the log lives and how long JetStream waits. ``ack_wait``: how long a fetched,
    uncommitted message stays with its process before another may receive it (and so how fast
    a dead worker's share is taken over). ``duplicate_window``: how long a re-sent idempotency
    key is recognised by the stream."""

    url: str = "nats://127.0.0.1:4222"
    stream: str = "MEDBRIDGE_EVENTS"
    subject_prefix: str = "medbridge.events"
    partitions: int = 8
    duplicate_window: float = 120.0
    ack_wait: float = 30.0
    max_ack_pending: int = 20_000
    request_timeout: float = 10.0


@dataclass
class _Held:
    """A partition's fetched, uncommitted messages in this process, in sequence order."""

    messages: dict[int, tuple[BusMessage, Msg]] = field(default_factory=dict)
    dead: set[int] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def ordered(self) -> list[BusMessage]:
        return [self.messages[seq][0] for seq in sorted(self.messages)]


def _headers(event: EventEnvelope[Any]) -> dict[str, str]:
    traceparent, tracestate = trace_headers(event)
    headers = {
        H_MSG_ID: event.idempotency_key,
        H_EVENT_ID: str(event.id),
        H_TYPE: event.type,
        H_SUBJECT: event.subject,
        H_KEY: event.idempotency_key,
        H_CORRELATION: str(event.correlation),
        H_TRACEPARENT: traceparent,
    }
    if event.causation_id is not None:
        headers[H_CAUSATION] = str(event.causation_id)
    if tracestate:
        headers[H_TRACESTATE] = tracestate
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise BusError(f"{name} of event {event.id} cannot be a message header: {value!r}")
    return headers


def _message(seq: int, subject: str, headers: dict[str, str], data: bytes) -> BusMessage:
    return BusMessage(
        seq=seq,
        partition=int(subject.rsplit(".", 1)[1]),
        event_id=headers[H_EVENT_ID],
        type=headers[H_TYPE],
        subject=headers[H_SUBJECT],
        idempotency_key=headers[H_KEY],
        correlation_id=headers[H_CORRELATION],
        payload=data.decode(),
        causation_id=headers.get(H_CAUSATION),
        traceparent=headers[H_TRACEPARENT],
        tracestate=headers.get(H_TRACESTATE, ""),
    )


async def _log_error(error: Exception) -> None:
    log.warning("bus.nats_error", error=str(error), error_type=type(error).__name__)


class JetStreamBus(Bus):
    def __init__(self, config: JetStreamConfig, dead_letter_store: DeadLetterStore) -> None:
        self.config, self.partitions = config, config.partitions
        self.dead_letter_store = dead_letter_store
        self._holder = f"{uuid4()}"
        self._held: dict[tuple[str, int], _Held] = {}
        self._consumers: set[str] = set()
        self._inboxes: dict[str, Subscription] = {}
        self._loop = EventLoopThread(f"jetstream-bus-{config.stream}")
        try:
            self._nc, self._js, self._leases = self._run(self._connect())
        except BaseException:
            self._loop.stop()
            raise

    # --- plumbing --------------------------------------------------------------------------

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run(coroutine, timeout=self.config.request_timeout * 3)

    async def _connect(self) -> tuple[Client, JetStreamContext, Leases]:
        c = self.config
        nc = await nats.connect(
            c.url,
            name=f"medbridge-{self._holder[:8]}",
            connect_timeout=min(c.request_timeout, 5.0),
            max_reconnect_attempts=2,  # a server that is not there fails the start at once
            error_cb=_log_error,
        )
        nc.options["max_reconnect_attempts"] = -1  # once connected, reconnect for ever
        try:
            js, leases = await self._prepare(nc)
        except BaseException:
            await nc.close()
            raise
        return nc, js, leases

    async def _prepare(self, nc: Client) -> tuple[JetStreamContext, Leases]:
        """The stream (created, or checked and updated) and the lease bucket."""
        c = self.config
        js = nc.jetstream(timeout=c.request_timeout)
        stream = api.StreamConfig(
            name=c.stream,
            description=f"MedBridge event log, partitions={c.partitions}",
            subjects=[f"{c.subject_prefix}.*"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            duplicate_window=c.duplicate_window,
        )
        try:
            await js.add_stream(stream)
        except nats.js.errors.BadRequestError as error:
            if error.err_code != 10058:  # "stream name already in use" with another config
                raise
            existing = await js.stream_info(c.stream)
            if existing.config.description != stream.description:
                raise BusError(
                    f"stream {c.stream} was made with other partitions "
                    f"({existing.config.description!r}): keep their count"
                ) from error
            await js.update_stream(stream)  # e.g. another duplicate window
        return js, Leases(await self._lease_bucket(js), self._holder, c.ack_wait / 2)

    async def _lease_bucket(self, js: JetStreamContext) -> KeyValue:
        """Leases live twice the ack wait (see ``jetstream_support``); a bucket made with
        another ack wait is brought to this one."""
        bucket, ttl = f"{self.config.stream}_leases", 2 * self.config.ack_wait
        try:
            return await js.create_key_value(bucket=bucket, ttl=ttl, history=1)
        except nats.js.errors.BadRequestError as error:
            if error.err_code != 10058:
                raise
        info = await js.stream_info(f"KV_{bucket}")
        await js.update_stream(info.config.evolve(max_age=ttl, duplicate_window=min(ttl, 120.0)))
        return await js.key_value(bucket)

    def _subject(self, partition: int) -> str:
        return f"{self.config.subject_prefix}.{partition}"

    @staticmethod
    def _durable(group: str, partition: int) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in group)
        return f"{safe}-p{partition}"

    async def _consumer(self, group: str, partition: int) -> str:
        name = self._durable(group, partition)
        if name not in self._consumers:
            await self._js.add_consumer(
                self.config.stream,
                api.ConsumerConfig(
                    durable_name=name,
                    deliver_policy=api.DeliverPolicy.ALL,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=self.config.ack_wait,
                    max_deliver=-1,
                    max_ack_pending=self.config.max_ack_pending,
                    filter_subject=self._subject(partition),
                ),
            )
            self._consumers.add(name)
        return name

    def _held_of(self, group: str, partition: int) -> _Held:
        return self._held.setdefault((group, partition), _Held())

    # --- append ----------------------------------------------------------------------------

    def append(self, events: Sequence[EventEnvelope[Any]]) -> list[AppendResult]:
        if not events:
            return []
        with APPEND_SECONDS.time():
            results: list[AppendResult] = self._run(self._append(events))
        return results

    async def _append(self, events: Sequence[EventEnvelope[Any]]) -> list[AppendResult]:
        first: dict[str, int] = {}  # idempotency key -> index of its first occurrence
        owner: dict[UUID, str] = {}  # event id -> key: one id under two keys is refused
        outgoing: list[tuple[int, str, bytes, dict[str, str]]] = []
        for index, event in enumerate(events):
            key = event.idempotency_key
            if key in first:
                continue
            if owner.setdefault(event.id, key) != key:
                raise BusError(f"event id {event.id} appears under two idempotency keys")
            first[key] = index
            headers, data = _headers(event), event.model_dump_json().encode()
            size = len(data) + sum(len(k) + len(v) + 4 for k, v in headers.items())
            if size > self._nc.max_payload:
                raise BusError(f"event {event.id} is {size} bytes, over {self._nc.max_payload}")
            outgoing.append((index, self._subject(self.partition_of(event.subject)), data, headers))
        futures = [
            await self._js.publish_async(subject, data, headers=headers)
            for _, subject, data, headers in outgoing
        ]
        acks = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), self.config.request_timeout
        )
        for ack in acks:
            if isinstance(ack, BaseException):
                raise ack
        stored: dict[int, AppendResult] = {}
        for (index, _, _, _), ack in zip(outgoing, acks, strict=True):
            assert isinstance(ack, api.PubAck)
            event = events[index]
            if ack.duplicate:
                original = await self._get(ack.seq)
                if original is None:
                    raise BusUnavailable(f"original of duplicate seq {ack.seq} not readable")
                stored[index] = AppendResult(
                    UUID(original.event_id), ack.seq, True, UUID(original.correlation_id)
                )
            else:
                stored[index] = AppendResult(event.id, ack.seq, False, event.correlation)
        results = []
        for index, event in enumerate(events):
            result = stored[first[event.idempotency_key]]
            if first[event.idempotency_key] != index:
                result = AppendResult(result.event_id, result.seq, True, result.correlation_id)
            results.append(result)
        return results

    # --- reading ---------------------------------------------------------------------------

    def get(self, seq: int) -> BusMessage | None:
        message: BusMessage | None = self._run(self._get(seq))
        return message

    async def _get(self, seq: int) -> BusMessage | None:
        try:
            raw = await self._js.get_msg(self.config.stream, seq)
        except nats.js.errors.NotFoundError:
            return None
        subject = raw.subject or ""
        if not subject.startswith(f"{self.config.subject_prefix}.") or raw.seq is None:
            return None
        return _message(raw.seq, subject, dict(raw.headers or {}), raw.data or b"")

    def fetch(self, group: str, partition: int, limit: int) -> list[BusMessage]:
        messages: list[BusMessage] = self._run(self._fetch(group, partition, limit))
        return messages

    async def _fetch(self, group: str, partition: int, limit: int) -> list[BusMessage]:
        held = self._held_of(group, partition)
        async with held.lock:
            key = Leases.key(group, partition)
            if key in self._leases.lost:  # taken over: what we held is the new holder's now
                self._leases.lost.discard(key)
                held.messages.clear()
                held.dead.clear()
            if len(held.messages) < limit:
                await self._pull(group, partition, held, limit - len(held.messages))
            return held.ordered()[:limit]

    async def _pull(self, group: str, partition: int, held: _Held, batch: int) -> None:
        name = await self._consumer(group, partition)
        key = Leases.key(group, partition)
        if not held.messages:
            info = await self._js.consumer_info(self.config.stream, name)
            if not (info.num_pending or info.num_ack_pending):
                return
            if not await self._leases.acquire(key):
                return  # another process holds this partition's uncommitted messages
        for message in await self._next(name, batch):
            seq = message.metadata.sequence.stream
            headers = message.headers or {}
            held.messages[seq] = (_message(seq, message.subject, headers, message.data), message)
        if not held.messages:
            await self._leases.release(key)

    async def _next(self, consumer: str, batch: int) -> list[Msg]:
        """Pull up to ``batch`` messages that are available now (no_wait: no lingering)."""
        inbox = self._inboxes.get(consumer)
        if inbox is None:
            inbox = await self._nc.subscribe(self._nc.new_inbox())
            self._inboxes[consumer] = inbox
        messages: list[Msg] = []
        while inbox.pending_msgs:  # left by an earlier pull that timed out: keep deliveries
            late = await inbox.next_msg(timeout=self.config.request_timeout)
            if (late.headers or {}).get(api.Header.STATUS) is None:
                messages.append(late)
        if len(messages) >= batch:
            return messages
        request = f'{{"batch": {batch}, "no_wait": true}}'.encode()
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.config.stream}.{consumer}",
            request,
            reply=inbox.subject,
        )
        while len(messages) < batch:
            message = await inbox.next_msg(timeout=self.config.request_timeout)
            status = (message.headers or {}).get(api.Header.STATUS)
            if status is None:
                messages.append(message)
            elif status in ("404", "408"):  # no (more) messages / request expired
                break
            elif status != "100":  # 100 = heartbeat
                raise BusError(f"pull from {consumer} refused: {status} {message.headers}")
        return messages

    # --- positions -------------------------------------------------------------------------

    def commit(self, group: str, partition: int, seq: int) -> None:
        self._run(self._commit(group, partition, seq))

    async def _commit(self, group: str, partition: int, seq: int) -> None:
        held = self._held_of(group, partition)
        async with held.lock:
            done = [s for s in sorted(held.messages) if s <= seq]
            for position, stream_seq in enumerate(done):
                _, message = held.messages[stream_seq]
                verdict = b"+TERM" if stream_seq in held.dead else b"+ACK"
                if position < len(done) - 1:
                    await self._nc.publish(message.reply, verdict)
                else:  # the server confirms the last, so every earlier one is processed too
                    await self._nc.request(
                        message.reply, verdict, timeout=self.config.request_timeout
                    )
            for stream_seq in done:
                del held.messages[stream_seq]
                held.dead.discard(stream_seq)
            if not held.messages:
                await self._leases.release(Leases.key(group, partition))

    def dead_letter(
        self,
        group: str,
        message: BusMessage,
        error: BaseException,
        attempts: int,
        context: dict[str, Any],
    ) -> None:
        self.dead_letter_store.dead_letter(group, message, error, attempts, context)
        self._run(self._mark_dead(group, message))

    async def _mark_dead(self, group: str, message: BusMessage) -> None:
        held = self._held_of(group, message.partition)
        async with held.lock:
            if message.seq in held.messages:
                held.dead.add(message.seq)

    def lag(self, group: str) -> int:
        lag: int = self._run(self._lag(group))
        return lag

    async def _lag(self, group: str) -> int:
        total = 0
        for partition in range(self.partitions):
            name = await self._consumer(group, partition)
            info = await self._js.consumer_info(self.config.stream, name)
            total += (info.num_pending or 0) + (info.num_ack_pending or 0)
        return total

    def oldest_unconsumed(self, group: str) -> datetime | None:
        oldest: datetime | None = self._run(self._oldest_unconsumed(group))
        return oldest

    async def _oldest_unconsumed(self, group: str) -> datetime | None:
        """Per partition, the first message of its subject after the consumer's ack floor
        (everything at or below the floor is acknowledged); the oldest of them."""
        found: list[datetime] = []
        for partition in range(self.partitions):
            name = await self._consumer(group, partition)
            info = await self._js.consumer_info(self.config.stream, name)
            if not (info.num_pending or 0) + (info.num_ack_pending or 0):
                continue
            floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
            try:
                message = await self._js.get_msg(
                    self.config.stream,
                    seq=(floor or 0) + 1,
                    subject=self._subject(partition),
                    next=True,
                )
            except nats.js.errors.NotFoundError:
                continue
            if message.time is not None:
                found.append(message.time)
        return min(found, default=None)

    # --- life cycle ------------------------------------------------------------------------

    def close(self, hand_back: bool = True) -> None:
        """Disconnect. ``hand_back``: nak what is fetched and uncommitted and give the leases
        back, so that another process takes the share over at once; without it the process
        leaves what a crash leaves (taken over after the ack wait and the lease's expiry)."""
        if self._loop.loop.is_closed():
            return
        try:
            self._run(self._close(hand_back))
        finally:
            self._loop.stop()

    async def _close(self, hand_back: bool) -> None:
        await self._leases.stop()
        if hand_back:
            for held in self._held.values():
                for seq in sorted(held.messages):
                    await self._nc.publish(held.messages[seq][1].reply, b"-NAK")
                held.messages.clear()
            await self._nc.flush()
            await self._leases.release_all()
            await self._nc.drain()
        else:
            await self._nc.close()

    def delete_stream(self) -> None:
        """Delete the stream and its leases (tests, and decommissioning a log)."""
        self._run(self._delete_stream())

    async def _delete_stream(self) -> None:
        await self._js.delete_stream(self.config.stream)
        await self._js.delete_key_value(f"{self.config.stream}_leases")
