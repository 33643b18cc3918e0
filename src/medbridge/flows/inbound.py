"""Inbound from connectors: resolve the source's codes, then hand the movements to the intake;
or, when a code does not resolve, park the whole message in the exception queue.

Every connector calls ``InboundIntake.receive`` with the movements of ONE source message and
that message's idempotency key (sending facility + MSH-10, FHIR resource id, GNU Health move
id ...). The movements are appended as ``<key>#<n>``, so a resent message changes nothing,
and a parked message replayed after the fix is applied exactly once.

With the message's record (``message=``), the message store gets its row: applied or
duplicate in the transaction of its events (the group commit), parked in the transaction of
its exception (and applied there when the exception is replayed). A refusal stores nothing
else: its connector records it, with the negative acknowledgement, through ``MessageLog``
(``record_message``), which this class implements.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import Engine

from medbridge.bus.group_commit import GroupCommit
from medbridge.canonical.inbound import InboundMovement, InboundOutcome, InboundReceipt
from medbridge.canonical.messages import MessageRecord, MessageStatus
from medbridge.canonical.movements import StockMovement
from medbridge.flows.intake import (
    Accepted,
    MovementIntake,
    MovementsOutsideScope,
    MovementsRejected,
    Submission,
)
from medbridge.masterdata.inbound import InboundResolver, Unmapped
from medbridge.observability import metrics
from medbridge.observability.logging import get_logger
from medbridge.store import exceptions as exception_store
from medbridge.store import messages as message_store

log = get_logger(__name__)


InboundResult = InboundReceipt


class ExceptionNotOpen(Exception):
    """The exception does not exist or was already applied or discarded."""


FILLABLE = ("location",)
"""What a reviewer may fill in on a parked movement: a place its message leaves out."""


class NotFillable(ValueError):
    """The fill names no movement of the message, a field that cannot be filled in, a field
    the sender did give (never overwritten), or a value that is no valid code there."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SourceScopes(Protocol):
    """The facilities a source, or a client, may post for (None: any), e.g.
    ``governance.SenderScopes``."""

    def facilities(self, source: str) -> frozenset[str] | None: ...

    def client_facilities(self, client: str) -> frozenset[str] | None: ...


