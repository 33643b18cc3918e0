"""The control tower's figures (issue 16): business KPIs per facility, consumer lag, the ERP
outbox and the open work items, read from the database (and the bus) by every process alike.

Interface (the console renders it; ``GET /v1/dashboard`` answers ``Dashboard.snapshot``)::

    dashboard = Dashboard(engine, bus, groups, now=clock, window_days=30)
    dashboard.facilities(facilities=None) -> list[FacilityKpis]
    dashboard.consumers()                  -> list[ConsumerLag]
    dashboard.erp_outbox(facilities=None)  -> ErpOutbox
    dashboard.work_queues(facilities=None) -> list[QueueBacklog]
    dashboard.snapshot(facilities=None, *, shared=None) -> DashboardSnapshot

``facilities``: None for every facility; a set (a client bound to facilities) restricts each
answer to what is of those facilities, and ``snapshot`` then leaves out what every facility
shares (the consumers: ``consumers`` is None) unless ``shared=True`` (an unbound client that
only filters by facility). ``now`` is injected (tests); ``window_days`` is
the look-back of every rate and of the average daily consumption. The per-minute message
series is not here (the message store's).

Each KPI of a facility (``FacilityKpis``), precisely:

- ``positions``: item@location replenishment policies (``replenishment_policies``) at the
  facility's locations.
- ``below_reorder_point``: those whose on-hand (sum of ``stock_lots``, base units) is strictly
  below the reorder point: the policy's explicit one, else the one the planner would compute
  (``domain.replenishment.reorder_point``) from the daily usage over the window
  (``store.procurement.usage``) and the longest lead time among the item's suppliers with a
  contract (the planner uses the chosen supplier's; this is the cautious figure).
- ``stock_outs``: positions whose on-hand is 0 or less.
- ``days_on_hand``: the facility's stock value (``stock_valuations``) over its average daily
  consumption value: the value of dispenses and clinical consumption (``ledger_movements``)
  that occurred in the window, divided by ``window_days``. None with no consumption.
- ``fill_rate``: over the facility's purchase orders created in the window whose workflow has
  ended with goods (``received``, ``closed_short``, ``shipment_rejected``; not ``cancelled``):
  order lines received in full (received quantity in ``goods_receipts`` of status
  ``received`` >= the ordered quantity, contract units) over order lines. None without lines.
- ``invoice_first_pass_rate``: over the supplier invoices (``invoice_matches``) billing an
  order of the facility, recorded in the window, credit memos left out: those whose first (and
  only recorded) three-way match found no exception, over all of them. None without invoices.
- ``perfect_order_rate``: over the orders counted by the fill rate that have at least one
  invoice: those where PO = acknowledgement = receipt = invoice: every line acknowledged as
  ordered (``expected`` = ``quantity``), every line received in full, no human task opened
  in the order's workflow (``work_items.workflow_id``: an overdue acknowledgement or
  shipment, a refused send, an ERP refusal) and no invoice of it with a price, unit or
  quantity exception (``price_variance``, ``unit_mismatch``, ``quantity_over_received``,
  ``total_mismatch``).
- ``grni_balance``: goods received not invoiced, from the journal: credits minus debits on
  the facility's GRNI account (``account_assignments`` role ``grni``), all time.
- ``ledger_value``, ``gl_inventory``, ``ledger_gl_difference``: the reconciliation
  checkpoint (``store.ledger.facility_checks``, as ``GET /v1/ledger/reconciliation``): stock
  ledger value minus the GL inventory balance (0 when they agree).

Operations: ``ConsumerLag`` per consumer group: events not yet committed (``Bus.lag``) and
the age in seconds of the oldest of them (``Bus.oldest_unconsumed``; the SQL log: its
``appended_at``; JetStream: the stream's timestamp). ``ErpOutbox``: pending and failed
``erp_postings``, the age of the oldest pending one, and each ERP circuit as its posting
worker last recorded it (``store.erp_circuits``). ``QueueBacklog``: open ``work_items`` per
queue (a bound client counts only the tasks about its facilities).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Engine, func, select

from medbridge.bus.port import Bus
from medbridge.canonical.masterdata import AccountRole
from medbridge.canonical.tasks import WorkQueue
from medbridge.domain.replenishment import reorder_point
from medbridge.store import erp_circuits, erp_postings, gl_summaries
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as procurement_store
from medbridge.store.tables import (
    account_assignments,
    contracts,
    goods_receipts,
    invoice_matches,
    journal_lines,
    ledger_movements,
    locations,
    purchase_orders,
    replenishment_policies,
    stock_lots,
    stock_valuations,
    suppliers,
    work_items,
)

RATE = Decimal("0.0001")
DAYS = Decimal("0.01")
CONSUMPTION_KINDS = ("dispense", "clinical_consumption")
ENDED_WITH_GOODS = ("received", "closed_short", "shipment_rejected")
IMPERFECT_EXCEPTIONS = frozenset(
    {"price_variance", "unit_mismatch", "quantity_over_received", "total_mismatch"}
)


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class FacilityKpis(_Answer):
    """The business KPIs of one facility (the module docstring defines each)."""

    facility: str
    positions: int
    below_reorder_point: int
    stock_outs: int
    stock_value: Decimal
    daily_consumption_value: Decimal
    days_on_hand: Decimal | None
    order_lines: int
    order_lines_filled: int
    fill_rate: Decimal | None
    invoices: int
    invoices_first_pass: int
    invoice_first_pass_rate: Decimal | None
    orders_complete: int
    orders_perfect: int
    perfect_order_rate: Decimal | None
    grni_balance: Decimal
    ledger_value: Decimal
    gl_inventory: Decimal
    ledger_gl_difference: Decimal


class ConsumerLag(_Answer):
    group: str
    events: int
    oldest_unconsumed_at: datetime | None
    seconds: Decimal
    """Age of the oldest event not yet committed (0 when nothing waits)."""


class ErpCircuit(_Answer):
    erp: str
    state: str  # closed | open | half_open
    changed_at: datetime
    unhealthy_since: datetime | None
    """When it last left ``closed`` (an outage alternates open and half-open)."""


class ErpDestinationBacklog(_Answer):
    """One ERP destination's rows of the outbox, by status."""

    erp: str
    pending: int
    summarising: int
    posted: int
    failed: int


