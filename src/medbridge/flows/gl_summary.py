"""The summarizer of summarised GL posting (``domain.gl_summary``): closes slices and posts
their summaries to the ERP.

Each round (``run_once``):

1. Close: every ``summarising`` entry in no summary yet goes to its slice (its event's, or the
   first after its facility's last closed slice: a late event goes to the next open slice,
   and its own slice is kept beside it). A slice whose end plus ``grace`` has passed is
   closed, oldest first: its summary row and its entries' links in one transaction. The
   summary's key is derived from the slice, so a second summarizer (or a re-run) closing the
   same slice fails on it and changes nothing.
2. Post (never inside the ERP's hold windows): up to ``batch_size`` due summaries, their
   lines summed in the database, in ONE port call (``post_journal_entries``: idempotent per
   entry id, here the summary id, in the ERP: a lost answer or a re-run finds the move, never
   makes a second). Per summary: ``ErpRef`` posted (and every entry in it posted with the
   same move); ``ErpRejected`` failed with the reason (``requeue`` after the fix).
   ``ErpUnavailable``, ``ErpAuthError`` or another error for the call: every summary of it
   pending again after ``retry.backoff`` (bounded by ``retry.max_attempts`` for other errors).

Per destination: the summarizer of a destination runs in its outbox worker's thread
(``ErpPosting.run(periodic=...)``) and takes that worker's rate limiter and circuit breaker:
every call to one ERP, an entry's, a document's or a summary's, counts against one limit and
one circuit.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from medbridge.bus.outbound import CircuitBreaker, RateLimiter
from medbridge.bus.port import RetryPolicy
from medbridge.canonical.erp import ErpAuthError, ErpPort, ErpRejected, ErpUnavailable
from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.movements import MovementKind
from medbridge.domain.erp_routing import DEFAULT_DESTINATION
from medbridge.domain.gl_summary import (
    CONSUMPTION,
    GlPostingMode,
    SummaryPeriod,
    slice_for,
    slice_start,
    summary_entry,
    summary_id,
)
from medbridge.flows.erp_posting import PostingWindows
from medbridge.observability.logging import get_logger
from medbridge.store import gl_summaries
from medbridge.store.gl_summaries import Summary

log = get_logger(__name__)


@dataclass(frozen=True)
class GlPostingPolicy:
    """How the general ledger receives MedBridge's entries (per destination, later)."""

    mode: GlPostingMode = GlPostingMode.PER_EVENT
    destination: str = DEFAULT_DESTINATION
    """The ERP destination whose summaries this is (each summarises its own entries)."""
    period: SummaryPeriod = SummaryPeriod.HOUR
    grace: float = 300.0  # seconds after a slice's end before it is closed
    summarised_kinds: frozenset[MovementKind] = CONSUMPTION
    batch_size: int = 50  # summaries per ERP call
    lease: float = 300.0
    interval: float = 30.0  # seconds between rounds
    windows: PostingWindows = field(default_factory=PostingWindows)  # the ERP's hold windows
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=10, initial_backoff=5.0, max_backoff=300.0)
    )

    def summarises(self, kind: MovementKind) -> bool:
        return self.mode is GlPostingMode.SUMMARISED and kind in self.summarised_kinds


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GlSummarizer:
    """``run(stop)`` in production; ``close_slices()``/``post_due()``/``run_once()`` in tests."""

    def __init__(
        self,
        engine: Engine,
        erp: ErpPort,
        policy: GlPostingPolicy,
        *,
        now: Callable[[], datetime] = _utcnow,
        limiter: RateLimiter | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.engine, self.erp, self.policy, self._now = engine, erp, policy, now
        self.limiter, self.breaker = limiter, breaker
        """The destination's (its outbox worker's): None, unlimited and no circuit."""

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # the round is repeated: nothing of it was committed half
                log.exception("gl_summary.round_failed")
            stop.wait(self.policy.interval)

    def run_once(self) -> tuple[int, int]:
        """Close what is closable, post what is due: (slices closed, summaries settled)."""
        return self.close_slices(), self.post_due()

    def close_slices(self) -> int:
        period, now = self.policy.period, self._now()
        grace = timedelta(seconds=self.policy.grace)
        try:
            with self.engine.begin() as conn:
                dest = self.policy.destination
                last = gl_summaries.last_closed(conn, period, dest)
                slices: dict[tuple[str, datetime], list[tuple[str, datetime]]] = defaultdict(list)
                # a slice closes once its end + grace has passed: only events before the end
                # of the latest such slice can be in one (a late one goes to a later slice)
                latest = slice_start(now - grace - period.length, period) + period.length
                for a in gl_summaries.awaiting(conn, before=latest, destination=dest):
                    own = slice_start(a.occurred_at, period)
                    start = slice_for(a.occurred_at, period, last.get(a.facility))
                    slices[(a.facility, start)].append((a.entry_id, own))
                closed = 0
                for (facility, start), members in sorted(slices.items(), key=lambda kv: kv[0][1]):
                    if start + period.length + grace > now:
                        continue
                    ident = summary_id(facility, start, period)
                    gl_summaries.close(conn, ident, facility, start, period, members, now, dest)
                    log.info("gl_summary.closed", summary_id=ident, entries=len(members))
                    closed += 1
        except IntegrityError:  # another summarizer closed a slice first: look again next round
            log.info("gl_summary.close_raced")
            return 0
        return closed

    def post_due(self) -> int:
        now = self._now()
        if self.policy.windows.held(now):
            return 0
        with self.engine.begin() as conn:
            due = gl_summaries.claim(
                conn,
                self.policy.batch_size,
                now,
                timedelta(seconds=self.policy.lease),
                self.policy.destination,
            )
            built = [(s, self._entry(conn, s)) for s in due]
        if not due:
            return 0
        empty = [s for s, entry in built if entry is None]
        to_post = [(s, entry) for s, entry in built if entry is not None]
        settled = 0
        with self.engine.begin() as conn:
            for s in empty:
                gl_summaries.mark_posted(conn, s.summary_id, None, now, s.destination)
                settled += 1
        if not to_post:
            return settled
        if self.breaker is not None and not self.breaker.allow():
            return settled + self._retry([s for s, _ in to_post], None, bounded=False)
        if self.limiter is not None:
            self.limiter.acquire()
        try:
            results = self.erp.post_journal_entries([entry for _, entry in to_post])
            if len(results) != len(to_post):
                raise TypeError(f"{len(results)} results for {len(to_post)} summaries")
        except (ErpUnavailable, ErpAuthError) as error:
            if self.breaker is not None:
                if isinstance(error, ErpAuthError):
                    self.breaker.trip()
                else:
                    self.breaker.failure()
            return settled + self._retry([s for s, _ in to_post], error, bounded=False)
        except Exception as error:  # an adapter bug or an unmapped error: bounded retries
            log.exception("gl_summary.posting_error")
            return settled + self._retry([s for s, _ in to_post], error, bounded=True)
        if self.breaker is not None:
            self.breaker.success()
        with self.engine.begin() as conn:
            for (s, _), result in zip(to_post, results, strict=True):
                if isinstance(result, ErpRejected):
                    reason = f"{type(result).__name__}: {result}"
                    gl_summaries.mark_failed(conn, s.summary_id, reason, s.destination)
                    log.warning("gl_summary.rejected", summary_id=s.summary_id, reason=reason)
                else:
                    gl_summaries.mark_posted(
                        conn, s.summary_id, result.erp_id, self._now(), s.destination
                    )
                settled += 1
        return settled

    def _entry(self, conn: Connection, summary: Summary) -> JournalEntry | None:
        net, count, currencies = gl_summaries.net_lines(
            conn, summary.summary_id, summary.destination
        )
        if len(currencies) > 1:
            raise ValueError(f"summary {summary.summary_id} mixes currencies {currencies}")
        return summary_entry(
            net,
            entries=count,
            facility=summary.facility,
            start=summary.slice_start,
            period=summary.period,
            currency=currencies.pop() if currencies else "USD",
        )

    def _retry(self, due: list[Summary], error: Exception | None, *, bounded: bool) -> int:
        """Every summary of ``due`` pending again after backoff (``error`` None: the circuit
        is open, nothing was tried); bounded: failed after ``retry.max_attempts``."""
        reason = f"{type(error).__name__}: {error}" if error else "the ERP's circuit is open"
        failed = 0
        with self.engine.begin() as conn:
            for s in due:
                attempts = s.attempts + 1
                if bounded and attempts >= self.policy.retry.max_attempts:
                    gl_summaries.mark_failed(conn, s.summary_id, reason, s.destination)
                    failed += 1
                    continue
                at = self._now() + timedelta(seconds=self.policy.retry.backoff(attempts))
                gl_summaries.mark_retry(conn, s.summary_id, reason, at, s.destination)
        log.warning("gl_summary.retry", summaries=len(due), error=reason)
        return failed
