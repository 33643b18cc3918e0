"""Business KPIs per facility and day (UTC): what ``GET /v1/kpis/daily`` answers and what the
analytics export writes (``flows.analytics_export``), from this one function, so the two agree.

Interface::

    daily_kpis(conn, first_day, last_day, facilities=None) -> list[DailyKpis]

Every figure of a day is fixed by the rows dated that day (or before), never by the state at
the moment of asking, so a past day answers the same tomorrow unless late data arrive for it:

- ``dispenses``, ``consumption_value``: dispense movements of the day (``ledger_movements``
  ``occurred_at``), and the value of dispenses and clinical consumption (absolute amounts);
- ``receipts``, ``received_value``: receipt movements of the day and their value;
- ``purchase_orders``, ``order_lines``: purchase orders of the facility created that day;
- ``invoices``, ``invoices_first_pass``, ``invoice_first_pass_rate``: supplier invoices
  billing an order of the facility recorded that day (``invoice_matches.created_at``), credit
  memos left out; first pass: the three-way match found no exception (as the dashboard's);
- ``gl_inventory``, ``grni_balance``: at the end of the day, from the journal (entries whose
  ``posting_date`` is the day or before): debits minus credits on the facility's inventory
  account, credits minus debits on its GRNI account;
- ``days_on_hand``: ``gl_inventory`` over the day's consumption value; None without any.

A facility is a value of ``locations.facility``; every facility has a row for every day.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, func, select

from medbridge.canonical.masterdata import AccountRole
from medbridge.observability.kpis import CONSUMPTION_KINDS, DAYS, RATE
from medbridge.store.tables import (
    account_assignments,
    invoice_matches,
    journal_entries,
    journal_lines,
    ledger_movements,
    locations,
    purchase_orders,
)

MAX_DAYS = 3660


class DailyKpis(BaseModel):
    """One facility's KPIs of one day (the module docstring defines each)."""

    model_config = ConfigDict(frozen=True)

    day: date
    facility: str
    dispenses: int
    consumption_value: Decimal
    receipts: int
    received_value: Decimal
    purchase_orders: int
    order_lines: int
    invoices: int
    invoices_first_pass: int
    invoice_first_pass_rate: Decimal | None
    gl_inventory: Decimal
    grni_balance: Decimal
    days_on_hand: Decimal | None


def start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class _Tally:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, date, str], int] = defaultdict(int)
        self.sums: dict[tuple[str, date, str], Decimal] = defaultdict(Decimal)


def daily_kpis(
    conn: Connection,
    first_day: date,
    last_day: date,
    facilities: frozenset[str] | None = None,
) -> list[DailyKpis]:
    """Each facility's KPIs for each day from ``first_day`` to ``last_day`` (both included),
    ordered by day then facility; ``facilities``: only these."""
    if last_day < first_day:
        return []
    if (last_day - first_day).days >= MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days at once")
    since, until = start_of(first_day), start_of(last_day + timedelta(days=1))
    loc = locations
    facility_of = {
        str(r.code): r.facility for r in conn.execute(select(loc.c.code, loc.c.facility))
    }
    names = sorted(
        {f for f in facility_of.values() if f and (facilities is None or f in facilities)}
    )
    tally = _Tally()
    _movements(conn, tally, facility_of, since, until)
    _orders(conn, tally, since, until)
    _invoices(conn, tally, since, until)
    balances = {
        role: _balances(conn, role, first_day, last_day)
        for role in (AccountRole.INVENTORY, AccountRole.GRNI)
    }
    answers = []
    day = first_day
    while day <= last_day:
        for f in names:
            answers.append(_kpis(tally, balances, f, day))
        day += timedelta(days=1)
    return answers


