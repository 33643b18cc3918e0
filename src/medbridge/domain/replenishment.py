"""Replenishment policy per item x location: when to reorder, how much, from whom, how urgently.

Pure functions over stock positions in the item's base unit and the item's supply options.

Parameters (``safety_stock``, ``reorder_point``)
- safety stock = z * stdev(daily usage) * sqrt(lead time), rounded up to a whole base unit
  (sample standard deviation; 0 with fewer than two days of history);
- reorder point = mean daily usage * lead time + safety stock, rounded up likewise;
- explicit values on a position win over computed ones. The lead time is the chosen
  supplier's; with no eligible supplier, the longest among the item's options (0 if none).

Decision (``replenish``)
- inventory position = on hand + on order. Replenish only when it is <= the reorder point,
  never when it is above it. The need is par level - position (nothing when that is <= 0).
- Transfers first: another location's surplus is on_hand - max(its par, its reorder point).
  One location whose surplus covers the whole need is preferred (same facility first, then
  most surplus); otherwise surpluses are taken in that order until the need is met.
- The remainder is ordered in the contract unit: remainder / pack factor, rounded UP to the
  pack multiple, then raised to the minimum order quantity (rounded up to a multiple again).
- Eligible options: a contract for the item valid on ``now``'s date (valid_from <= today <=
  valid_to) with an ACTIVE supplier. The cheapest per base unit (price / pack factor) wins;
  ties go to the shorter lead time, then the supplier code, then the contract code. Prices
  are compared as amounts: options are expected in one currency.
- No eligible option: a ``NoSource`` naming why (no contract / none valid today / suppliers
  on hold / suppliers inactive), never an exception.

Urgency: STAT when on_hand <= 0 (stockout), on_hand < safety stock, or flagged urgent (a STAT
pharmacy order); ROUTINE otherwise. A flag never forces an order above the reorder point.

Consolidation (``consolidate``): ROUTINE lines are grouped per (supplier, facility); a group is
released once its oldest line has waited ``window``, else held until then. In a group, lines
for the same item and contract merge into one line (quantities summed, re-rounded to the pack
multiple and MOQ, which leaves a sum of valid lines unchanged). STAT lines are released at
once, each in its own order.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import Contract, Item, Supplier, SupplierStatus
from medbridge.domain.units import base_factor

ZERO = Decimal(0)
ONE = Decimal(1)
DEFAULT_SERVICE_Z = Decimal("1.65")
"""z for a ~95% cycle service level."""


class Urgency(StrEnum):
    ROUTINE = "routine"
    """May wait for the consolidation window."""
    STAT = "stat"
    """Released at once, in its own purchase order."""


class NoSourceReason(StrEnum):
    NO_CONTRACT = "no_contract"
    """No contract for the item at all."""
    EXPIRED = "expired"
    """Contracts exist, none valid today (expired or not started yet)."""
    ALL_ON_HOLD = "all_on_hold"
    """Valid contracts, but no supplier is active and at least one is on hold."""
    ALL_INACTIVE = "all_inactive"
    """Valid contracts, but every supplier is inactive."""


@dataclass(frozen=True)
class StockPosition:
    """An item at a location, in base units. ``daily_usage`` is the recent history, oldest first;
    ``reorder_point`` / ``safety_stock`` None means: compute them from it."""

    item: str
    location: str
    facility: str
    on_hand: Decimal
    on_order: Decimal
    par_level: Decimal
    reorder_point: Decimal | None = None
    safety_stock: Decimal | None = None
    daily_usage: tuple[Decimal, ...] = ()

    @property
    def inventory_position(self) -> Decimal:
        return self.on_hand + self.on_order


@dataclass(frozen=True)
class SupplyOption:
    """One way to buy the item: a supplier's contract, priced per contract unit, where one
    contract unit holds ``pack_factor`` base units and is ordered in ``pack_multiple``s."""

    supplier: Supplier
    contract: Contract
    pack_factor: Decimal
    pack_multiple: Decimal = ONE

    def __post_init__(self) -> None:
        if self.pack_factor <= 0 or self.pack_multiple <= 0:
            raise ValueError("pack_factor and pack_multiple must be positive")
        if self.supplier.code != self.contract.supplier:
            raise ValueError(f"contract {self.contract.code} is not {self.supplier.code}'s")

    @property
    def price_per_base_unit(self) -> Decimal:
        return self.contract.price.amount / self.pack_factor

    def valid_on(self, day: date) -> bool:
        c = self.contract
        return c.valid_from <= day and (c.valid_to is None or day <= c.valid_to)


@dataclass(frozen=True)
class TransferProposal:
    item: str
    from_location: str
    from_facility: str
    to_location: str
    to_facility: str
    quantity: Decimal  # base units


@dataclass(frozen=True)
class OrderLineProposal:
    """A line to order: ``quantity`` contract units of ``unit`` at ``unit_price`` each."""

    item: str
    location: str
    facility: str
    supplier: str
    contract: str
    unit: str
    quantity: Decimal
    unit_price: Money
    pack_factor: Decimal
    pack_multiple: Decimal
    minimum_order_quantity: Decimal
    lead_time_days: int
    urgency: Urgency
    proposed_at: datetime

    @property
    def base_quantity(self) -> Decimal:
        return self.quantity * self.pack_factor

    @property
    def price_per_base_unit(self) -> Decimal:
        return self.unit_price.amount / self.pack_factor


@dataclass(frozen=True)
class NoSource:
    """An order is needed but nobody can supply it."""

    item: str
    location: str
    facility: str
    reason: NoSourceReason
    base_quantity: Decimal
    urgency: Urgency


@dataclass(frozen=True)
class Replenishment:
    """What ``replenish`` decided for a position, with the parameters it used.
    ``order`` is None when nothing (more) needs ordering."""

    position: StockPosition
    reorder_point: Decimal
    safety_stock: Decimal
    urgency: Urgency
    transfers: tuple[TransferProposal, ...] = ()
    order: OrderLineProposal | NoSource | None = None

    @property
    def triggered(self) -> bool:
        return self.position.inventory_position <= self.reorder_point

    @property
    def transferred(self) -> Decimal:
        return sum((t.quantity for t in self.transfers), ZERO)


@dataclass(frozen=True)
class PurchaseOrderLine:
    """A consolidated line; ``parts`` are the proposals merged into it (one per location)."""

    item: str
    contract: str
    unit: str
    quantity: Decimal
    unit_price: Money
    parts: tuple[OrderLineProposal, ...]


@dataclass(frozen=True)
class PurchaseOrderProposal:
    """``released_at`` is ``now`` for a released order, the time it will be released if held."""

    supplier: str
    facility: str
    lines: tuple[PurchaseOrderLine, ...]
    urgency: Urgency
    released_at: datetime


@dataclass(frozen=True)
class Consolidation:
    released: tuple[PurchaseOrderProposal, ...]
    held: tuple[PurchaseOrderProposal, ...]


# --- parameters ----------------------------------------------------------------------------


def _ceil(value: Decimal) -> Decimal:
    return value.to_integral_value(rounding=ROUND_CEILING)


def _lead(lead_time_days: int | Decimal) -> Decimal:
    if lead_time_days < 0:
        raise ValueError("lead_time_days must not be negative")
    return Decimal(lead_time_days)


def safety_stock(
    daily_usage: Sequence[Decimal],
    lead_time_days: int | Decimal,
    service_z: Decimal = DEFAULT_SERVICE_Z,
) -> Decimal:
    """z * sample stdev(daily usage) * sqrt(lead time), rounded up to a whole base unit."""
    lead = _lead(lead_time_days)
    if len(daily_usage) < 2:
        return ZERO
    return _ceil(service_z * statistics.stdev(daily_usage) * lead.sqrt())


def reorder_point(
    daily_usage: Sequence[Decimal],
    lead_time_days: int | Decimal,
    safety: Decimal | None = None,
    service_z: Decimal = DEFAULT_SERVICE_Z,
) -> Decimal:
    """mean daily usage * lead time + safety stock (computed when None), rounded up."""
    lead = _lead(lead_time_days)
    if safety is None:
        safety = safety_stock(daily_usage, lead, service_z)
    mean = statistics.mean(daily_usage) if daily_usage else ZERO
    return _ceil(mean * lead + safety)


def _parameters(p: StockPosition, lead: int, z: Decimal) -> tuple[Decimal, Decimal]:
    """(reorder point, safety stock) of a position: explicit values win."""
    safety = p.safety_stock if p.safety_stock is not None else safety_stock(p.daily_usage, lead, z)
    rop = p.reorder_point
    return (reorder_point(p.daily_usage, lead, safety) if rop is None else rop), safety


# --- supplier choice and quantities --------------------------------------------------------


def supply_options(
    item: Item,
    contracts: Iterable[Contract],
    suppliers: Mapping[str, Supplier],
    pack_multiples: Mapping[str, Decimal] | None = None,
) -> tuple[SupplyOption, ...]:
    """The item's options from master data: the pack factor is the item's conversion of the
    contract unit (UnknownUnit if it has none); ``pack_multiples`` is keyed by contract code.
    A contract naming an unknown supplier is a ValueError."""
    multiples = pack_multiples or {}
    options = []
    for contract in contracts:
        if contract.item != item.code:
            continue
        if contract.supplier not in suppliers:
            raise ValueError(f"contract {contract.code}: unknown supplier {contract.supplier}")
        options.append(
            SupplyOption(
                suppliers[contract.supplier],
                contract,
                base_factor(item, contract.unit),
                multiples.get(contract.code, ONE),
            )
        )
    return tuple(options)


def _option_rank(option: SupplyOption) -> tuple[Decimal, int, str, str]:
    return (
        option.price_per_base_unit,
        option.supplier.lead_time_days,
        option.supplier.code,
        option.contract.code,
    )


def choose_supplier(
    options: Iterable[SupplyOption], item: str, today: date
) -> SupplyOption | NoSourceReason:
    """The best eligible option for ``item`` on ``today``, or why there is none."""
    for_item = [o for o in options if o.contract.item == item]
    valid = [o for o in for_item if o.valid_on(today)]
    eligible = [o for o in valid if o.supplier.status is SupplierStatus.ACTIVE]
    if eligible:
        return min(eligible, key=_option_rank)
    if not for_item:
        return NoSourceReason.NO_CONTRACT
    if not valid:
        return NoSourceReason.EXPIRED
    if any(o.supplier.status is SupplierStatus.ON_HOLD for o in valid):
        return NoSourceReason.ALL_ON_HOLD
    return NoSourceReason.ALL_INACTIVE


def _round_up_to(value: Decimal, multiple: Decimal) -> Decimal:
    return _ceil(value / multiple) * multiple


def round_order(quantity: Decimal, pack_multiple: Decimal, moq: Decimal) -> Decimal:
    """Contract units rounded up to the pack multiple, then raised to the MOQ (a multiple)."""
    rounded = _round_up_to(quantity, pack_multiple)
    return rounded if rounded >= moq else _round_up_to(moq, pack_multiple)


def order_quantity(base_need: Decimal, option: SupplyOption) -> Decimal:
    """How many contract units of ``option`` cover ``base_need`` base units (> 0)."""
    multiple, moq = option.pack_multiple, option.contract.minimum_order_quantity
    quantity = round_order(base_need / option.pack_factor, multiple, moq)
    if quantity * option.pack_factor < base_need:  # an inexact division rounded down
        quantity += multiple
    return quantity


# --- the decision ------------------------------------------------------------------------


def _transfers(
    position: StockPosition, others: Iterable[StockPosition], need: Decimal, lead: int, z: Decimal
) -> list[TransferProposal]:
    donors: list[tuple[StockPosition, Decimal]] = []
    for other in others:
        if other.item != position.item or other.location == position.location:
            continue
        surplus = other.on_hand - max(other.par_level, _parameters(other, lead, z)[0])
        if surplus > 0:
            donors.append((other, surplus))
    donors.sort(key=lambda d: (d[0].facility != position.facility, -d[1], d[0].location))
    covering = [d for d in donors if d[1] >= need]
    p, transfers, remaining = position, [], need
    for donor, surplus in covering[:1] or donors:
        take = min(surplus, remaining)
        transfers.append(
            TransferProposal(p.item, donor.location, donor.facility, p.location, p.facility, take)
        )
        remaining -= take
        if remaining <= 0:
            break
    return transfers


def replenish(
    position: StockPosition,
    options: Iterable[SupplyOption],
    now: datetime,
    *,
    others: Iterable[StockPosition] = (),
    urgent: bool = False,
    service_z: Decimal = DEFAULT_SERVICE_Z,
) -> Replenishment:
    """Decide for one position (see the module docstring). ``now.date()`` is the day contracts
    must be valid on (pass ``now`` in the facility's time zone); ``others`` are the item's
    positions at other locations, for transfers; ``urgent`` flags a STAT pharmacy order."""
    options = tuple(options)
    choice = choose_supplier(options, position.item, now.date())
    if isinstance(choice, SupplyOption):
        lead = choice.supplier.lead_time_days
    else:
        for_item = [o.supplier.lead_time_days for o in options if o.contract.item == position.item]
        lead = max(for_item, default=0)
    rop, safety = _parameters(position, lead, service_z)
    stat = urgent or position.on_hand <= 0 or position.on_hand < safety
    urgency = Urgency.STAT if stat else Urgency.ROUTINE
    decided = Replenishment(position, rop, safety, urgency)
    need = position.par_level - position.inventory_position
    if not decided.triggered or need <= 0:
        return decided
    transfers = tuple(_transfers(position, others, need, lead, service_z))
    remainder = need - sum((t.quantity for t in transfers), ZERO)
    p, c = position, choice
    order: OrderLineProposal | NoSource | None = None
    if remainder > 0 and isinstance(c, NoSourceReason):
        order = NoSource(p.item, p.location, p.facility, c, remainder, urgency)
    elif remainder > 0 and isinstance(c, SupplyOption):
        quantity = order_quantity(remainder, c)
        order = OrderLineProposal(
            item=p.item,
            location=p.location,
            facility=p.facility,
            supplier=c.supplier.code,
            contract=c.contract.code,
            unit=c.contract.unit,
            quantity=quantity,
            unit_price=c.contract.price_for(quantity),
            pack_factor=c.pack_factor,
            pack_multiple=c.pack_multiple,
            minimum_order_quantity=c.contract.minimum_order_quantity,
            lead_time_days=lead,
            urgency=urgency,
            proposed_at=now,
        )
    return Replenishment(position, rop, safety, urgency, transfers, order)


# --- consolidation -----------------------------------------------------------------------


def _merge(
    lines: Sequence[OrderLineProposal], contracts: Mapping[str, Contract]
) -> tuple[PurchaseOrderLine, ...]:
    by_key: dict[tuple[str, str], list[OrderLineProposal]] = defaultdict(list)
    for line in lines:
        by_key[(line.item, line.contract)].append(line)
    merged = []
    for (item, contract), parts in sorted(by_key.items()):
        first = parts[0]
        total = sum((p.quantity for p in parts), ZERO)
        quantity = round_order(total, first.pack_multiple, first.minimum_order_quantity)
        price = first.unit_price
        terms = contracts.get(contract)
        if terms is not None and terms.tiers:  # the merged line may reach a lower tier
            price = terms.price_for(quantity)
        merged.append(PurchaseOrderLine(item, contract, first.unit, quantity, price, tuple(parts)))
    return tuple(merged)


def consolidate(
    proposals: Iterable[OrderLineProposal],
    window: timedelta,
    now: datetime,
    contracts: Mapping[str, Contract] | None = None,
) -> Consolidation:
    """Group ROUTINE lines per (supplier, facility) into purchase orders released once the
    oldest line has waited ``window``; release every STAT line at once in its own order.
    ``contracts`` (by code): a merged line of a contract with price tiers is priced at the
    tier its merged quantity reaches."""
    terms = contracts or {}
    if window < timedelta(0):
        raise ValueError("window must not be negative")
    released: list[PurchaseOrderProposal] = []
    held: list[PurchaseOrderProposal] = []
    groups: dict[tuple[str, str], list[OrderLineProposal]] = defaultdict(list)
    for line in sorted(proposals, key=lambda p: p.proposed_at):
        if line.urgency is Urgency.STAT:
            released.append(
                PurchaseOrderProposal(
                    line.supplier, line.facility, _merge([line], terms), Urgency.STAT, now
                )
            )
        else:
            groups[(line.supplier, line.facility)].append(line)
    for (supplier, facility), lines in sorted(groups.items()):
        due = lines[0].proposed_at + window
        is_due = due <= now
        order = PurchaseOrderProposal(
            supplier, facility, _merge(lines, terms), Urgency.ROUTINE, now if is_due else due
        )
        (released if is_due else held).append(order)
    return Consolidation(tuple(released), tuple(held))
