"""Stock-movement intake: validate against master data, then append durably to the bus.

Nothing is stored unless every movement of the submission is valid (a batch is all or
nothing), and the caller is answered only after the append has committed (with the group
commit, in one transaction with the other callers' appends of the moment).

With tracing on, a submission is a ``bus.append`` span (a child of the receipt's: the MLLP
message, the HTTP request) and its envelopes carry that span's trace context, which the
consumers continue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Engine

from medbridge.bus.group_commit import Appender, GroupCommit
from medbridge.bus.port import AppendResult, Bus
from medbridge.bus.recorded import Recorded, settle
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.messages import MessageRecord
from medbridge.canonical.movements import StockMovement
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.masterdata.validation import FieldProblem, ResolvedMovements, check_current
from medbridge.observability import metrics, tracing
from medbridge.store import messages as message_store


@dataclass(frozen=True)
class Submission:
    movement: StockMovement
    idempotency_key: str
    correlation_id: UUID | None = None
    causation_id: UUID | None = None


@dataclass(frozen=True)
class Accepted:
    event_id: UUID
    idempotency_key: str
    correlation_id: UUID
    duplicate: bool


class MovementsRejected(Exception):
    """The submission names unknown master data; nothing was stored."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"[{p.index}].{p.field}: {p.message}" for p in problems))
        self.problems = problems


class MovementsOutsideScope(Exception):
    """The sender is bound to facilities and a movement touches another; nothing stored."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"[{p.index}].{p.field}: {p.message}" for p in problems))
        self.problems = problems


def outside_scope(
    resolved: ResolvedMovements, facilities: frozenset[str] | None
) -> list[FieldProblem]:
    """The locations of ``resolved`` whose facility is not one of ``facilities``."""
    if facilities is None:
        return []
    problems = []
    for i, m in enumerate(resolved.movements):
        for field, code in (("location", m.location), ("to_location", m.to_location)):
            info = resolved.locations.get(code) if code else None
            if info is not None and info.facility not in facilities:
                problems.append(
                    FieldProblem(
                        i,
                        field,
                        f"location {code!r} is in facility {info.facility}, outside the"
                        f" sender's {', '.join(sorted(facilities))}",
                    )
                )
    return problems


def _traced(source: str, submissions: Sequence[Submission]) -> dict[str, object] | None:
    """The ``bus.append`` span's attributes (None when tracing is off: nothing built)."""
    if not tracing.enabled():
        return None
    return {
        "messaging.system": "medbridge",
        "messaging.operation.type": "send",
        "messaging.batch.message_count": len(submissions),
        "medbridge.source": source,
    }


def subject_of(movement: StockMovement) -> str:
    """The business key that orders events: item@location (the source, for transfers)."""
    return f"{movement.item}@{movement.location}"


class MovementIntake:
    """Validation (from the cached master data) and the durable append (through the group
    commit when one is given: every caller's movements committed together with the others')."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        masterdata: MasterDataRepository,
        appender: Appender | None = None,
    ) -> None:
        self.engine, self.bus, self.masterdata = engine, bus, masterdata
        self.appender: Appender = appender or bus

    def submit(
        self,
        submissions: Sequence[Submission],
        source: str,
        facilities: frozenset[str] | None = None,
        message: MessageRecord | None = None,
    ) -> list[Accepted]:
        """Validate and append; the idempotency key is scoped by ``source``. ``facilities``:
        the sender is bound to them (``MovementsOutsideScope`` for a movement elsewhere).
        ``message``: the record of the message the movements came from, written with them
        (``GroupCommit``: in their transaction)."""
        with tracing.span(
            "bus.append", kind=tracing.SpanKind.PRODUCER, attributes=_traced(source, submissions)
        ):
            envelopes = self.prepare(submissions, source, facilities, message)
            if message is not None and isinstance(self.appender, GroupCommit):
                return self.accepted(submissions, self.appender.append(envelopes, message))
            results = self.appender.append(envelopes)
            self._record_after(envelopes, results, message)
            return self.accepted(submissions, results)

    async def submit_async(
        self,
        submissions: Sequence[Submission],
        source: str,
        facilities: frozenset[str] | None = None,
        message: MessageRecord | None = None,
    ) -> list[Accepted]:
        """``submit`` on an event loop: validation now (``MovementsRejected``), then the
        group commit's wait, without a thread."""
        with tracing.span(
            "bus.append", kind=tracing.SpanKind.PRODUCER, attributes=_traced(source, submissions)
        ):
            envelopes = self.prepare(submissions, source, facilities, message)
            if isinstance(self.appender, GroupCommit):
                results = await self.appender.submit_async(envelopes, message)
            else:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(None, self.appender.append, envelopes)
                self._record_after(envelopes, results, message)
            return self.accepted(submissions, results)

    def _record_after(
        self,
        envelopes: Sequence[EventEnvelope[StockMovement]],
        results: Sequence[AppendResult],
        message: MessageRecord | None,
    ) -> None:
        """Without a group commit (a bare log): the message's row after its events."""
        if message is not None:
            settle([Recorded(message, 0, len(envelopes))], envelopes, results)
            message_store.MessageRecorder(self.engine).write([message])

    def prepare(
        self,
        submissions: Sequence[Submission],
        source: str,
        facilities: frozenset[str] | None = None,
        message: MessageRecord | None = None,
    ) -> list[EventEnvelope[StockMovement]]:
        """The envelopes of a valid submission; ``MovementsRejected`` naming every problem,
        ``MovementsOutsideScope`` for a movement outside the sender's ``facilities``. The
        ``message``'s facility becomes its first movement's."""
        resolved, problems, _ = check_current(self.masterdata, [s.movement for s in submissions])
        if problems:
            metrics.stage("intake", "rejected").inc(len(submissions))
            raise MovementsRejected(problems)
        foreign = outside_scope(resolved, facilities)
        if foreign:
            metrics.stage("intake", "refused").inc(len(submissions))
            raise MovementsOutsideScope(foreign)
        if message is not None and resolved.movements:
            info = resolved.locations.get(resolved.movements[0].location)
            if info is not None:
                message.facility = info.facility
        traceparent, tracestate = tracing.headers_of()  # (None, None) unless tracing is on
        return [
            EventEnvelope[StockMovement](
                type=s.movement.event_type,
                source=source,
                subject=subject_of(s.movement),
                correlation_id=s.correlation_id,
                causation_id=s.causation_id,
                idempotency_key=f"{source}:{s.idempotency_key}",
                traceparent=traceparent,
                tracestate=tracestate,
                data=s.movement,
            )
            for s in submissions
        ]

    @staticmethod
    def accepted(
        submissions: Sequence[Submission], results: Sequence[AppendResult]
    ) -> list[Accepted]:
        accepted = [
            Accepted(
                event_id=r.event_id,
                idempotency_key=s.idempotency_key,
                correlation_id=r.correlation_id,
                duplicate=r.duplicate,
            )
            for s, r in zip(submissions, results, strict=True)
        ]
        duplicates = sum(a.duplicate for a in accepted)
        metrics.stage("intake", "accepted").inc(len(accepted) - duplicates)
        metrics.stage("intake", "duplicate").inc(duplicates)
        return accepted
