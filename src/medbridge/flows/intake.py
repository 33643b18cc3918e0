"""Stock-movement intake: validate against master data, then append durably to the bus.

Nothing is stored unless every movement of the submission is valid (a batch is all or
nothing), and the caller is answered only after the append has committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Engine

from medbridge.bus.port import Bus
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.movements import StockMovement
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.masterdata.validation import FieldProblem, check_movements
from medbridge.observability import metrics


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


def subject_of(movement: StockMovement) -> str:
    """The business key that orders events: item@location (the source, for transfers)."""
    return f"{movement.item}@{movement.location}"


class MovementIntake:
    def __init__(self, engine: Engine, bus: Bus, masterdata: MasterDataRepository) -> None:
        self.engine, self.bus, self.masterdata = engine, bus, masterdata

    def submit(self, submissions: Sequence[Submission], source: str) -> list[Accepted]:
        """Validate and append; the idempotency key is scoped by ``source``."""
        with self.engine.connect() as conn:
            _, problems = check_movements(conn, self.masterdata, [s.movement for s in submissions])
        if problems:
            metrics.STAGE.labels(stage="intake", outcome="rejected").inc(len(submissions))
            raise MovementsRejected(problems)
        envelopes = [
            EventEnvelope[StockMovement](
                type=s.movement.event_type,
                source=source,
                subject=subject_of(s.movement),
                correlation_id=s.correlation_id,
                causation_id=s.causation_id,
                idempotency_key=f"{source}:{s.idempotency_key}",
                data=s.movement,
            )
            for s in submissions
        ]
        results = self.bus.append(envelopes)
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
        metrics.STAGE.labels(stage="intake", outcome="accepted").inc(len(accepted) - duplicates)
        metrics.STAGE.labels(stage="intake", outcome="duplicate").inc(duplicates)
        return accepted
