"""The consumer loop, the same over every Bus adapter.

For each partition in turn: fetch a batch after the group's position and hand it to the
handler in one call (one transaction). If the batch fails, each message is redelivered alone,
so that one bad message cannot hold back the others: it is retried with backoff and jitter
(``RetryPolicy``), then dead-lettered with its error, and the position moves past it. While a
message is being retried its partition waits, which keeps per-key order. An infrastructure
failure (``RetryPolicy.halt_on``) is nobody's message's fault: the round stops, nothing is
dead-lettered, and ``run`` tries again after a pause.

With tracing on, every handler call is one ``<group> process`` span per message, each a child
of the producer's context carried in the message's ``traceparent`` (``tracing.deliveries``);
a retry or a replay is a new span in the same trace.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medbridge.bus.port import Bus, BusMessage, DeadLetterFilter, Handler, RetryPolicy
from medbridge.observability import metrics, tracing
from medbridge.observability.logging import get_logger

log = get_logger(__name__)


@dataclass
class ReplayReport:
    applied: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


class Consumer:
    def __init__(
        self,
        bus: Bus,
        group: str,
        handler: Handler,
        retry: RetryPolicy,
        *,
        batch_size: int = 500,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bus, self.group, self.handler, self.retry = bus, group, handler, retry
        self.batch_size, self._sleep = batch_size, sleep

    def poll_once(self) -> int:
        """Deliver at most one batch per partition; return how many messages were handled."""
        handled = 0
        for partition in range(self.bus.partitions):
            batch = self.bus.fetch(self.group, partition, self.batch_size)
            if batch:
                self._deliver_batch(partition, batch)
                handled += len(batch)
        return handled

    def drain(self, max_rounds: int = 1_000_000) -> int:
        """Deliver until nothing is left (tests, the CLI, benchmarks)."""
        total = 0
        for _ in range(max_rounds):
            handled = self.poll_once()
            if not handled:
                break
            total += handled
        return total

    def run(self, stop: threading.Event, idle_sleep: float = 0.05) -> None:
        log.info("consumer.started", group=self.group)
        while not stop.is_set():
            try:
                handled = self.poll_once()
            except Exception:  # the bus or an infrastructure the handler needs failed
                log.exception("consumer.poll_failed", group=self.group)
                metrics.stage(self.group, "poll_error").inc()
                stop.wait(max(idle_sleep, self.retry.initial_backoff))
                continue
            if not handled:
                stop.wait(idle_sleep)
        log.info("consumer.stopped", group=self.group)

    def _handle(self, messages: list[BusMessage], attempt: int = 1) -> None:
        with tracing.deliveries(self.group, messages, attempt):
            self.handler(messages)

    def _deliver_batch(self, partition: int, batch: list[BusMessage]) -> None:
        try:
            self._handle(batch)
        except Exception as error:
            if self.retry.halts(error):
                raise
            log.warning(
                "consumer.batch_failed",
                group=self.group,
                size=len(batch),
                error=str(error),
                error_type=type(error).__name__,
            )
            for message in batch:
                self._deliver_one(message)
                self.bus.commit(self.group, partition, message.seq)
        else:
            self.bus.commit(self.group, partition, batch[-1].seq)
            metrics.stage(self.group, "applied").inc(len(batch))

    def _deliver_one(self, message: BusMessage) -> None:
        attempt = 1
        while True:
            try:
                self._handle([message], attempt)
            except Exception as error:
                if self.retry.halts(error):
                    raise
                if self.retry.is_permanent(error) or attempt >= self.retry.max_attempts:
                    self._dead_letter(message, error, attempt)
                    return
                delay = self.retry.backoff(attempt)
                log.info(
                    "consumer.retry",
                    group=self.group,
                    event_id=message.event_id,
                    correlation_id=message.correlation_id,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=str(error),
                )
                metrics.stage(self.group, "retried").inc()
                self._sleep(delay)
                attempt += 1
            else:
                metrics.stage(self.group, "applied").inc()
                return

    def _dead_letter(self, message: BusMessage, error: BaseException, attempts: int) -> None:
        context: dict[str, Any] = {
            "partition": message.partition,
            "idempotency_key": message.idempotency_key,
            "permanent": self.retry.is_permanent(error),
            "handler": self.handler.name,
        }
        self.bus.dead_letter(self.group, message, error, attempts, context)
        metrics.stage(self.group, "dead_lettered").inc()
        log.error(
            "consumer.dead_lettered",
            group=self.group,
            event_id=message.event_id,
            correlation_id=message.correlation_id,
            attempts=attempts,
            error_type=type(error).__name__,
            error=str(error),
        )

    def replay(self, selection: DeadLetterFilter, *, actor: str) -> ReplayReport:
        """Redeliver the selected dead letters of this group once each (idempotent handler:
        one already applied is not applied again); each outcome is audited as ``actor``'s,
        with the dead letter's update. The handler commits its effect first: after a crash
        between the two, the letter is still ``dead`` and unaudited, and replaying it again
        applies nothing twice and records the replay."""
        report = ReplayReport()
        scoped = DeadLetterFilter(
            group=self.group,
            ids=selection.ids,
            event_type=selection.event_type,
            subject=selection.subject,
            error_type=selection.error_type,
            status="dead",
            limit=selection.limit,
        )
        store = self.bus.dead_letter_store
        for dead in store.dead_letters(scoped):
            message = self.bus.get(dead.event_seq)
            if message is None:
                report.failed[dead.id] = "event no longer in the log"
                continue
            try:
                self._handle([message], dead.attempts + 1)
            except Exception as error:
                store.record_replay_failure(dead.id, error, dead.attempts + 1, actor=actor)
                report.failed[dead.id] = f"{type(error).__name__}: {error}"
                log.warning(
                    "dlq.replay_failed", group=self.group, dead_letter=dead.id, error=str(error)
                )
            else:
                store.mark_replayed(dead.id, actor=actor)
                report.applied.append(dead.id)
                log.info(
                    "dlq.replayed",
                    group=self.group,
                    dead_letter=dead.id,
                    correlation_id=dead.correlation_id,
                )
        return report


def format_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))