class ErpOutbox(_Answer):
    pending: int
    failed: int
    oldest_pending_at: datetime | None
    oldest_pending_seconds: Decimal
    circuits: list[ErpCircuit]
    destinations: list[ErpDestinationBacklog]


class QueueBacklog(_Answer):
    queue: str
    open: int


class DashboardSnapshot(_Answer):
    at: datetime
    window_days: int
    facilities: list[FacilityKpis]
    consumers: list[ConsumerLag] | None
    """None for a client bound to facilities: the bus is every facility's."""
    erp: ErpOutbox
    work_queues: list[QueueBacklog]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rate(part: int, whole: int) -> Decimal | None:
    return (Decimal(part) / Decimal(whole)).quantize(RATE) if whole else None


def _seconds(now: datetime, since: datetime | None) -> Decimal:
    if since is None:
        return Decimal(0)
    return Decimal(max((now - since).total_seconds(), 0.0)).quantize(Decimal("0.001"))


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class Dashboard:
    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        groups: Sequence[str],
        *,
        now: Callable[[], datetime] = _utcnow,
        window_days: int = 30,
    ) -> None:
        if window_days < 1:
            raise ValueError("window_days must be at least 1")
        self.engine, self.bus, self.groups = engine, bus, tuple(groups)
        self.now, self.window_days = now, window_days

    # --- the whole answer --------------------------------------------------------------

    def snapshot(
        self, facilities: frozenset[str] | None = None, *, shared: bool | None = None
    ) -> DashboardSnapshot:
        """Every answer; ``shared`` (default: ``facilities is None``) includes the consumers,
        which belong to every facility."""
        shared = facilities is None if shared is None else shared
        return DashboardSnapshot(
            at=self.now(),
            window_days=self.window_days,
            facilities=self.facilities(facilities),
            consumers=self.consumers() if shared else None,
            erp=self.erp_outbox(facilities),
            work_queues=self.work_queues(facilities),
        )

    # --- operations ----------------------------------------------------------------------

    def consumers(self) -> list[ConsumerLag]:
        now = self.now()
        answers = []
        for group in self.groups:
            events = self.bus.lag(group)
            oldest = self.bus.oldest_unconsumed(group) if events else None
            answers.append(
                ConsumerLag(
                    group=group,
                    events=events,
                    oldest_unconsumed_at=oldest,
                    seconds=_seconds(now, oldest),
                )
            )
        return answers

    def erp_outbox(self, facilities: frozenset[str] | None = None) -> ErpOutbox:
        now = self.now()
        with self.engine.connect() as conn:
            counts = erp_postings.counts(conn, facilities)
            failed_summaries = gl_summaries.failed_count(conn, facilities)
            oldest = erp_postings.oldest_pending(conn, facilities)
            circuits = erp_circuits.circuits(conn)
            per_destination = erp_postings.counts_by_destination(conn, facilities)
        return ErpOutbox(
            pending=counts[erp_postings.PostingStatus.PENDING],
            failed=counts[erp_postings.PostingStatus.FAILED] + failed_summaries,
            oldest_pending_at=oldest,
            oldest_pending_seconds=_seconds(now, oldest),
            circuits=[
                ErpCircuit(
                    erp=c.erp,
                    state=c.state,
                    changed_at=c.changed_at,
                    unhealthy_since=c.unhealthy_since,
                )
                for c in sorted(circuits.values(), key=lambda c: c.erp)
            ],
            destinations=[
                ErpDestinationBacklog(
                    erp=name,
                    pending=n[erp_postings.PostingStatus.PENDING],
                    summarising=n[erp_postings.PostingStatus.SUMMARISING],
                    posted=n[erp_postings.PostingStatus.POSTED],
                    failed=n[erp_postings.PostingStatus.FAILED],
                )
                for name, n in sorted(per_destination.items())
            ],
        )

    def work_queues(self, facilities: frozenset[str] | None = None) -> list[QueueBacklog]:
        t = work_items
        stmt = select(t.c.queue, func.count()).where(t.c.status == "open").group_by(t.c.queue)
        if facilities is not None:
            stmt = stmt.where(t.c.facility.in_(facilities))
        with self.engine.connect() as conn:
            found = {str(q): int(n) for q, n in conn.execute(stmt)}
        queues = [q.value for q in WorkQueue] + sorted(set(found) - {q.value for q in WorkQueue})
        return [QueueBacklog(queue=q, open=found.get(q, 0)) for q in queues]

    # --- business KPIs per facility --------------------------------------------------------

    def facilities(self, facilities: frozenset[str] | None = None) -> list[FacilityKpis]:
        now = self.now()
        since = now - timedelta(days=self.window_days)
        with self.engine.connect() as conn:
            facility_of = self._facility_of(conn)
            names = sorted(
                {f for f in facility_of.values() if f}
                if facilities is None
                else {f for f in facility_of.values() if f in facilities}
            )
            stock = self._positions(conn, facility_of, now)
            value, consumption = self._stock_value(conn, facility_of, since)
            orders = self._orders(conn, since)
            invoices = self._invoices(conn, since)
            grni = self._balances(conn, AccountRole.GRNI)
            checks = {c.facility: c for c in self._checks(conn)}
        answers = []
        window = Decimal(self.window_days)
        for f in names:
            daily = consumption.get(f, Decimal(0)) / window
            lines, filled = orders.fill.get(f, (0, 0))
            billed, first_pass = invoices.get(f, (0, 0))
            complete, perfect = orders.perfect.get(f, (0, 0))
            positions, below, outs = stock.get(f, (0, 0, 0))
            check = checks.get(f)
            ledger_value = check.ledger_value if check else Decimal(0)
            gl = check.gl_inventory if check else Decimal(0)
            answers.append(
                FacilityKpis(
                    facility=f,
                    positions=positions,
                    below_reorder_point=below,
                    stock_outs=outs,
                    stock_value=value.get(f, Decimal(0)),
                    daily_consumption_value=daily.quantize(DAYS),
                    days_on_hand=(value.get(f, Decimal(0)) / daily).quantize(DAYS)
                    if daily > 0
                    else None,
                    order_lines=lines,
                    order_lines_filled=filled,
                    fill_rate=_rate(filled, lines),
                    invoices=billed,
                    invoices_first_pass=first_pass,
                    invoice_first_pass_rate=_rate(first_pass, billed),
                    orders_complete=complete,
                    orders_perfect=perfect,
                    perfect_order_rate=_rate(perfect, complete),
                    grni_balance=grni.get(f, Decimal(0)),
                    ledger_value=ledger_value,
                    gl_inventory=gl,
                    ledger_gl_difference=ledger_value - gl,
                )
            )
        return answers

    @staticmethod
    def _facility_of(conn: Connection) -> dict[str, str | None]:
        loc = locations
        return {str(r.code): r.facility for r in conn.execute(select(loc.c.code, loc.c.facility))}

    def _positions(
        self, conn: Connection, facility_of: dict[str, str | None], now: datetime
    ) -> dict[str, tuple[int, int, int]]:
        """Per facility: (positions, below the reorder point, stocked out)."""
        on_hand: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        s = stock_lots
        for r in conn.execute(select(s.c.item, s.c.location, s.c.quantity)):
            on_hand[(r.item, r.location)] += _dec(r.quantity)
        lead: dict[str, int] = {
            str(item): int(days or 0)
            for item, days in conn.execute(
                select(contracts.c.item, func.max(suppliers.c.lead_time_days))
                .join(suppliers, suppliers.c.code == contracts.c.supplier)
                .group_by(contracts.c.item)
            )
        }
        usage = procurement_store.usage(conn, now, self.window_days).daily
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        p = replenishment_policies
        for r in conn.execute(select(p.c.item, p.c.location, p.c.reorder_point)):
            facility = facility_of.get(r.location)
            if facility is None:
                continue
            key = (r.item, r.location)
            held = on_hand.get(key, Decimal(0))
            rop = (
                _dec(r.reorder_point)
                if r.reorder_point is not None
                else reorder_point(usage.get(key, ()), lead.get(r.item, 0))
            )
            tally = counts[facility]
            tally[0] += 1
            tally[1] += held < rop
            tally[2] += held <= 0
        return {f: (c[0], c[1], c[2]) for f, c in counts.items()}

    @staticmethod
    def _stock_value(
        conn: Connection, facility_of: dict[str, str | None], since: datetime
    ) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        """Per facility: the stock value now, and the consumption value since ``since``."""
        value: dict[str, Decimal] = defaultdict(Decimal)
        v = stock_valuations
        for r in conn.execute(select(v.c.location, v.c.value)):
            facility = facility_of.get(r.location)
            if facility:
                value[facility] += _dec(r.value)
        used: dict[str, Decimal] = defaultdict(Decimal)
        m = ledger_movements
        rows = conn.execute(
            select(m.c.location, m.c.amount).where(
                m.c.kind.in_(CONSUMPTION_KINDS), m.c.occurred_at >= since
            )
        )
        for r in rows:
            facility = facility_of.get(r.location)
            if facility:
                used[facility] += abs(_dec(r.amount))
        return dict(value), dict(used)

    def _orders(self, conn: Connection, since: datetime) -> _Orders:
        po, gr = purchase_orders, goods_receipts
        ended = [
            dict(r._mapping)
            for r in conn.execute(
                select(po.c.reference, po.c.facility, po.c.lines).where(
                    po.c.created_at >= since, po.c.status.in_(ENDED_WITH_GOODS)
                )
            )
        ]
        references = [o["reference"] for o in ended]
        received: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for r in conn.execute(
            select(gr.c.order_reference, gr.c.lines).where(
                gr.c.order_reference.in_(references), gr.c.status == "received"
            )
        ):
            for line in _json(r.lines):
                received[r.order_reference][int(line["line"])] += _dec(line["quantity"])
        billed: dict[str, list[set[str]]] = defaultdict(list)
        im = invoice_matches
        for r in conn.execute(
            select(im.c.order_reference, im.c.result).where(im.c.order_reference.in_(references))
        ):
            kinds = {e["kind"] for e in _json(r.result).get("exceptions", [])}
            if "credit_memo" not in kinds:
                billed[r.order_reference].append(kinds)
        tasked = set(  # a task of the order's own workflow (flows.escalation.approved)
            conn.execute(
                select(work_items.c.workflow_id).where(work_items.c.workflow_id.in_(references))
            ).scalars()
        )
        fill: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        perfect: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for order in ended:
            lines = _json(order["lines"])
            got = received.get(order["reference"], {})
            full = [got.get(int(ln["line"]), Decimal(0)) >= _dec(ln["quantity"]) for ln in lines]
            tally = fill[order["facility"]]
            tally[0] += len(full)
            tally[1] += sum(full)
            invoices = billed.get(order["reference"])
            if not invoices:
                continue
            as_ordered = all(
                _dec(ln.get("expected", ln["quantity"])) == _dec(ln["quantity"]) for ln in lines
            )
            clean = not any(kinds & IMPERFECT_EXCEPTIONS for kinds in invoices)
            perfect[order["facility"]][0] += 1
            perfect[order["facility"]][1] += (
                all(full) and as_ordered and clean and order["reference"] not in tasked
            )
        return _Orders(
            fill={f: (c[0], c[1]) for f, c in fill.items()},
            perfect={f: (c[0], c[1]) for f, c in perfect.items()},
        )

    @staticmethod
    def _invoices(conn: Connection, since: datetime) -> dict[str, tuple[int, int]]:
        """Per facility: (invoices, matched without exception on the first match)."""
        im, po = invoice_matches, purchase_orders
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in conn.execute(
            select(po.c.facility, im.c.result)
            .join(po, po.c.reference == im.c.order_reference)
            .where(im.c.created_at >= since)
        ):
            exceptions = _json(r.result).get("exceptions", [])
            if any(e["kind"] == "credit_memo" for e in exceptions):
                continue
            counts[r.facility][0] += 1
            counts[r.facility][1] += not exceptions
        return {f: (c[0], c[1]) for f, c in counts.items()}

    @staticmethod
    def _balances(conn: Connection, role: AccountRole) -> dict[str, Decimal]:
        """Per facility: credits minus debits on its account of ``role`` (a liability)."""
        a, ln = account_assignments, journal_lines
        debit = func.sum(ln.c.debit, type_=ln.c.debit.type)
        credit = func.sum(ln.c.credit, type_=ln.c.credit.type)
        rows = conn.execute(
            select(a.c.facility, credit, debit)
            .join(ln, (ln.c.account == a.c.account) & (ln.c.facility == a.c.facility))
            .where(a.c.role == role.value)
            .group_by(a.c.facility)
        )
        return {str(f): (c or Decimal(0)) - (d or Decimal(0)) for f, c, d in rows}

    @staticmethod
    def _checks(conn: Connection) -> Iterable[ledger_store.FacilityCheck]:
        a = account_assignments
        inventory = {
            str(f): str(acct)
            for f, acct in conn.execute(
                select(a.c.facility, a.c.account).where(a.c.role == AccountRole.INVENTORY.value)
            )
        }
        return ledger_store.facility_checks(conn, inventory)


@dataclass(frozen=True)
class _Orders:
    fill: dict[str, tuple[int, int]]
    """Per facility: (order lines, lines received in full)."""
    perfect: dict[str, tuple[int, int]]
    """Per facility: (orders ended with goods and invoiced, perfect ones)."""
