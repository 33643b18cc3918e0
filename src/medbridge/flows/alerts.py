"""The alert monitor: every ``interval`` seconds it reads each watched metric, moves each rule's
state (``domain.alerts``) and sends the notice of every transition, once per incident.

Once across processes: a transition is a compare-and-set in the database (``store.alerts``),
so with several workers one wins and notifies. A notice is marked sent only after delivery;
one that could not be delivered (webhook down) is sent again the next round, by whichever
process runs it. A recovery is only noticed after its firing was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, select

from medbridge.bus.port import Bus
from medbridge.connectors.notify import Notifier, NotifyError
from medbridge.domain.alerts import Metric, Notice, NoticeKind, Rule, State, transition
from medbridge.observability.kpis import Dashboard
from medbridge.observability.logging import get_logger
from medbridge.store import alert_signals as signals
from medbridge.store import alerts as store
from medbridge.store import erp_circuits, erp_postings, gl_summaries
from medbridge.store.erp_postings import PostingStatus
from medbridge.store.tables import work_items

log = get_logger(__name__)
HUNDREDTH = Decimal("0.01")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _minutes(span: timedelta) -> Decimal:
    return Decimal(max(span.total_seconds(), 0.0) / 60).quantize(HUNDREDTH)


def _hours(span: timedelta) -> Decimal:
    return Decimal(max(span.total_seconds(), 0.0) / 3600).quantize(HUNDREDTH)


class AlertMonitor:
    """``partners``: the configured trading partners (``partner_silent_hours`` without a
    partner watches them all; one never heard from is silent since the monitor started; a
    scope with a ``/`` is an inbound sender such as ``hl7v2/PYXIS@H1``).
    ``now`` is injected (tests)."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        groups: Sequence[str],
        rules: Sequence[Rule],
        notifier: Notifier,
        interval: float = 30.0,
        *,
        partners: Sequence[str] = (),
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine, self.bus, self.groups = engine, bus, tuple(groups)
        self.rules, self.notifier, self.interval = tuple(rules), notifier, interval
        self.partners, self._now = tuple(partners), now or _utcnow
        self.started = self._now()

    def readings(self) -> dict[str, Decimal]:
        """Each rule's reading, by rule name (a metric of no window and no scope read once)."""
        now = self._now()
        shared: dict[Metric, Decimal] = {}
        found: dict[str, Decimal] = {}
        with self.engine.connect() as conn:
            for rule in self.rules:
                if rule.window is None and rule.scope is None:
                    if rule.metric not in shared:
                        shared[rule.metric] = self._reading(conn, rule, now)
                    found[rule.name] = shared[rule.metric]
                else:
                    found[rule.name] = self._reading(conn, rule, now)
        return found

    def _reading(self, conn: Connection, rule: Rule, now: datetime) -> Decimal:
        m = rule.metric
        if m is Metric.DEAD_LETTERS:
            return Decimal(sum(self.bus.dead_letter_count(g) for g in self.groups))
        if m is Metric.BACKLOG:
            return Decimal(sum(self.bus.lag(g) for g in self.groups))
        if m in (Metric.ERP_FAILED, Metric.ERP_PENDING):
            counts = erp_postings.counts(conn)
            if m is Metric.ERP_PENDING:
                return Decimal(counts[PostingStatus.PENDING])
            # a refused summary (summarised posting) is a dead letter too
            return Decimal(counts[PostingStatus.FAILED] + gl_summaries.failed_count(conn))
        if m is Metric.WORK_ITEMS_OPEN:
            open_items = select(func.count()).where(work_items.c.status == "open")
            return Decimal(conn.execute(open_items).scalar_one())
        if m is Metric.CONSUMER_LAG_SECONDS:
            lags = Dashboard(self.engine, self.bus, self.groups, now=lambda: now).consumers()
            return max((lag.seconds for lag in lags), default=Decimal(0))
        if m is Metric.ERP_CIRCUIT_OPEN_MINUTES:
            return max(
                (
                    _minutes(now - c.unhealthy_since)
                    for c in erp_circuits.circuits(conn).values()
                    if c.unhealthy_since is not None
                ),
                default=Decimal(0),
            )
        if m is Metric.ACKS_OVERDUE and rule.window is not None:  # a rule on it has one
            return Decimal(signals.acks_overdue(conn, now - rule.window))
        if m is Metric.PARTNER_SILENT_HOURS and rule.scope and "/" in rule.scope:  # a sender
            last = signals.sender_last_heard(conn, rule.scope)
            return _hours(now - (last or self.started))
        if m is Metric.PARTNER_SILENT_HOURS:
            partners = (rule.scope,) if rule.scope else self.partners
            heard = signals.last_heard(conn, partners)
            return max(
                (_hours(now - (heard.get(p) or self.started)) for p in partners),
                default=Decimal(0),
            )
        if m is Metric.ERROR_RATE and rule.window is not None and rule.scope is not None:
            return signals.error_rate(conn, rule.scope, now - rule.window)
        raise ValueError(f"alert rule {rule.name}: no reading for {m.value}")

    def run_once(self) -> list[Notice]:
        """One round: transitions, then every notice not yet delivered; the notices sent."""
        now = self._now()
        readings = self.readings()
        with self.engine.begin() as conn:
            store.ensure(conn, [r.name for r in self.rules], now)
        for rule in self.rules:
            reading = readings[rule.name]
            with self.engine.begin() as conn:
                current = store.states(conn)[rule.name]
                new = transition(rule, current.state, reading)
                if new is not None:
                    store.move(conn, rule.name, current, new, reading, now)
        return self._deliver()

    def _deliver(self) -> list[Notice]:
        sent = []
        with self.engine.connect() as conn:
            pending = [s for s in store.states(conn).values() if not s.notified]
        by_name = {r.name: r for r in self.rules}
        for state in pending:
            rule = by_name.get(state.rule)
            if rule is None or state.incident == 0:
                continue
            kind = NoticeKind.FIRING if state.state is State.FIRING else NoticeKind.RECOVERED
            notice = Notice(kind, rule, state.reading, state.incident)
            try:
                self.notifier.send(notice.text, _document(notice, state.since))
            except NotifyError as error:
                log.warning("alert.undelivered", rule=rule.name, error=str(error))
                continue
            with self.engine.begin() as conn:
                store.mark_notified(conn, rule.name, state.state, state.incident)
            log.warning("alert.notified", rule=rule.name, kind=kind.value, incident=state.incident)
            sent.append(notice)
        return sent

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # a round that failed (database away) is the next round's
                log.exception("alert.round_failed")
            stop.wait(self.interval)


def _document(notice: Notice, since: datetime) -> dict[str, object]:
    return {
        "rule": notice.rule.name,
        "metric": notice.rule.metric.value,
        "state": notice.kind.value,
        "incident": notice.incident,
        "reading": str(notice.reading),
        "above": str(notice.rule.above),
        "window_seconds": notice.rule.window.total_seconds() if notice.rule.window else None,
        "scope": notice.rule.scope,
        "since": since.isoformat(),
        "text": notice.text,
    }
