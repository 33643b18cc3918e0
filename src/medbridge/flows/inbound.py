"""Inbound from connectors: resolve the source's codes, then hand the movements to the intake;
or, when a code does not resolve, park the whole message in the exception queue.

Every connector calls ``InboundIntake.receive`` with the movements of ONE source message and
that message's idempotency key (sending facility + MSH-10, FHIR resource id, GNU Health move
id ...). The movements are appended as ``<key>#<n>``, so a resent message changes nothing,
and a parked message replayed after the fix is applied exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import Engine

from medbridge.canonical.inbound import InboundMovement, InboundOutcome, InboundReceipt
from medbridge.canonical.movements import StockMovement
from medbridge.flows.intake import MovementIntake, MovementsRejected, Submission
from medbridge.masterdata.inbound import InboundResolver, Unmapped
from medbridge.observability import metrics
from medbridge.observability.logging import get_logger
from medbridge.store import exceptions as exception_store

log = get_logger(__name__)


InboundResult = InboundReceipt


class ExceptionNotOpen(Exception):
    """The exception does not exist or was already applied or discarded."""


class InboundIntake:
    def __init__(self, engine: Engine, intake: MovementIntake, resolver: InboundResolver) -> None:
        self.engine, self.intake, self.resolver = engine, intake, resolver

    def receive(
        self,
        drafts: Sequence[InboundMovement],
        *,
        source: str,
        idempotency_key: str,
        correlation_id: UUID | None = None,
    ) -> InboundResult:
        with self.engine.connect() as conn:
            parked = exception_store.by_key(conn, idempotency_key)
            if parked is not None and parked.status == "open":
                return InboundResult(InboundOutcome.EXCEPTION, exception_id=parked.id)
            movements, problems = self.resolver.resolve(conn, drafts)
        if not problems:
            try:
                return self._submit(movements, source, idempotency_key, correlation_id)
            except MovementsRejected as rejected:
                problems = [
                    Unmapped(p.index, p.field, "", f"resolved, then refused: {p.message}")
                    for p in rejected.problems
                ]
        return self._park(drafts, problems, source, idempotency_key)

    def _submit(
        self,
        movements: Sequence[StockMovement],
        source: str,
        key: str,
        correlation_id: UUID | None,
    ) -> InboundResult:
        submissions = [Submission(m, f"{key}#{n}", correlation_id) for n, m in enumerate(movements)]
        accepted = self.intake.submit(submissions, source)
        duplicate = all(a.duplicate for a in accepted)
        return InboundResult(
            InboundOutcome.DUPLICATE if duplicate else InboundOutcome.ACCEPTED,
            event_ids=tuple(a.event_id for a in accepted),
        )

    def _park(
        self, drafts: Sequence[InboundMovement], problems: Sequence[Unmapped], source: str, key: str
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
        if new:
            metrics.STAGE.labels(stage="inbound", outcome="exception").inc()
            log.warning(
                "inbound.exception",
                exception_id=exception_id,
                source=source,
                problems=[f"{p.field}={p.value}: {p.reason}" for p in problems],
            )
        return InboundResult(
            InboundOutcome.EXCEPTION, exception_id=exception_id, problems=tuple(problems)
        )

    def replay(self, exception_id: int) -> InboundResult:
        """Resolve a parked message again; apply it once if every code now resolves."""
        with self.engine.connect() as conn:
            parked = exception_store.get(conn, exception_id)
            if parked is None or parked.status != "open":
                raise ExceptionNotOpen(f"exception {exception_id} is not open")
            drafts = [InboundMovement.model_validate(d) for d in parked.drafts]
            movements, problems = self.resolver.resolve(conn, drafts)
        if problems:
            with self.engine.begin() as conn:
                exception_store.update_problems(conn, exception_id, [p.as_dict() for p in problems])
            return InboundResult(
                InboundOutcome.EXCEPTION, exception_id=exception_id, problems=tuple(problems)
            )
        result = self._submit(movements, parked.source, parked.idempotency_key, None)
        with self.engine.begin() as conn:
            exception_store.close(
                conn, exception_id, "applied", f"{len(result.event_ids)} movement(s) appended"
            )
        log.info(
            "inbound.exception_applied", exception_id=exception_id, events=len(result.event_ids)
        )
        return result

    def discard(self, exception_id: int, reason: str) -> None:
        with self.engine.begin() as conn:
            parked = exception_store.get(conn, exception_id)
            if parked is None or parked.status != "open":
                raise ExceptionNotOpen(f"exception {exception_id} is not open")
            exception_store.close(conn, exception_id, "discarded", reason)


__all__ = ["ExceptionNotOpen", "InboundIntake", "InboundOutcome", "InboundResult"]