def _kpis(
    tally: _Tally,
    balances: dict[AccountRole, dict[str, list[tuple[date, Decimal]]]],
    facility: str,
    day: date,
) -> DailyKpis:
    def count(what: str) -> int:
        return tally.counts.get((facility, day, what), 0)

    def total(what: str) -> Decimal:
        return tally.sums.get((facility, day, what), Decimal(0))

    consumed = total("consumption")
    inventory = _as_of(balances[AccountRole.INVENTORY].get(facility, []), day)
    grni = -_as_of(balances[AccountRole.GRNI].get(facility, []), day)
    billed, first_pass = count("invoices"), count("first_pass")
    return DailyKpis(
        day=day,
        facility=facility,
        dispenses=count("dispense"),
        consumption_value=consumed,
        receipts=count("receipt"),
        received_value=total("receipt"),
        purchase_orders=count("orders"),
        order_lines=count("order_lines"),
        invoices=billed,
        invoices_first_pass=first_pass,
        invoice_first_pass_rate=(Decimal(first_pass) / Decimal(billed)).quantize(RATE)
        if billed
        else None,
        gl_inventory=inventory,
        grni_balance=grni,
        days_on_hand=(inventory / consumed).quantize(DAYS) if consumed > 0 else None,
    )


def _movements(
    conn: Connection,
    tally: _Tally,
    facility_of: dict[str, str | None],
    since: datetime,
    until: datetime,
) -> None:
    m = ledger_movements
    kinds = (*CONSUMPTION_KINDS, "receipt")
    rows = conn.execute(
        select(m.c.kind, m.c.location, m.c.amount, m.c.occurred_at).where(
            m.c.kind.in_(kinds), m.c.occurred_at >= since, m.c.occurred_at < until
        )
    )
    for r in rows:
        facility = facility_of.get(r.location)
        if not facility:
            continue
        day = day_of(r.occurred_at)
        if r.kind == "receipt":
            tally.counts[(facility, day, "receipt")] += 1
            tally.sums[(facility, day, "receipt")] += _dec(r.amount)
            continue
        tally.sums[(facility, day, "consumption")] += abs(_dec(r.amount))
        if r.kind == "dispense":
            tally.counts[(facility, day, "dispense")] += 1


def _orders(conn: Connection, tally: _Tally, since: datetime, until: datetime) -> None:
    po = purchase_orders
    for r in conn.execute(
        select(po.c.facility, po.c.lines, po.c.created_at).where(
            po.c.created_at >= since, po.c.created_at < until
        )
    ):
        key = (r.facility, day_of(r.created_at))
        tally.counts[(*key, "orders")] += 1
        tally.counts[(*key, "order_lines")] += len(_json(r.lines))


def _invoices(conn: Connection, tally: _Tally, since: datetime, until: datetime) -> None:
    im, po = invoice_matches, purchase_orders
    for r in conn.execute(
        select(po.c.facility, im.c.result, im.c.created_at)
        .join(po, po.c.reference == im.c.order_reference)
        .where(im.c.created_at >= since, im.c.created_at < until)
    ):
        exceptions = _json(r.result).get("exceptions", [])
        if any(e["kind"] == "credit_memo" for e in exceptions):
            continue
        key = (r.facility, day_of(r.created_at))
        tally.counts[(*key, "invoices")] += 1
        tally.counts[(*key, "first_pass")] += not exceptions


def _balances(
    conn: Connection, role: AccountRole, first_day: date, last_day: date
) -> dict[str, list[tuple[date, Decimal]]]:
    """Per facility: (day, debits minus credits up to the end of that day) on its account of
    ``role``, at the first day and at every later day of the range with postings."""
    a, ln, je = account_assignments, journal_lines, journal_entries
    debit = func.sum(ln.c.debit, type_=ln.c.debit.type)
    credit = func.sum(ln.c.credit, type_=ln.c.credit.type)
    rows = conn.execute(
        select(a.c.facility, je.c.posting_date, debit, credit)
        .join(ln, (ln.c.account == a.c.account) & (ln.c.facility == a.c.facility))
        .join(je, je.c.entry_id == ln.c.entry_id)
        .where(a.c.role == role.value, je.c.posting_date <= last_day)
        .group_by(a.c.facility, je.c.posting_date)
    )
    moves: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for facility, posted, d, c in rows:
        day = max(posted, first_day)  # everything before the range: its opening balance
        moves[str(facility)][day] += (d or Decimal(0)) - (c or Decimal(0))
    running: dict[str, list[tuple[date, Decimal]]] = {}
    for facility, by_day in moves.items():
        balance, steps = Decimal(0), []
        for day in sorted(by_day):
            balance += by_day[day]
            steps.append((day, balance))
        running[facility] = steps
    return running


def _as_of(steps: list[tuple[date, Decimal]], day: date) -> Decimal:
    at = bisect_right(steps, day, key=lambda step: step[0])
    return steps[at - 1][1] if at else Decimal(0)
