"""Persistence of the stock ledger and the journal: load and save a ``StockBook`` slice,
record applied movements and journal entries, and the read-side queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, or_, select, tuple_

from medbridge.canonical.finance import BookedBy, JournalEntry, JournalLine
from medbridge.domain.ledger import StockBook, Valuation, ValuedMovement
from medbridge.store import erp_postings
from medbridge.store.sql import BulkInsert, chunks, upsert
from medbridge.store.tables import (
    journal_entries,
    journal_lines,
    ledger_movement_lots,
    ledger_movements,
    locations,
    stock_lots,
    stock_valuations,
)


def load_book(conn: Connection, item_locations: Iterable[tuple[str, str]]) -> StockBook:
    """Every lot and valuation of the given item@location pairs."""
    book = StockBook()
    pairs = sorted(set(item_locations))
    for chunk in chunks(pairs, 200):
        lots = conn.execute(
            select(stock_lots).where(tuple_(stock_lots.c.item, stock_lots.c.location).in_(chunk))
        )
        for row in lots:
            key = (row.item, row.location, row.lot)
            book.on_hand[key] = row.quantity
            book.expiries[key] = row.expiry
        values = conn.execute(
            select(stock_valuations).where(
                tuple_(stock_valuations.c.item, stock_valuations.c.location).in_(chunk)
            )
        )
        for row in values:
            book.valuations[(row.item, row.location)] = Valuation(row.quantity, row.value)
            if row.last_unit_cost is not None:
                book.last_costs[(row.item, row.location)] = row.last_unit_cost
    return book


def save_book(conn: Connection, book: StockBook) -> None:
    lots = [
        {
            "item": key[0],
            "location": key[1],
            "lot": key[2],
            "expiry": book.expiries.get(key),
            "quantity": book.on_hand[key],
        }
        for key in sorted(book.changed_lots)
    ]
    values = [
        {
            "item": key[0],
            "location": key[1],
            "quantity": v.quantity,
            "value": v.value,
            "last_unit_cost": book.last_costs.get(key),
        }
        for key in sorted(book.changed_values)
        for v in (book.valuations[key],)
    ]
    upsert(conn, stock_lots, lots, keys=("item", "location", "lot"))
    upsert(conn, stock_valuations, values, keys=("item", "location"))


@dataclass(frozen=True)
class AppliedMovement:
    event_id: str
    correlation_id: str
    occurred_at: datetime
    valued: ValuedMovement
    cost_center: str | None = None
    """The cost center it was booked to (the movement's, or its location's)."""
    encounter_ref: str | None = None
    """The movement's encounter pseudonym (kept for a lot recall, minimised on reads)."""


_insert_movements = BulkInsert(
    ledger_movements,
    (
        "event_id",
        "kind",
        "item",
        "location",
        "to_location",
        "quantity",
        "amount",
        "correlation_id",
        "occurred_at",
        "applied_at",
    ),
)
_insert_lots = BulkInsert(
    ledger_movement_lots,
    (
        "event_id",
        "seq",
        "item",
        "location",
        "lot",
        "expiry",
        "quantity",
        "cost_center",
        "encounter_ref",
    ),
)
_insert_entries = BulkInsert(
    journal_entries,
    (
        "entry_id",
        "source_event_id",
        "correlation_id",
        "posting_date",
        "period",
        "currency",
        "description",
        "created_at",
        "booked_by",
        "erp_document",
    ),
)
_insert_lines = BulkInsert(
    journal_lines,
    ("entry_id", "line_no", "account", "facility", "cost_center", "debit", "credit", "party"),
)