class RefusalSampler:
    """At most ``per_second`` refused messages recorded each second (every process-wide
    receiver shares it); the first one recorded after some were not notes how many, so the
    browser shows a flood for what it is without storing every frame of it."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second, self.clock = per_second, clock
        self._second, self._taken, self._skipped = -1, 0, 0
        self._lock = threading.Lock()

    def admit(self, record: MessageRecord) -> bool:
        with self._lock:
            second = int(self.clock())
            if second != self._second:
                self._second, self._taken = second, 0
            if self._taken >= self.per_second:
                self._skipped += 1
                return False
            self._taken += 1
            skipped, self._skipped = self._skipped, 0
        if skipped:
            note = f"({skipped} more refusals before this one were not recorded: a flood)"
            record.error = f"{record.error} {note}" if record.error else note
        return True


class InboundIntake:
    """``scopes``: a source bound to facilities gets ``REFUSED`` (nothing stored, nothing
    parked: the sender must hear it) for a movement of another facility."""

    def __init__(
        self,
        engine: Engine,
        intake: MovementIntake,
        resolver: InboundResolver,
        scopes: SourceScopes | None = None,
        refusals_per_second: int = 50,
    ) -> None:
        self.engine, self.intake, self.resolver, self.scopes = engine, intake, resolver, scopes
        self._parking = ThreadPoolExecutor(max_workers=2, thread_name_prefix="inbound-park")
        self._recorder = message_store.MessageRecorder(engine)
        self._refusals = RefusalSampler(refusals_per_second)

    def receive(
        self,
        drafts: Sequence[InboundMovement],
        *,
        source: str,
        idempotency_key: str,
        correlation_id: UUID | None = None,
        sender: str | None = None,
        message: MessageRecord | None = None,
    ) -> InboundResult:
        """Resolve (from memory) and append through the group commit, or park the message;
        returns once the outcome is durable. A resend of a parked message that resolves by
        now (its codes were mapped) is applied at once; the parked copy then replays as a
        duplicate. ``message``: its record, written with the outcome (but a refusal's)."""
        _key(message, source, idempotency_key)
        movements, problems = self.resolver.resolve_current(drafts)
        if not problems:
            submissions = _submissions(movements, idempotency_key, correlation_id)
            try:
                facilities = self.scope(source, sender)
                return _outcome(self.intake.submit(submissions, source, facilities, message))
            except MovementsOutsideScope as refused:
                return _refused(refused)
            except MovementsRejected as rejected:
                problems = _refusals(rejected)
        return self._park(drafts, problems, source, idempotency_key, message)

    async def receive_async(
        self,
        drafts: Sequence[InboundMovement],
        *,
        source: str,
        idempotency_key: str,
        correlation_id: UUID | None = None,
        sender: str | None = None,
        message: MessageRecord | None = None,
    ) -> InboundResult:
        """``receive`` on an event loop: resolution and the group commit's wait happen on the
        loop, parking (a write) on a worker thread."""
        _key(message, source, idempotency_key)
        movements, problems = self.resolver.resolve_current(drafts)
        if not problems:
            submissions = _submissions(movements, idempotency_key, correlation_id)
            try:
                facilities = self.scope(source, sender)
                accepted = await self.intake.submit_async(submissions, source, facilities, message)
                return _outcome(accepted)
            except MovementsOutsideScope as refused:
                return _refused(refused)
            except MovementsRejected as rejected:
                problems = _refusals(rejected)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._parking, self._park, drafts, problems, source, idempotency_key, message
        )

    # --- MessageLog: what stores nothing else ------------------------------------------------

    def record_message(self, record: MessageRecord) -> object | None:
        """Queue ``record`` (settled: a status) for the next group commit; the future of its
        write is returned, not waited for. Refusals are recorded at most
        ``refusals_per_second`` a second (None: this one was not): a flood of junk must not
        turn into as many writes, which held a valid sender's ACK behind them (PostgreSQL,
        200 connections of junk); the next one recorded says how many were not."""
        if record.status is MessageStatus.REFUSED and not self._refusals.admit(record):
            metrics.stage("messages", "refusal_not_recorded").inc()
            return None
        if isinstance(self.intake.appender, GroupCommit):
            return self.intake.appender.submit([], record)
        return self._parking.submit(self._recorder.write, [record])

    def record_ack(self, message_id: str, ack: str) -> object:
        """Set the acknowledgement of a recorded message (a parked one), on a worker thread."""
        return self._parking.submit(self._recorder.set_ack, message_id, ack)

    def scope(self, source: str, sender: str | None = None) -> frozenset[str] | None:
        """The facilities ``source`` (and the client ``sender``, if bound) may post for:
        both bindings hold at once (None: any)."""
        if self.scopes is None:
            return None
        found = self.scopes.facilities(source)
        if sender is None:
            return found
        bound = self.scopes.client_facilities(sender)
        if found is None or bound is None:
            return bound if found is None else found
        return found & bound

    def _park(
        self,
        drafts: Sequence[InboundMovement],
        problems: Sequence[Unmapped],
        source: str,
        key: str,
        message: MessageRecord | None = None,
    ) -> InboundResult:
        with self.engine.begin() as conn:
            exception_id, new = exception_store.park(
                conn,
                source=source,
                source_system=drafts[0].source_system if drafts else "",
                idempotency_key=key,
                problems=[p.as_dict() for p in problems],
                drafts=[d.model_dump(mode="json") for d in drafts],
            )
            if message is not None:
                _parked(message, drafts, problems, exception_id)
                message_store.write(conn, [message])
        if not new:  # parked before: answered as it was then
            return InboundResult(InboundOutcome.EXCEPTION, exception_id=exception_id)
        metrics.stage("inbound", "exception").inc()
        log.warning(
            "inbound.exception",
            exception_id=exception_id,
            source=source,
            problems=[f"{p.field}={p.value}: {p.reason}" for p in problems],
        )
        return InboundResult(
            InboundOutcome.EXCEPTION, exception_id=exception_id, problems=tuple(problems)
        )

    def replay(self, exception_id: int, *, actor: str) -> InboundResult:
        """Resolve a parked message again; apply it once if every code now resolves. The
        outcome is audited as ``actor``'s with the exception's update (still open with its
        problems, or closed once its movements are appended: the append commits through the
        group commit first, so a crash between them leaves it open, and a replay then finds
        the movements already applied)."""
        with self.engine.connect() as conn:
            parked = exception_store.get(conn, exception_id)
            if parked is None or parked.status != "open":
                raise ExceptionNotOpen(f"exception {exception_id} is not open")
            drafts = [InboundMovement.model_validate(d) for d in parked.drafts]
        movements, problems = self.resolver.resolve_current(drafts, fresh=True)
        if problems:
            with self.engine.begin() as conn:
                exception_store.update_problems(
                    conn, exception_id, [p.as_dict() for p in problems], actor=actor
                )
            return InboundResult(
                InboundOutcome.EXCEPTION, exception_id=exception_id, problems=tuple(problems)
            )
        submissions = _submissions(movements, parked.idempotency_key, None)
        try:  # the sender's facilities bind its parked messages too
            accepted = self.intake.submit(submissions, parked.source, self.scope(parked.source))
        except MovementsOutsideScope as refused:
            return _refused(refused)
        result = _outcome(accepted)
        with self.engine.begin() as conn:
            exception_store.close(
                conn,
                exception_id,
                "applied",
                f"{len(result.event_ids)} movement(s) appended",
                actor=actor,
                action="inbound_exception.replay",
            )
            if accepted:
                correlation = str(accepted[0].correlation_id)
                key = f"{parked.source}:{parked.idempotency_key}"
                message_store.applied_after_park(conn, key, correlation, len(accepted))
        log.info(
            "inbound.exception_applied", exception_id=exception_id, events=len(result.event_ids)
        )
        return result

    def fill(
        self, exception_id: int, index: int, field: str, value: str, *, actor: str
    ) -> InboundResult:
        """Fill in what a parked message leaves out (``field`` of its movement ``index``, in
        the sender's codes: resolved through the cross-references like the rest), audited as
        ``actor``'s, then replay it. What the sender did say is never overwritten."""
        if field not in FILLABLE:
            raise NotFillable("field", f"only {', '.join(FILLABLE)} can be filled in")
        with self.engine.begin() as conn:
            parked = exception_store.get(conn, exception_id, for_update=True)
            if parked is None or parked.status != "open":
                raise ExceptionNotOpen(f"exception {exception_id} is not open")
            if not 0 <= index < len(parked.drafts):
                raise NotFillable("index", f"the message has {len(parked.drafts)} movement(s)")
            draft = dict(parked.drafts[index])
            if draft.get(field) is not None:
                raise NotFillable(field, "the message gives it: only what it leaves out")
            draft[field] = value
            try:
                InboundMovement.model_validate(draft)
            except ValidationError as error:
                reason = error.errors(include_url=False)[0]["msg"]
                raise NotFillable("value", str(reason)) from error
            drafts = [*parked.drafts[:index], draft, *parked.drafts[index + 1 :]]
            detail = {"index": index, "field": field}  # not the value: it may be a ward
            exception_store.fill(conn, exception_id, drafts, actor=actor, detail=detail)
        return self.replay(exception_id, actor=actor)

    def discard(self, exception_id: int, reason: str, *, actor: str) -> None:
        """Close a parked message unapplied; audited as ``actor``'s with the reason."""
        with self.engine.begin() as conn:
            parked = exception_store.get(conn, exception_id)
            if parked is None or parked.status != "open":
                raise ExceptionNotOpen(f"exception {exception_id} is not open")
            exception_store.close(
                conn,
                exception_id,
                "discarded",
                reason,
                actor=actor,
                action="inbound_exception.discard",
            )


