"""Buffered posting to one ERP destination: the worker that drains that destination's rows of
the ``erp_postings`` outbox (see ``store.erp_postings``): the journal entries (written with
each entry) and the workflow steps' documents (purchase orders, their confirmations and
cancellations, goods receipts, supplier invoices, queued by ``flows.erp_calls``). Nothing else
in MedBridge calls the ERP for these: every such call is made here, under this destination's
rate limit, circuit breaker and hold windows.

Each round: nothing during a hold window or while the circuit is open; otherwise claim up to
``batch_size`` due postings and post the journal entries among them in ONE port call,
``post_journal_entries`` (the adapter's list create and post: for Tryton one search, one
create, one post for the batch), after taking ONE token of the rate limiter; then each
document of a workflow, one port call per token (a supplier invoice is two calls, create and
post: two tokens). The limit is therefore in ERP calls (port calls) per second, and a token
buys a batch: at ``rate_limit`` r and ``batch_size`` b the worker posts up to r x b
entries/s while the ERP sees at most r calls/s from it (each call a few JSON-RPC requests,
see the adapter). What happens after the call is declared here, per entry
where the ERP answered per entry, for the whole batch where the call itself failed:

- ``ErpRef`` (created, or already there): posted with the ERP's id.
- ``ErpRejected`` for an entry (the others of the batch post): failed with the reason, a dead
  letter (``requeue`` after the fix).
- The call answered: the circuit notes one success (also when it rejected some entries).
- ``ErpUnavailable`` raised: every entry pending, retried after ``RetryPolicy.backoff`` and
  never dead-lettered (an outage fills the buffer, it must not empty it into the dead
  letters); one circuit failure per call.
- ``ErpAuthError`` raised: every entry pending and untouched (not the documents' fault); the
  circuit is tripped for ``auth_cool_down``: N tries with refused credentials would only lock
  the account.
- any other error: every entry pending with backoff, failed after ``retry.max_attempts``.

Every call that ends (posted, rejected) is an outbound message of the message store
(``acknowledged`` with the ERP's move, ``failed`` with the reason), written in the
transaction of its outcome; retried calls are not.

Exactly once: ``post_journal_entries`` is idempotent per ``entry_id`` in the ERP (the port's
contract), so a lost answer, a crash after the call, or a lease that expired only leads to a
repeat call that finds the moves already there and creates only the missing ones. A
workflow document likewise: the ERP finds an order, a receipt or an invoice by its reference
(a confirmation or cancellation of an order in that state already changes nothing).

With tracing on, each entry of a call is an ``erp.post`` span (CLIENT), a child of the ledger
posting that queued it (its trace context is kept in the outbox row): the dispense's trace ends
at the ERP, however long the posting waited in the buffer (see ``_Spans`` for the JSON-RPC
calls of a batch of several).
"""

from __future__ import annotations

import json
import threading
import time as _time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, Engine

from medbridge.bus.outbound import BreakerState, CircuitBreaker, RateLimiter
from medbridge.bus.port import RetryPolicy
from medbridge.canonical.erp import (
    ErpAuthError,
    ErpPort,
    ErpRef,
    ErpRejected,
    ErpUnavailable,
)
from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.messages import Direction, MessageRecord, MessageStatus
from medbridge.canonical.procurement import GoodsReceipt, PurchaseOrder, SupplierInvoice
from medbridge.domain.erp_routing import DEFAULT_DESTINATION
from medbridge.observability import tracing
from medbridge.observability.logging import get_logger
from medbridge.store import erp_circuits, erp_postings, gl_summaries
from medbridge.store import ledger as ledger_store
from medbridge.store import messages as message_store
from medbridge.store.erp_postings import DocumentKind

log = get_logger(__name__)

CIRCUIT_STATE = Gauge(
    "medbridge_erp_circuit_state",
    "The ERP circuit breaker: 0 closed, 1 open, 2 half-open",
    ["erp"],
)
POSTINGS = Counter(
    "medbridge_erp_postings",
    "Journal entry postings to the ERP, by outcome (posted, failed, retried, auth_error)",
    ["erp", "outcome"],
)