def record(
    conn: Connection,
    applied: Sequence[AppliedMovement],
    entries: Sequence[JournalEntry],
    traces: Mapping[str, tuple[str | None, str | None]] | None = None,
    *,
    deliveries: Sequence[erp_postings.Delivery],
) -> None:
    """Store the applied movements (and the lots each changed) and the journal entries, and
    queue what the ERPs are to receive of them (``deliveries``:
    ``flows.erp_routing.ErpRouter.journal``). ``traces``: per entry id, the trace context its
    ERP postings continue."""
    now = datetime.now(UTC)
    if applied:
        _insert_movements(
            conn,
            [
                {
                    "event_id": a.event_id,
                    "kind": a.valued.movement.kind.value,
                    "item": a.valued.movement.item,
                    "location": a.valued.movement.location,
                    "to_location": a.valued.movement.to_location,
                    "quantity": a.valued.movement.quantity,
                    "amount": a.valued.amount,
                    "correlation_id": a.correlation_id,
                    "occurred_at": a.occurred_at,
                    "applied_at": now,
                }
                for a in applied
            ],
        )
        _insert_lots(
            conn,
            [
                {
                    "event_id": a.event_id,
                    "seq": n,
                    "item": a.valued.movement.item,
                    "location": change.location,
                    "lot": change.lot,
                    "expiry": change.expiry,
                    "quantity": change.quantity,
                    "cost_center": a.cost_center,
                    "encounter_ref": a.encounter_ref,
                }
                for a in applied
                for n, change in enumerate(a.valued.lot_changes, start=1)
            ],
        )
    if entries:
        _insert_entries(
            conn,
            [
                {
                    "entry_id": e.entry_id,
                    "source_event_id": e.source_event_id,
                    "correlation_id": e.correlation_id,
                    "posting_date": e.posting_date,
                    "period": e.period,
                    "currency": e.currency,
                    "description": e.description,
                    "created_at": now,
                    "booked_by": e.booked_by.value,
                    "erp_document": e.erp_document,
                }
                for e in entries
            ],
        )
        _insert_lines(
            conn,
            [
                {
                    "entry_id": e.entry_id,
                    "line_no": n,
                    "account": line.account,
                    "facility": line.facility,
                    "cost_center": line.cost_center,
                    "debit": line.debit,
                    "credit": line.credit,
                    "party": line.party,
                }
                for e in entries
                for n, line in enumerate(e.lines, start=1)
            ],
        )
        # the outbox: the ERP postings are due from the moment the entry exists, never
        # before; an entry the ERP's own document books is never sent (one booking per event)
        erp_postings.enqueue(conn, deliveries, now, traces)


# --- read side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StockRow:
    item: str
    location: str
    lot: str | None
    expiry: date | None
    quantity: Decimal


