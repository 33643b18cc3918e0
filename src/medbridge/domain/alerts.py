"""Alert rules, decided without I/O: what a rule watches, whether a reading breaches it, and
which notice a change of state calls for.

A rule is ``metric > above`` (e.g. dead letters > 0, ledger backlog > 10,000 events, failed
ERP postings > 0), some metrics measured over a ``window`` (orders sent longer ago than it and
not acknowledged; a connector's error rate over its last minutes) or of one ``scope`` (a
trading partner, a connector). Each rule is ``ok`` or ``firing``. A breach of an ``ok`` rule
opens an incident (a ``firing`` notice, once); the first reading back within bounds closes it (a
``recovered`` notice, once). The store makes each transition happen once across processes
(``store.alerts``); this module only says which transition a reading asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum


class Metric(StrEnum):
    """What a rule can watch, each read by ``flows.alerts`` from the running system."""

    DEAD_LETTERS = "dead_letters"  # messages a consumer gave up on, all groups
    BACKLOG = "backlog"  # events not yet applied by the consumers (lag, in events)
    ERP_FAILED = "erp_failed"  # ERP postings that failed for good (dead letters of the outbox)
    ERP_PENDING = "erp_pending"  # ERP postings waiting
    WORK_ITEMS_OPEN = "work_items_open"  # human tasks waiting in the work queues
    CONSUMER_LAG_SECONDS = "consumer_lag_seconds"  # age of the oldest unapplied event, worst group
    ERP_CIRCUIT_OPEN_MINUTES = "erp_circuit_open_minutes"  # minutes an ERP circuit is not closed
    ACKS_OVERDUE = "acks_overdue"  # orders sent more than ``window`` ago, not acknowledged
    PARTNER_SILENT_HOURS = "partner_silent_hours"  # hours since a partner / sender last sent
    ERROR_RATE = "error_rate"  # a connector's parked / received over the last ``window``


WINDOWED = frozenset({Metric.ACKS_OVERDUE, Metric.ERROR_RATE})
"""The metrics measured over a window: a rule on them must give one."""
SCOPED = frozenset({Metric.PARTNER_SILENT_HOURS, Metric.ERROR_RATE})
"""The metrics of one partner or connector (``Rule.scope``; an error rate needs one)."""


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
    window: timedelta | None = None
    """``acks_overdue``: how long an order may wait for its acknowledgement; ``error_rate``:
    how far back messages are counted."""
    scope: str | None = None
    """``partner_silent_hours``: the partner (None: the most silent configured one), or an
    inbound sender's source (``hl7v2/PYXIS@H1``: it has a ``/``);
    ``error_rate``: the connector (``hl7v2``, ``fhir``, ``x12``...) or one source of it."""

    def __post_init__(self) -> None:
        if (self.window is None) == (self.metric in WINDOWED):
            need = "needs" if self.metric in WINDOWED else "takes no"
            raise ValueError(f"alert rule {self.name}: {self.metric.value} {need} window")
        if self.scope is not None and self.metric not in SCOPED:
            raise ValueError(f"alert rule {self.name}: {self.metric.value} takes no scope")
        if self.metric is Metric.ERROR_RATE and not self.scope:
            raise ValueError(f"alert rule {self.name}: error_rate needs a connector")

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
        metric = self.rule.metric.value + (f"[{self.rule.scope}]" if self.rule.scope else "")
        what = f"{metric} = {self.reading} (fires above {self.rule.above})"
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
