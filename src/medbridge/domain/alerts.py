"""Alert rules, decided without I/O: what a rule watches, whether a reading breaches it, and
which notice a change of state calls for.

A rule is ``metric > above`` (e.g. dead letters > 0, ledger backlog > 10,000 events, failed
ERP postings > 0). Each rule is ``ok`` or ``firing``. A breach of an ``ok`` rule opens an
incident (a ``firing`` notice, once); the first reading back within bounds closes it (a
``recovered`` notice, once). The store makes each transition happen once across processes
(``store.alerts``); this module only says which transition a reading asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Metric(StrEnum):
    """What a rule can watch, each read by ``flows.alerts`` from the running system."""

    DEAD_LETTERS = "dead_letters"  # messages a consumer gave up on, all groups
    BACKLOG = "backlog"  # events not yet applied by the consumers (lag, in events)
    ERP_FAILED = "erp_failed"  # ERP postings that failed for good (dead letters of the outbox)
    ERP_PENDING = "erp_pending"  # ERP postings waiting
    WORK_ITEMS_OPEN = "work_items_open"  # human tasks waiting in the work queues


class State(StrEnum):
    OK = "ok"
    FIRING = "firing"


class NoticeKind(StrEnum):
    FIRING = "firing"
    RECOVERED = "recovered"


@dataclass(frozen=True)
class Rule:
    name: str
    metric: Metric
    above: Decimal
    """The rule fires while the reading is strictly above this."""

    def breached(self, reading: Decimal) -> bool:
        return reading > self.above


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    rule: Rule
    reading: Decimal
    incident: int

    @property
    def text(self) -> str:
        what = f"{self.rule.metric.value} = {self.reading} (fires above {self.rule.above})"
        if self.kind is NoticeKind.FIRING:
            return f"[FIRING] {self.rule.name} #{self.incident}: {what}"
        return f"[RECOVERED] {self.rule.name} #{self.incident}: {what}"


def transition(rule: Rule, state: State, reading: Decimal) -> State | None:
    """The state ``rule`` moves to on ``reading``, or None when it stays."""
    breached = rule.breached(reading)
    if state is State.OK and breached:
        return State.FIRING
    if state is State.FIRING and not breached:
        return State.OK
    return None
