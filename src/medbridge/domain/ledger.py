"""The stock ledger: on-hand per item, location and lot; moving-average value per item@location.

The ledger is kept in a ``StockBook``, an in-memory slice that the store loads for the keys a
batch of movements touches and writes back afterwards (``changed_lots`` / ``changed_values``).
``apply_movement`` is atomic: it computes every change first and mutates the book only when the
whole movement is valid.

Valuation rules (moving average per item@location, money kept to the cent):
- a receipt (or a gain with a cost) adds ``round(qty * unit_cost, 2)``;
- an issue takes ``round(qty * value / on_hand, 2)``, or the whole remaining value when it
  empties the item@location, so no rounding residue is ever left behind;
- a transfer moves the issued value to the destination.
Issues without a lot draw lots first-expiry-first-out (lots without expiry last).

Quarantined lots (``StockBook.quarantined``, a recall): an issue without a lot does not draw
them while other stock exists. A request (transfer, wastage, return, count loss) never draws
them; a fact (dispense, clinical consumption) draws them only after every other lot is empty
(the units were handed out, so they most likely came from there), before a shortfall goes on
the lot-less balance. An issue naming a quarantined lot takes it as any other lot: what to do
about it (hold it, open a task) is the ledger consumer's business (``flows.ledger_posting``).

Facts, not requests (DESIGN.md): a dispense or a clinical consumption already happened on the
floor, so it is applied even when the ledger holds less than it takes, or names a lot the
ledger has never seen. What the lots hold is drawn first (FEFO, or the named lot); the
shortfall is left as a negative balance on the named lot, or on the lot-less balance
(``NO_LOT``). The movement carries a ``StockDiscrepancy`` saying what was asked, what was held
and at which cost the shortfall was valued. Every other issuing kind (wastage, return to
supplier, transfer, count loss) is a request and is still refused with ``InsufficientStock``.

Negative balances and the moving average:
- the value of a negative balance is carried at the cost it was issued at, so value and
  quantity always have the same sign (and the value is 0 when the quantity is);
- the cost of an issue beyond what is held (``current_cost``) is the item@location's moving
  average while it holds stock; the cost its negative balance is carried at while it owes
  stock; when it holds nothing, the last cost it moved at (``last_costs``); when it never held
  anything, zero: the item master has no standard cost, and zero is honest (the journal
  entry is then 0 and the receipt that fills the hole posts the whole cost, see below);
- a count gain without a unit cost is valued at the same ``current_cost`` (so units found
  where the ledger owes some fill the hole at the cost it is carried at);
- an arrival (receipt, count gain, transfer in) into a negative balance fills the hole first,
  at the arrival's own cost; the difference between that and the value the hole was carried
  at is the movement's ``revaluation`` (positive: the units dispensed cost more than they
  were expensed at). What is left over of the arrival is valued at its own cost, so a
  receipt that brings a balance back leaves it at the receipt's cost, not at an average
  skewed by the hole. The posting rules book the revaluation against the consumption
  expense, so the ledger value of a facility still equals its GL inventory.
- lots are counted as the floor reports them: a receipt into another lot (or with a lot, when
  the hole is lot-less) brings the item@location's valuation back but leaves the owing lot
  negative until a receipt of that lot or a count adjustment settles it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from medbridge.canonical.masterdata import Item
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.domain.errors import InsufficientStock, InvalidMovement
from medbridge.domain.units import base_factor

CENT = Decimal("0.01")
COST_QUANTUM = Decimal("0.000001")
"""Unit costs kept as a last known cost are rounded to this (the store's unit cost scale)."""
ZERO = Decimal(0)
NO_LOT = ""
"""The lot key of stock held without a lot number."""

FACTS = frozenset({MovementKind.DISPENSE, MovementKind.CLINICAL_CONSUMPTION})
"""Issues that already happened on the floor: applied even beyond what the ledger holds."""

ISSUING = frozenset(
    {
        MovementKind.DISPENSE,
        MovementKind.CLINICAL_CONSUMPTION,
        MovementKind.WASTAGE,
        MovementKind.RETURN_TO_SUPPLIER,
        MovementKind.TRANSFER,
    }
)

LotKey = tuple[str, str, str]  # item, location, lot ("" = no lot)
ValueKey = tuple[str, str]  # item, location


def money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _cost(amount: Decimal) -> Decimal:
    return amount.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass
class Valuation:
    """Quantity and value of an item@location; both negative when it owes stock."""

    quantity: Decimal = ZERO
    value: Decimal = ZERO

    @property
    def unit_cost(self) -> Decimal:
        return self.value / self.quantity if self.quantity else ZERO


class CostBasis(StrEnum):
    """Where the cost of a shortfall came from (see the module docstring)."""

    AVERAGE = "average"  # the moving average of the stock held
    NEGATIVE_BALANCE = "negative_balance"  # the cost the hole already owed is carried at
    LAST_KNOWN = "last_known"  # nothing held: the last cost the item@location moved at
    NONE = "none"  # never held anything, and the item master has no standard cost: zero


@dataclass(frozen=True)
class LedgerMovement:
    """A movement in the item's base unit, resolved and ready for the ledger.

    ``quantity`` is positive except for count adjustments (signed). ``unit_cost`` is per base
    unit. ``lot`` None means: any lot (issues draw FEFO; receipts go to the no-lot bucket).
    """

    kind: MovementKind
    item: str
    location: str
    quantity: Decimal
    lot: str | None = None
    expiry: date | None = None
    unit_cost: Decimal | None = None
    to_location: str | None = None


@dataclass(frozen=True)
class LotChange:
    location: str
    lot: str
    quantity: Decimal  # signed, base unit
    expiry: date | None = None  # of a lot arriving (or owed by a fact that named it)


@dataclass(frozen=True)
class StockDiscrepancy:
    """A dispense or clinical consumption took more than the ledger held; applied anyway.

    ``lot`` is the lot the movement named (None: any lot, drawn FEFO); ``held`` what the
    ledger held for it before: that lot (0 when unknown, negative when it already owed), or
    every lot of the item@location that held stock. The shortfall went on ``shortfall_lot``
    (the named lot, or ``NO_LOT``) and was valued at ``unit_cost`` per base unit.
    """

    item: str
    location: str
    lot: str | None
    wanted: Decimal
    held: Decimal
    known_lot: bool
    shortfall_lot: str
    unit_cost: Decimal
    cost_basis: CostBasis

    @property
    def shortfall(self) -> Decimal:
        """Base units taken beyond what was held."""
        return self.wanted - max(self.held, ZERO)


@dataclass(frozen=True)
class ValuedMovement:
    """What a movement did to the ledger: lot changes and the value it moved (>= 0).

    ``discrepancy``: a fact from the floor took more than was held (see StockDiscrepancy).
    ``revaluation``: an arrival filled a negative balance at a cost other than the one the
    balance was carried at; signed, positive when the hole cost more (inventory value goes
    down by it, the consumption expense up). The inventory value of the arrival location
    changes by ``amount - revaluation``.
    """

    movement: LedgerMovement
    amount: Decimal
    lot_changes: tuple[LotChange, ...]
    discrepancy: StockDiscrepancy | None = None
    revaluation: Decimal = ZERO

    @property
    def is_gain(self) -> bool:
        return self.movement.kind is MovementKind.COUNT_ADJUSTMENT and self.movement.quantity > 0


@dataclass
class StockBook:
    """An in-memory slice of the ledger (or the whole of it, in tests)."""

    on_hand: dict[LotKey, Decimal] = field(default_factory=dict)
    expiries: dict[LotKey, date | None] = field(default_factory=dict)
    valuations: dict[ValueKey, Valuation] = field(default_factory=dict)
    last_costs: dict[ValueKey, Decimal] = field(default_factory=dict)
    """Per item@location, the unit cost its last movement was valued at."""
    quarantined: frozenset[tuple[str, str]] = frozenset()
    """(item, lot) pairs in quarantine: drawn last by FEFO, see the module docstring."""
    changed_lots: set[LotKey] = field(default_factory=set)
    changed_values: set[ValueKey] = field(default_factory=set)

    _lot_index: dict[ValueKey, list[LotKey]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _indexed: int = field(default=0, repr=False, compare=False)

    def lots(self, item: str, location: str) -> list[LotKey]:
        """The lot keys of an item@location. Lots are only ever added to ``on_hand`` (a lot
        emptied keeps its zero), so the index is rebuilt when the key count changes. (A scan
        of every key per issue was 9% of the ledger consumer's time, py-spy.)"""
        if self._indexed != len(self.on_hand):
            index: dict[ValueKey, list[LotKey]] = {}
            for key in self.on_hand:
                index.setdefault((key[0], key[1]), []).append(key)
            self._lot_index, self._indexed = index, len(self.on_hand)
        return list(self._lot_index.get((item, location), ()))

    def valuation(self, item: str, location: str) -> Valuation:
        return self.valuations.get((item, location), Valuation())

    def current_cost(self, item: str, location: str) -> tuple[Decimal, CostBasis]:
        """The unit cost of an issue beyond what is held, and where it came from."""
        valuation = self.valuation(item, location)
        if valuation.quantity > 0:
            return valuation.unit_cost, CostBasis.AVERAGE
        if valuation.quantity < 0:
            return valuation.unit_cost, CostBasis.NEGATIVE_BALANCE
        last = self.last_costs.get((item, location))
        if last is not None:
            return last, CostBasis.LAST_KNOWN
        return ZERO, CostBasis.NONE

    def apply(self, movement: LedgerMovement) -> ValuedMovement:
        return apply_movement(self, movement)


def _fefo_key(book: StockBook, key: LotKey) -> tuple[int, date, str]:
    expiry = book.expiries.get(key)
    return (expiry is None, expiry or date.max, key[2])


def _allocate(
    book: StockBook, item: str, location: str, lot: str | None, qty: Decimal, forced: bool
) -> tuple[list[LotChange], Decimal | None]:
    """Which lots an issue of ``qty`` draws from, and what was held when that is less than
    ``qty`` (None: enough). Raises InsufficientStock unless the issue is ``forced``."""
    if lot is not None:
        held = book.on_hand.get((item, location, lot), ZERO)
        if held < qty and not forced:
            raise InsufficientStock(item, location, lot, qty, held)
        return [LotChange(location, lot, -qty)], (held if held < qty else None)
    candidates = sorted(
        (k for k in book.lots(item, location) if book.on_hand[k] > 0),
        key=lambda k: _fefo_key(book, k),
    )
    if book.quarantined:
        free = [k for k in candidates if (k[0], k[2]) not in book.quarantined]
        # a request draws free stock only; a fact draws quarantined lots last
        candidates = free + [k for k in candidates if k not in free] if forced else free
    held = sum((book.on_hand[k] for k in candidates), ZERO)
    if held < qty and not forced:
        raise InsufficientStock(item, location, None, qty, held)
    changes, remaining = [], qty
    for key in candidates:
        take = min(remaining, book.on_hand[key])
        changes.append(LotChange(location, key[2], -take))
        remaining -= take
        if remaining == 0:
            return changes, None
    # forced: every lot with stock is emptied; the rest goes on the lot-less balance
    drawn = next((c for c in changes if c.lot == NO_LOT), None)
    if drawn is None:
        changes.append(LotChange(location, NO_LOT, -remaining))
    else:
        changes[changes.index(drawn)] = LotChange(location, NO_LOT, drawn.quantity - remaining)
    return changes, held


def _issue(valuation: Valuation, qty: Decimal, cost: Decimal) -> tuple[Decimal, Valuation]:
    """The value an issue of ``qty`` takes, and the valuation it leaves. Beyond what is held,
    units are valued at ``cost`` (the book's current cost)."""
    held = valuation.quantity
    if held > 0 and qty <= held:
        amount = valuation.value if qty == held else money(qty * valuation.value / held)
    elif held > 0:  # everything held, and the shortfall at the average
        amount = valuation.value + money((qty - held) * valuation.value / held)
    else:
        amount = money(qty * cost)
    return amount, Valuation(held - qty, valuation.value - amount)


def _arrive(valuation: Valuation, qty: Decimal, amount: Decimal) -> tuple[Valuation, Decimal]:
    """The valuation after ``qty`` worth ``amount`` arrives, and the revaluation of the
    negative balance it filled (see the module docstring)."""
    if valuation.quantity >= 0 or qty <= 0:
        return Valuation(valuation.quantity + qty, valuation.value + amount), ZERO
    hole, carried_cost = -valuation.quantity, valuation.unit_cost
    if qty < hole:  # partly filled: the rest of the hole keeps its cost
        carried, at_arrival = money(qty * carried_cost), amount
    else:
        carried = -valuation.value
        at_arrival = amount if qty == hole else money(hole * amount / qty)
    revaluation = at_arrival - carried
    return Valuation(valuation.quantity + qty, valuation.value + amount - revaluation), revaluation


def apply_movement(book: StockBook, m: LedgerMovement) -> ValuedMovement:
    """Apply one movement to the book and say what it did (atomic: all or nothing)."""
    if m.kind is MovementKind.TRANSFER and m.to_location in (None, m.location):
        raise InvalidMovement("to_location", "a transfer needs another location to go to")
    issuing = m.kind in ISSUING or (m.kind is MovementKind.COUNT_ADJUSTMENT and m.quantity < 0)
    source_key = (m.item, m.location)
    source = book.valuation(*source_key)
    cost, basis = book.current_cost(*source_key)
    value_changes: dict[ValueKey, Valuation] = {}
    costs: dict[ValueKey, Decimal] = {}
    discrepancy, revaluation = None, ZERO
    if issuing:
        qty = abs(m.quantity)
        changes, held = _allocate(book, m.item, m.location, m.lot, qty, m.kind in FACTS)
        amount, value_changes[source_key] = _issue(source, qty, cost)
        costs[source_key] = _cost(cost)
        if held is not None and m.lot is not None and m.expiry is not None:
            # the floor said which lot and its expiry: keep it for a lot the book owes
            changes = [LotChange(m.location, m.lot, -qty, m.expiry)]
        if held is not None:
            discrepancy = StockDiscrepancy(
                item=m.item,
                location=m.location,
                lot=m.lot,
                wanted=qty,
                held=held,
                known_lot=m.lot is None or (m.item, m.location, m.lot) in book.on_hand,
                shortfall_lot=m.lot if m.lot is not None else NO_LOT,
                unit_cost=_cost(cost),
                cost_basis=basis,
            )
        if m.kind is MovementKind.TRANSFER:
            assert m.to_location is not None  # checked above
            dest_key = (m.item, m.to_location)
            value_changes[dest_key], revaluation = _arrive(book.valuation(*dest_key), qty, amount)
            costs[dest_key] = _cost(cost)
            changes += [
                LotChange(
                    m.to_location,
                    c.lot,
                    -c.quantity,
                    book.expiries.get((m.item, m.location, c.lot)),
                )
                for c in changes
            ]
    else:  # receipt or a count gain
        unit_cost = m.unit_cost if m.unit_cost is not None else cost
        amount = money(m.quantity * unit_cost)
        value_changes[source_key], revaluation = _arrive(source, m.quantity, amount)
        costs[source_key] = _cost(unit_cost)
        changes = [LotChange(m.location, m.lot or NO_LOT, m.quantity, m.expiry)]
    _commit(book, m.item, changes, value_changes, costs)
    return ValuedMovement(m, amount, tuple(changes), discrepancy, revaluation)


def _commit(
    book: StockBook,
    item: str,
    changes: Iterable[LotChange],
    values: dict[ValueKey, Valuation],
    costs: dict[ValueKey, Decimal],
) -> None:
    for change in changes:
        lot_key = (item, change.location, change.lot)
        book.on_hand[lot_key] = book.on_hand.get(lot_key, ZERO) + change.quantity
        arriving = change.quantity > 0 or change.expiry is not None
        if arriving and book.expiries.get(lot_key) is None:
            book.expiries[lot_key] = change.expiry
        book.changed_lots.add(lot_key)
    for value_key, valuation in values.items():
        book.valuations[value_key] = valuation
        book.changed_values.add(value_key)
    book.last_costs.update(costs)


def from_canonical(movement: StockMovement, item: Item) -> LedgerMovement:
    """A canonical movement in base units, its unit cost per base unit."""
    factor = base_factor(item, movement.unit)
    unit_cost = None if movement.unit_cost is None else movement.unit_cost.amount / factor
    return LedgerMovement(
        kind=movement.kind,
        item=movement.item,
        location=movement.location,
        quantity=movement.quantity * factor,
        lot=movement.lot,
        expiry=movement.expiry,
        unit_cost=unit_cost,
        to_location=movement.to_location,
    )
