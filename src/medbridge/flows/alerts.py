"""The alert monitor: every ``interval`` seconds it reads each watched metric, moves each rule's
state (``domain.alerts``) and sends the notice of every transition, once per incident.

Once across processes: a transition is a compare-and-set in the database (``store.alerts``),
so with several workers one wins and notifies. A notice is marked sent only after delivery;
one that could not be delivered (webhook down) is sent again the next round, by whichever
process runs it. A recovery is only noticed after its firing was.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, func, select

from medbridge.bus.port import Bus
from medbridge.connectors.notify import Notifier, NotifyError
from medbridge.domain.alerts import Metric, Notice, NoticeKind, Rule, State, transition
from medbridge.observability.logging import get_logger
from medbridge.store import alerts as store
from medbridge.store import erp_postings
from medbridge.store.erp_postings import PostingStatus
from medbridge.store.tables import work_items

log = get_logger(__name__)


class AlertMonitor:
    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        groups: Sequence[str],
        rules: Sequence[Rule],
        notifier: Notifier,
        interval: float = 30.0,
    ) -> None:
        self.engine, self.bus, self.groups = engine, bus, tuple(groups)
        self.rules, self.notifier, self.interval = tuple(rules), notifier, interval

    def readings(self) -> dict[Metric, Decimal]:
        wanted = {r.metric for r in self.rules}
        found: dict[Metric, Decimal] = {}
        if Metric.DEAD_LETTERS in wanted:
            found[Metric.DEAD_LETTERS] = Decimal(
                sum(self.bus.dead_letter_count(g) for g in self.groups)
            )
        if Metric.BACKLOG in wanted:
            found[Metric.BACKLOG] = Decimal(sum(self.bus.lag(g) for g in self.groups))
        with self.engine.connect() as conn:
            if wanted & {Metric.ERP_FAILED, Metric.ERP_PENDING}:
                counts = erp_postings.counts(conn)
                found[Metric.ERP_FAILED] = Decimal(counts[PostingStatus.FAILED])
                found[Metric.ERP_PENDING] = Decimal(counts[PostingStatus.PENDING])
            if Metric.WORK_ITEMS_OPEN in wanted:
                open_items = select(func.count()).where(work_items.c.status == "open")
                found[Metric.WORK_ITEMS_OPEN] = Decimal(conn.execute(open_items).scalar_one())
        return found

    def run_once(self) -> list[Notice]:
        """One round: transitions, then every notice not yet delivered; the notices sent."""
        now = datetime.now(UTC)
        readings = self.readings()
        with self.engine.begin() as conn:
            store.ensure(conn, [r.name for r in self.rules], now)
        for rule in self.rules:
            reading = readings[rule.metric]
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
        "since": since.isoformat(),
        "text": notice.text,
    }