def _key(message: MessageRecord | None, source: str, idempotency_key: str) -> None:
    """The message's key as its events carry it (``<source>:<key>``, each event
    ``#<n>`` after it), so that its events are found by key."""
    if message is not None:
        message.idempotency_key = f"{source}:{idempotency_key}"


def _parked(
    message: MessageRecord,
    drafts: Sequence[InboundMovement],
    problems: Sequence[Unmapped],
    exception_id: int,
) -> None:
    if not message.business_key and drafts:
        message.business_key = f"{drafts[0].item.code}@{drafts[0].location or '?'}"
    reasons = "; ".join(f"{p.field} {p.value!r}: {p.reason}" for p in problems)
    message.error = f"exception {exception_id}: {reasons}"
    message.settle(MessageStatus.PARKED)


def _submissions(
    movements: Sequence[StockMovement], key: str, correlation_id: UUID | None
) -> list[Submission]:
    """One message's movements, each under ``<key>#<n>`` (frozen: a resend must match)."""
    return [Submission(m, f"{key}#{n}", correlation_id) for n, m in enumerate(movements)]


def _outcome(accepted: Sequence[Accepted]) -> InboundResult:
    duplicate = all(a.duplicate for a in accepted)
    return InboundResult(
        InboundOutcome.DUPLICATE if duplicate else InboundOutcome.ACCEPTED,
        event_ids=tuple(a.event_id for a in accepted),
    )


def _refused(refused: MovementsOutsideScope) -> InboundResult:
    metrics.stage("inbound", "refused").inc()
    log.warning("inbound.outside_scope", problems=[p.message for p in refused.problems])
    return InboundResult(
        InboundOutcome.REFUSED,
        problems=tuple(Unmapped(p.index, p.field, "", p.message) for p in refused.problems),
    )


def _refusals(rejected: MovementsRejected) -> list[Unmapped]:
    return [
        Unmapped(p.index, p.field, "", f"resolved, then refused: {p.message}")
        for p in rejected.problems
    ]


__all__ = ["ExceptionNotOpen", "InboundIntake", "InboundOutcome", "InboundResult"]