def stock(
    conn: Connection,
    *,
    item: str | None = None,
    location: str | None = None,
    lot: str | None = None,
    include_empty: bool = False,
    facilities: frozenset[str] | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[StockRow]:
    """On-hand lots; ``facilities``: only at locations of these facilities."""
    t = stock_lots
    conditions: list[Any] = []
    if facilities is not None:
        conditions.append(
            t.c.location.in_(select(locations.c.code).where(locations.c.facility.in_(facilities)))
        )
    if item is not None:
        conditions.append(t.c.item == item)
    if location is not None:
        conditions.append(t.c.location == location)
    if lot is not None:
        conditions.append(t.c.lot == lot)
    if not include_empty:
        conditions.append(t.c.quantity != 0)
    stmt = (
        select(t)
        .where(*conditions)
        .order_by(t.c.item, t.c.location, t.c.lot)
        .limit(limit)
        .offset(offset)
    )
    return [
        StockRow(r.item, r.location, r.lot or None, r.expiry, r.quantity)
        for r in conn.execute(stmt)
    ]


def journal(
    conn: Connection,
    *,
    correlation_id: str | None = None,
    account: str | None = None,
    period: str | None = None,
    entry_ids: Sequence[str] | None = None,
    facilities: frozenset[str] | None = None,
    location: str | None = None,
    item: str | None = None,
    newest_first: bool = False,
    limit: int = 200,
    offset: int = 0,
) -> list[JournalEntry]:
    """Journal entries, oldest first (``newest_first``: the latest first); ``facilities``:
    only those whose every line is of these facilities; ``location``, ``item``: only those
    of a stock movement at (or transferred to) that location, of that item."""
    e, ln, m = journal_entries, journal_lines, ledger_movements
    conditions: list[Any] = []
    if location is not None:
        at = select(m.c.event_id).where(or_(m.c.location == location, m.c.to_location == location))
        conditions.append(e.c.source_event_id.in_(at))
    if item is not None:
        conditions.append(e.c.source_event_id.in_(select(m.c.event_id).where(m.c.item == item)))
    if facilities is not None:
        conditions.append(e.c.entry_id.not_in(entries_outside(facilities)))
    if correlation_id is not None:
        conditions.append(e.c.correlation_id == correlation_id)
    if period is not None:
        conditions.append(e.c.period == period)
    if entry_ids is not None:
        conditions.append(e.c.entry_id.in_(entry_ids))
    if account is not None:
        conditions.append(e.c.entry_id.in_(select(ln.c.entry_id).where(ln.c.account == account)))
    heads = conn.execute(
        select(e)
        .where(*conditions)
        .order_by(
            *(
                (e.c.created_at.desc(), e.c.entry_id.desc())
                if newest_first
                else (e.c.created_at, e.c.entry_id)
            )
        )
        .limit(limit)
        .offset(offset)
    ).all()
    lines: dict[str, list[JournalLine]] = {}
    for chunk in chunks([h.entry_id for h in heads]):
        for row in conn.execute(
            select(ln).where(ln.c.entry_id.in_(chunk)).order_by(ln.c.entry_id, ln.c.line_no)
        ):
            lines.setdefault(row.entry_id, []).append(
                JournalLine(
                    account=row.account,
                    debit=row.debit,
                    credit=row.credit,
                    cost_center=row.cost_center,
                    facility=row.facility,
                    party=row.party,
                )
            )
    return [
        JournalEntry(
            entry_id=h.entry_id,
            posting_date=h.posting_date,
            currency=h.currency,
            description=h.description,
            source_event_id=h.source_event_id,
            correlation_id=h.correlation_id,
            lines=tuple(lines.get(h.entry_id, ())),
            booked_by=BookedBy(h.booked_by),
            erp_document=h.erp_document,
        )
        for h in heads
    ]


def entries_outside(facilities: frozenset[str]) -> Any:
    """The ids of the journal entries with a line of another facility (a subquery)."""
    ln = journal_lines
    return select(ln.c.entry_id).where(ln.c.facility.not_in(facilities))


def correlation_facilities(conn: Connection, correlation_id: str) -> set[str]:
    """The facilities of every journal line recorded under ``correlation_id``."""
    e, ln = journal_entries, journal_lines
    return set(
        conn.execute(
            select(ln.c.facility)
            .distinct()
            .join(e, e.c.entry_id == ln.c.entry_id)
            .where(e.c.correlation_id == correlation_id)
        ).scalars()
    )


@dataclass(frozen=True)
class FacilityCheck:
    """The reconciliation checkpoint of DESIGN.md: stock ledger value vs GL inventory."""

    facility: str
    ledger_value: Decimal
    gl_inventory: Decimal

    @property
    def difference(self) -> Decimal:
        return self.ledger_value - self.gl_inventory


def facility_checks(conn: Connection, inventory_accounts: dict[str, str]) -> list[FacilityCheck]:
    """Per facility: the ledger's valuation and the balance of its inventory account."""
    v, loc, ln = stock_valuations, locations, journal_lines
    value_col = func.sum(v.c.value, type_=v.c.value.type)
    ledger: dict[str, Decimal] = dict(
        conn.execute(  # type: ignore[arg-type]
            select(loc.c.facility, value_col)
            .join(loc, loc.c.code == v.c.location)
            .group_by(loc.c.facility)
        ).all()
    )
    checks = []
    for facility in sorted(set(ledger) | set(inventory_accounts)):
        account = inventory_accounts.get(facility)
        gl = Decimal(0)
        if account is not None:
            debit = func.sum(ln.c.debit, type_=ln.c.debit.type)
            credit = func.sum(ln.c.credit, type_=ln.c.credit.type)
            row = conn.execute(
                select(debit, credit).where(ln.c.account == account, ln.c.facility == facility)
            ).one()
            gl = (row[0] or Decimal(0)) - (row[1] or Decimal(0))
        checks.append(FacilityCheck(str(facility), ledger.get(facility) or Decimal(0), gl))
    return checks


def counts(conn: Connection) -> dict[str, int]:
    return {
        "movements": conn.execute(select(func.count()).select_from(ledger_movements)).scalar_one(),
        "journal_entries": conn.execute(
            select(func.count()).select_from(journal_entries)
        ).scalar_one(),
    }
