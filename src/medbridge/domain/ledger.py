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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from medbridge.canonical.masterdata import Item
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.domain.errors import InsufficientStock, InvalidMovement
from medbridge.domain.units import base_factor

CENT = Decimal("0.01")
ZERO = Decimal(0)
NO_LOT = ""
"""The lot key of stock held without a lot number."""

LotKey = tuple[str, str, str]  # item, location, lot ("" = no lot)
ValueKey = tuple[str, str]  # item, location


def money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass
class Valuation:
    quantity: Decimal = ZERO
    value: Decimal = ZERO

    @property
    def unit_cost(self) -> Decimal:
        return self.value / self.quantity if self.quantity else ZERO


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
    expiry: date | None = None


@dataclass(frozen=True)
class ValuedMovement:
    """What a movement did to the ledger: lot changes and the value it moved (>= 0)."""

    movement: LedgerMovement
    amount: Decimal
    lot_changes: tuple[LotChange, ...]

    @property
    def is_gain(self) -> bool:
        return self.movement.kind is MovementKind.COUNT_ADJUSTMENT and self.movement.quantity > 0


@dataclass
class StockBook:
    """An in-memory slice of the ledger (or the whole of it, in tests)."""

    on_hand: dict[LotKey, Decimal] = field(default_factory=dict)
    expiries: dict[LotKey, date | None] = field(default_factory=dict)
    valuations: dict[ValueKey, Valuation] = field(default_factory=dict)
    changed_lots: set[LotKey] = field(default_factory=set)
    changed_values: set[ValueKey] = field(default_factory=set)

    def lots(self, item: str, location: str) -> list[LotKey]:
        return [k for k in self.on_hand if k[0] == item and k[1] == location]

    def valuation(self, item: str, location: str) -> Valuation:
        return self.valuations.get((item, location), Valuation())

    def apply(self, movement: LedgerMovement) -> ValuedMovement:
        return apply_movement(self, movement)


def _fefo_key(book: StockBook, key: LotKey) -> tuple[int, date, str]:
    expiry = book.expiries.get(key)
    return (expiry is None, expiry or date.max, key[2])


def _allocate(
    book: StockBook, item: str, location: str, lot: str | None, qty: Decimal
) -> list[LotChange]:
    """Which lots an issue of ``qty`` draws from; raises InsufficientStock."""
    if lot is not None:
        held = book.on_hand.get((item, location, lot), ZERO)
        if held < qty:
            raise InsufficientStock(item, location, lot, qty, held)
        return [LotChange(location, lot, -qty)]
    candidates = sorted(
        (k for k in book.lots(item, location) if book.on_hand[k] > 0),
        key=lambda k: _fefo_key(book, k),
    )
    held = sum((book.on_hand[k] for k in candidates), ZERO)
    if held < qty:
        raise InsufficientStock(item, location, None, qty, held)
    changes, remaining = [], qty
    for key in candidates:
        take = min(remaining, book.on_hand[key])
        changes.append(LotChange(location, key[2], -take))
        remaining -= take
        if remaining == 0:
            break
    return changes


def _issue_value(valuation: Valuation, qty: Decimal) -> Decimal:
    if qty >= valuation.quantity:
        return valuation.value
    return money(qty * valuation.value / valuation.quantity)


def apply_movement(book: StockBook, m: LedgerMovement) -> ValuedMovement:
    """Apply one movement to the book and say what it did (atomic: all or nothing)."""
    if m.kind is MovementKind.TRANSFER and m.to_location in (None, m.location):
        raise InvalidMovement("to_location", "a transfer needs another location to go to")
    issuing = m.kind in {
        MovementKind.DISPENSE,
        MovementKind.CLINICAL_CONSUMPTION,
        MovementKind.WASTAGE,
        MovementKind.RETURN_TO_SUPPLIER,
        MovementKind.TRANSFER,
    } or (m.kind is MovementKind.COUNT_ADJUSTMENT and m.quantity < 0)
    source = book.valuation(m.item, m.location)
    value_changes: dict[ValueKey, Valuation] = {}
    if issuing:
        qty = abs(m.quantity)
        changes = _allocate(book, m.item, m.location, m.lot, qty)
        amount = _issue_value(source, qty)
        value_changes[(m.item, m.location)] = Valuation(
            source.quantity - qty, source.value - amount
        )
        if m.kind is MovementKind.TRANSFER:
            assert m.to_location is not None  # checked above
            dest = book.valuation(m.item, m.to_location)
            value_changes[(m.item, m.to_location)] = Valuation(
                dest.quantity + qty, dest.value + amount
            )
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
        unit_cost = m.unit_cost if m.unit_cost is not None else source.unit_cost
        amount = money(m.quantity * unit_cost)
        value_changes[(m.item, m.location)] = Valuation(
            source.quantity + m.quantity, source.value + amount
        )
        changes = [LotChange(m.location, m.lot or NO_LOT, m.quantity, m.expiry)]
    _commit(book, m.item, changes, value_changes)
    return ValuedMovement(m, amount, tuple(changes))


def _commit(
    book: StockBook, item: str, changes: Iterable[LotChange], values: dict[ValueKey, Valuation]
) -> None:
    for change in changes:
        lot_key = (item, change.location, change.lot)
        book.on_hand[lot_key] = book.on_hand.get(lot_key, ZERO) + change.quantity
        if change.quantity > 0 and book.expiries.get(lot_key) is None:
            book.expiries[lot_key] = change.expiry
        book.changed_lots.add(lot_key)
    for value_key, valuation in values.items():
        book.valuations[value_key] = valuation
        book.changed_values.add(value_key)


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