@dataclass(frozen=True)
class HoldWindow:
    """A daily period (local time) during which nothing is posted; may cross midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> HoldWindow:
        """``"HH:MM-HH:MM"``, e.g. ``"23:30-01:00"`` for a nightly close."""
        try:
            start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
        except ValueError as error:
            raise ValueError(f"hold window {text!r} is not HH:MM-HH:MM") from error
        if start == end:
            raise ValueError(f"hold window {text!r} is empty")
        return cls(start, end)

    def holds(self, at: time) -> bool:
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end


@dataclass(frozen=True)
class PostingWindows:
    holds: tuple[HoldWindow, ...] = ()
    timezone: str = "UTC"

    @classmethod
    def parse(cls, windows: Sequence[str], timezone: str = "UTC") -> PostingWindows:
        ZoneInfo(timezone)  # fail at start-up on a bad name, not at the first posting
        return cls(tuple(HoldWindow.parse(w) for w in windows), timezone)

    def held(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone)).time().replace(tzinfo=None)
        return any(w.holds(local) for w in self.holds)


@dataclass(frozen=True)
class ErpPostingPolicy:
    """How postings flow to the ERP. ``retry.max_attempts`` bounds only unexpected errors."""

    erp_name: str = DEFAULT_DESTINATION
    batch_size: int = 50
    rate_limit: float = 10.0  # calls per second
    burst: int = 1
    failure_threshold: int = 5  # consecutive ErpUnavailable that open the circuit
    cool_down: float = 30.0  # seconds open before a trial call
    auth_cool_down: float = 300.0  # seconds open after the ERP refused the credentials
    lease: float = 300.0  # seconds a claimed posting is reserved for this worker
    windows: PostingWindows = PostingWindows()
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=10, initial_backoff=1.0, max_backoff=300.0)
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ErpPosting:
    """The worker. ``run(stop)`` in production; ``poll_once()``/``drain()`` in tests."""

    def __init__(
        self,
        engine: Engine,
        erp: ErpPort,
        policy: ErpPostingPolicy | None = None,
        *,
        now: Callable[[], datetime] = _utcnow,
        clock: Callable[[], float] = _time.monotonic,
        sleep: Callable[[float], None] = _time.sleep,
    ) -> None:
        self.engine, self.erp = engine, erp
        self.policy = policy = policy or ErpPostingPolicy()
        self._now, self._sleep = now, sleep
        self.limiter = RateLimiter(policy.rate_limit, policy.burst, clock=clock, sleep=sleep)
        self._circuit_unrecorded: tuple[BreakerState, datetime] | None = None
        gauge = CIRCUIT_STATE.labels(erp=policy.erp_name)
        self.breaker = CircuitBreaker(
            policy.failure_threshold,
            policy.cool_down,
            clock=clock,
            on_change=self._circuit_changed(gauge),
        )
        self._outcomes = {
            o: POSTINGS.labels(erp=policy.erp_name, outcome=o)
            for o in ("posted", "failed", "retried", "auth_error")
        }

    def _circuit_changed(self, gauge: Gauge) -> Callable[[BreakerState], None]:
        def circuit_changed(state: BreakerState) -> None:
            gauge.set(int(state))
            self._circuit_unrecorded = (state, self._now())
            log.info("erp.circuit", erp=self.policy.erp_name, state=state.name.lower())

        return circuit_changed

    # --- one round -----------------------------------------------------------------------

    def held(self) -> bool:
        return self.policy.windows.held(self._now())

    def record_circuit(self) -> None:
        """Write the breaker's last change to ``erp_circuits`` for the other processes (outside
        the breaker's lock; a write that fails is tried again after the next round)."""
        change = self._circuit_unrecorded
        if change is None:
            return
        state, at = change
        with self.engine.begin() as conn:
            erp_circuits.record(conn, self.policy.erp_name, state.name.lower(), at)
        if self._circuit_unrecorded is change:
            self._circuit_unrecorded = None

    def poll_once(self) -> int:
        """Post at most one batch; return how many postings were settled (posted or failed).
        The circuit's changes are recorded after the round."""
        try:
            return self._poll()
        finally:
            self.record_circuit()

    def _poll(self) -> int:
        if self.held() or self.breaker.retry_in() > 0:
            return 0
        now, name = self._now(), self.policy.erp_name
        with self.engine.begin() as conn:
            claimed = erp_postings.claim(
                conn, name, self.policy.batch_size, now, timedelta(seconds=self.policy.lease)
            )
            if not claimed:
                return 0
            kinds = {p.document: p.kind for p in claimed}
            journal = [p.document for p in claimed if p.kind is DocumentKind.JOURNAL_ENTRY]
            entries = (
                ledger_store.journal(conn, entry_ids=journal, limit=len(journal)) if journal else []
            )
            traces = erp_postings.trace_contexts(conn, name, journal) if tracing.enabled() else {}
        documents = [p for p in claimed if p.kind is not DocumentKind.JOURNAL_ENTRY]
        if self.held() or not self.breaker.allow():
            with self.engine.begin() as conn:
                erp_postings.release(conn, name, list(kinds), self._now())
            return 0
        settled = 0
        if entries:
            with _Spans(entries, traces, name) as spans:
                settled += self._send(entries, spans)
        for posting in documents:  # one ERP call (one token) each
            if self.breaker.retry_in() > 0:
                with self.engine.begin() as conn:
                    erp_postings.release(conn, name, [posting.document], self._now())
                continue
            settled += self._send_document(posting)
        return settled

    def _send(self, entries: Sequence[JournalEntry], spans: _Spans) -> int:
        """One port call (one rate-limit token) for the whole batch, its outcome per entry."""
        self.limiter.acquire()
        try:
            results = self.erp.post_journal_entries(entries)
            if len(results) != len(entries):
                raise TypeError(f"{len(results)} results for {len(entries)} entries")
        except ErpUnavailable as error:
            self.breaker.failure()
            spans.annotate_all(
                **{"medbridge.erp.outcome": "unavailable", "error.type": _name(error)}
            )
            return self._retry([e.entry_id for e in entries], error)
        except ErpAuthError as error:
            self._auth_refused([e.entry_id for e in entries], error)
            spans.annotate_all(
                **{"medbridge.erp.outcome": "auth_error", "error.type": _name(error)}
            )
            return 0
        except Exception as error:  # an adapter bug or an unmapped error: bounded retries
            log.exception("erp.posting_error", entries=[e.entry_id for e in entries])
            spans.annotate_all(**{"medbridge.erp.outcome": "error", "error.type": _name(error)})
            return self._retry([e.entry_id for e in entries], error, bounded=True)
        self.breaker.success()  # the ERP answered, also for the entries it refused
        with self.engine.begin() as conn:
            for entry, result in zip(entries, results, strict=True):
                if isinstance(result, ErpRejected):
                    self._rejected(conn, entry, result, spans)
                else:
                    self._posted(conn, entry, result, spans)
        return len(entries)

    def _send_document(self, posting: erp_postings.Posting) -> int:
        """A workflow's document (an order, its confirmation, a receipt, an invoice): one
        port call after one token; its outcome as for an entry."""
        self.limiter.acquire()
        try:
            erp_id, result = self._call(posting)
        except ErpUnavailable as error:
            self.breaker.failure()
            return self._retry([posting.document], error)
        except ErpAuthError as error:
            self._auth_refused([posting.document], error)
            return 0
        except ErpRejected as error:
            self.breaker.success()
            reason = _reason(error)
            with self.engine.begin() as conn:
                erp_postings.mark_failed(conn, self.policy.erp_name, posting.document, reason)
                self._record_document(conn, posting, MessageStatus.FAILED, error=reason)
            self._outcomes["failed"].inc()
            log.warning(
                "erp.document_rejected",
                erp=self.policy.erp_name,
                document=posting.document,
                kind=posting.kind.value,
                reason=reason,
            )
            return 1
        except Exception as error:  # an adapter bug or an unmapped error: bounded retries
            log.exception("erp.document_error", document=posting.document)
            return self._retry([posting.document], error, bounded=True)
        self.breaker.success()
        with self.engine.begin() as conn:
            erp_postings.mark_posted(
                conn, self.policy.erp_name, posting.document, erp_id, self._now(), result
            )
            ack = f"{self.policy.erp_name} {posting.kind.value} {erp_id}"
            self._record_document(conn, posting, MessageStatus.ACKNOWLEDGED, ack=ack)
        self._outcomes["posted"].inc()
        return 1

    def _call(self, posting: erp_postings.Posting) -> tuple[str, str | None]:
        """The ERP call of a document kind: (the ERP's id, what else it answered)."""
        kind, payload, erp = posting.kind, posting.payload or "{}", self.erp
        if kind is DocumentKind.PURCHASE_ORDER:
            return erp.create_purchase_order(
                PurchaseOrder.model_validate_json(payload)
            ).erp_id, None
        if kind is DocumentKind.GOODS_RECEIPT:
            return erp.record_goods_receipt(GoodsReceipt.model_validate_json(payload)).erp_id, None
        if kind is DocumentKind.SUPPLIER_INVOICE:
            ref = erp.create_supplier_invoice(SupplierInvoice.model_validate_json(payload))
            self.limiter.acquire()  # a second port call: a token of its own
            erp.post_supplier_invoice(ref.erp_id)
            return ref.erp_id, None
        order = self._order_id(posting)
        if kind is DocumentKind.ORDER_CONFIRMATION:
            erp.confirm_purchase_order(order)
            return order, None
        if kind is DocumentKind.ORDER_CANCELLATION:
            reason = str(json.loads(payload).get("reason") or posting.document)
            return order, erp.cancel_purchase_order(order, reason)
        raise ErpRejected(f"no ERP call for a {kind.value}", "kind")

    def _order_id(self, posting: erp_postings.Posting) -> str:
        """The id in this ERP of the order a confirmation or cancellation is about (its
        ``after``, posted first: ``claim`` waits for it)."""
        with self.engine.connect() as conn:
            order = erp_postings.get(conn, posting.after or "", self.policy.erp_name)
        if order is None or order.erp_id is None:
            raise ErpRejected(f"order {posting.after} is not in {self.policy.erp_name}", "after")
        return order.erp_id

    def _auth_refused(self, documents: Sequence[str], error: ErpAuthError) -> None:
        self.breaker.trip(self.policy.auth_cool_down)
        self._outcomes["auth_error"].inc(len(documents))
        log.error("erp.auth_refused", erp=self.policy.erp_name, documents=len(documents))
        with self.engine.begin() as conn:
            erp_postings.release(conn, self.policy.erp_name, documents, self._now())

    def _posted(self, conn: Connection, entry: JournalEntry, ref: ErpRef, spans: _Spans) -> None:
        erp_postings.mark_posted(
            conn, self.policy.erp_name, entry.entry_id, ref.erp_id, self._now()
        )
        found = "created" if ref.created else "found already posted"
        ack = f"{self.policy.erp_name} move {ref.erp_id} ({found})"
        self._record(conn, entry, MessageStatus.ACKNOWLEDGED, ack=ack)
        self._outcomes["posted"].inc()
        spans.annotate(
            entry.entry_id,
            **{
                "medbridge.erp.outcome": "posted",
                "medbridge.erp.id": ref.erp_id,
                "medbridge.erp.created": ref.created,
            },
        )
        if not ref.created:
            log.info("erp.posting_found", entry_id=entry.entry_id, erp_id=ref.erp_id)

    def _rejected(
        self, conn: Connection, entry: JournalEntry, error: ErpRejected, spans: _Spans
    ) -> None:
        reason = _reason(error)
        erp_postings.mark_failed(conn, self.policy.erp_name, entry.entry_id, reason)
        self._record(conn, entry, MessageStatus.FAILED, error=reason)
        self._outcomes["failed"].inc()
        log.warning("erp.posting_rejected", entry_id=entry.entry_id, reason=reason)
        spans.annotate(
            entry.entry_id, **{"medbridge.erp.outcome": "rejected", "error.type": _name(error)}
        )

    def _record(
        self,
        conn: Connection,
        entry: JournalEntry,
        status: MessageStatus,
        *,
        ack: str | None = None,
        error: str | None = None,
    ) -> None:
        """The call as an outbound message of the message store, in the transaction of its
        outcome (acknowledged: the ERP holds the move; failed: it refused the entry)."""
        facilities = erp_postings.entry_facilities(conn, entry.entry_id)
        self._write_message(
            conn,
            raw=entry.model_dump_json(),
            message_type="journal_entry",
            document=entry.entry_id,
            business_key=entry.source_event_id,
            facility=next(iter(facilities)) if len(facilities) == 1 else None,
            correlation_id=entry.correlation_id,
            status=status,
            ack=ack,
            error=error,
        )

    def _record_document(
        self,
        conn: Connection,
        posting: erp_postings.Posting,
        status: MessageStatus,
        *,
        ack: str | None = None,
        error: str | None = None,
    ) -> None:
        self._write_message(
            conn,
            raw=posting.payload or json.dumps({"order": posting.after}),
            message_type=posting.kind.value,
            document=posting.document,
            business_key=posting.after or posting.document,
            facility=posting.facility,
            correlation_id=None,
            status=status,
            ack=ack,
            error=error,
        )

    def _write_message(
        self,
        conn: Connection,
        *,
        raw: str,
        message_type: str,
        document: str,
        business_key: str,
        facility: str | None,
        correlation_id: Any,
        status: MessageStatus,
        ack: str | None,
        error: str | None,
    ) -> None:
        name = self.policy.erp_name
        record = MessageRecord(
            protocol="erp",
            connector=name,
            raw=raw,
            direction=Direction.OUT,
            sender=name,
            message_type=message_type,
            control_id=document,
            business_key=business_key,
            facility=facility,
            idempotency_key=f"erp:{name}:{document}",
            correlation_id=correlation_id,
            media_type="application/json",
            status=status,
            ack=ack,
            error=error,
        )
        message_store.write(conn, [record])

    def _retry(self, documents: Sequence[str], error: Exception, bounded: bool = False) -> int:
        """Every document of the call back to pending with backoff (one transaction); with
        ``bounded``, failed once ``retry.max_attempts`` is reached. Returns how many failed."""
        reason = f"{type(error).__name__}: {error}"
        name, failed = self.policy.erp_name, 0
        with self.engine.begin() as conn:
            for document in documents:
                posting = erp_postings.get(conn, document, name)
                attempts = (posting.attempts if posting else 0) + 1
                if bounded and attempts >= self.policy.retry.max_attempts:
                    erp_postings.mark_failed(conn, name, document, reason)
                    failed += 1
                    continue
                delay = timedelta(seconds=self.policy.retry.backoff(attempts))
                erp_postings.mark_retry(conn, name, document, reason, self._now() + delay)
        self._outcomes["failed"].inc(failed)
        self._outcomes["retried"].inc(len(documents) - failed)
        return failed

    # --- loops ---------------------------------------------------------------------------

    def backlog(self) -> int:
        with self.engine.connect() as conn:
            counts = erp_postings.counts(conn, destination=self.policy.erp_name)
        return counts[erp_postings.PostingStatus.PENDING]

    def drain(self, timeout: float = 30.0, idle_sleep: float = 0.005) -> int:
        """Post until nothing is pending (tests, the CLI); stops at once during a hold and
        after ``timeout`` s of real time. Returns how many postings were settled."""
        deadline = _time.monotonic() + timeout
        settled = 0
        while not self.held() and _time.monotonic() < deadline:
            done = self.poll_once()
            settled += done
            if not done:
                if not self.backlog():
                    break
                self._sleep(max(idle_sleep, min(self.breaker.retry_in(), 0.05)))
        return settled

    def run(
        self,
        stop: threading.Event,
        idle_sleep: float = 0.5,
        periodic: tuple[float, Callable[[], object]] | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        """Post until ``stop``; idle ``idle_sleep`` s between empty rounds, or until ``wake``
        is set (a workflow step of this process queued a document and waits for it).
        ``periodic``: (seconds, job) run between rounds that often, in this thread (the
        destination's GL summarizer: its calls then share this worker's rate limiter and
        circuit breaker, see ``GlSummarizer``)."""
        log.info("erp_posting.started", erp=self.policy.erp_name)
        idle = stop if wake is None else wake
        every, job = periodic or (0.0, None)
        next_job = _time.monotonic()
        while not stop.is_set():
            if wake is not None:
                wake.clear()  # set from here on: the next idle wait returns at once
            if job is not None and _time.monotonic() >= next_job:
                try:
                    job()
                except Exception:  # the round is repeated; nothing of it was half-committed
                    log.exception("erp_posting.periodic_failed", erp=self.policy.erp_name)
                next_job = _time.monotonic() + every
            try:
                done = self.poll_once()
            except Exception:  # the database is unreachable: nothing was lost, try again
                log.exception("erp_posting.round_failed", erp=self.policy.erp_name)
                stop.wait(idle_sleep)
                continue
            if not done:
                idle.wait(idle_sleep)
        log.info("erp_posting.stopped", erp=self.policy.erp_name)


def _name(error: BaseException) -> str:
    return type(error).__name__


class _Spans:
    """One ``erp.post`` span (CLIENT) per entry of a batch call, each the child of the ledger
    posting that queued its entry (the trace context kept in the outbox row), ended together
    when the call's outcome is written. The JSON-RPC calls of the batch are children of the
    entry's span when the batch holds one entry, else of one ``erp.post_batch`` span, the root
    of a trace of its own, LINKED to every entry's ``erp.post`` span (a call serves many
    traces: the OpenTelemetry way for a batch, as messaging batches do). Nothing when tracing
    is off.
    """

    def __init__(
        self,
        entries: Sequence[JournalEntry],
        traces: dict[str, tuple[str | None, str | None]],
        erp_name: str,
    ) -> None:
        self._spans: dict[str, tracing.Span] = {}
        self._batch: tracing.Span | None = None
        if not tracing.enabled():
            return
        for entry in entries:
            trace = traces.get(entry.entry_id)
            span = tracing.start_span(
                "erp.post",
                kind=tracing.SpanKind.CLIENT,
                parent=tracing.context_of(*trace) if trace else None,
                attributes={
                    "medbridge.erp.name": erp_name,
                    "medbridge.journal_entry.id": entry.entry_id,
                    "medbridge.event.id": entry.source_event_id,
                    "medbridge.erp.batch_size": len(entries),
                },
            )
            if span is not None:
                self._spans[entry.entry_id] = span
        if len(entries) > 1:
            self._batch = tracing.start_span(
                "erp.post_batch",
                kind=tracing.SpanKind.INTERNAL,
                attributes={
                    "medbridge.erp.name": erp_name,
                    "medbridge.erp.batch_size": len(entries),
                    "medbridge.journal_entry.ids": [e.entry_id for e in entries],
                },
                links=list(self._spans.values()),
            )
        self._scope: AbstractContextManager[None] = nullcontext()

    def __enter__(self) -> _Spans:
        current = self._batch or next(iter(self._spans.values()), None)
        self._scope = tracing.current(current)
        self._scope.__enter__()
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        self._scope.__exit__(None, None, None)
        for span in [*self._spans.values(), self._batch]:
            tracing.end(span, error)

    def annotate(self, entry_id: str, **attributes: Any) -> None:
        span = self._spans.get(entry_id)
        if span is not None:
            span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def annotate_all(self, **attributes: Any) -> None:
        for entry_id in self._spans:
            self.annotate(entry_id, **attributes)


def _reason(error: ErpRejected) -> str:
    return f"{type(error).__name__}: {error}" + (f" (field {error.field})" if error.field else "")


def requeue(engine: Engine, document: str, *, actor: str, destination: str | None = None) -> bool:
    """Put a failed posting (a dead letter) back in the queue, due now: a document's (a
    journal entry's...), or a summary's of summarised posting (``SUM-...``); of
    ``destination``, or of every destination where it failed. False if none was failed.
    Audited as ``actor``'s."""
    with engine.begin() as conn:
        if erp_postings.requeue(conn, document, _utcnow(), actor=actor, destination=destination):
            return True
        return gl_summaries.requeue(conn, document, _utcnow(), actor=actor, destination=destination)
