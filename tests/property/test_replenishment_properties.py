"""Property tests of the replenishment policy (medbridge.domain.replenishment).

Random stock positions (stockouts and negative on hand included, explicit or computed reorder
points), random supply options (pack sizes, pack multiples, MOQs, supplier statuses, contracts
expired, current or not started) and random other locations; for every decision:

- nothing is proposed when on_hand + on_order is above the reorder point;
- an order line is never below the MOQ and always a whole number of pack multiples;
- after ordering, on_hand + on_order + ordered (base units) + transferred >= par level;
- the chosen supplier is ACTIVE with a contract valid today, no eligible option is cheaper per
  base unit, and a "no source" result comes exactly when nothing is eligible.

Random order lines through ``consolidate``: no STAT line is ever held, each STAT line is
released alone, every line lands in exactly one purchase order and quantities are kept
(sum in == sum out per supplier, facility, item and contract).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import Contract, Supplier, SupplierStatus
from medbridge.domain.replenishment import (
    NoSource,
    OrderLineProposal,
    StockPosition,
    SupplyOption,
    Urgency,
    consolidate,
    replenish,
)

D = Decimal
ITEM = "AMOX-500"
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
SETTINGS = settings(max_examples=200, deadline=None)

quantities = st.integers(min_value=0, max_value=400).map(D)
usage = st.lists(st.integers(min_value=0, max_value=30).map(D), max_size=8).map(tuple)


@st.composite
def positions(
    draw: st.DrawFn, location: str = "F1-MAIN", facility: str = "F1", most: int = 150
) -> StockPosition:
    """A position; ``most`` bounds on hand (low for the position replenished, so that it is
    often at or below its reorder point; high for the other locations, so they have surplus)."""
    return StockPosition(
        ITEM,
        location,
        facility,
        on_hand=draw(st.integers(min_value=-20, max_value=most).map(D)),
        on_order=draw(st.just(D(0)) | st.integers(min_value=0, max_value=60).map(D)),
        par_level=draw(quantities),
        reorder_point=draw(st.none() | st.integers(min_value=0, max_value=300).map(D)),
        safety_stock=draw(st.none() | st.integers(min_value=0, max_value=60).map(D)),
        daily_usage=draw(usage),
    )


@st.composite
def others(draw: st.DrawFn) -> list[StockPosition]:
    places = draw(
        st.lists(st.sampled_from(["F1-ICU", "F1-ER", "F2-MAIN", "F2-ER"]), unique=True, max_size=3)
    )
    return [draw(positions(place, place[:2], most=300)) for place in places]


@st.composite
def options(draw: st.DrawFn) -> list[SupplyOption]:
    suppliers = {
        code: Supplier(
            code=code,
            name=code,
            status=draw(st.sampled_from([SupplierStatus.ACTIVE, *SupplierStatus])),
            lead_time_days=draw(st.integers(min_value=0, max_value=10)),
        )
        for code in ("A", "B", "C")
    }
    result = []
    for n in range(draw(st.integers(min_value=0, max_value=5))):
        supplier = suppliers[draw(st.sampled_from(sorted(suppliers)))]
        valid_from = TODAY + timedelta(days=draw(st.integers(min_value=-30, max_value=3)))
        ends = draw(st.none() | st.integers(min_value=-5, max_value=30))
        contract = Contract(
            code=f"C{n}",
            supplier=supplier.code,
            item=draw(st.sampled_from([ITEM, ITEM, ITEM, "OTHER"])),
            unit=draw(st.sampled_from(["BX", "CA", "EA"])),
            price=Money(amount=D(draw(st.integers(min_value=1, max_value=10_000))) / 100),
            valid_from=valid_from,
            valid_to=None if ends is None else max(valid_from, TODAY + timedelta(days=ends)),
            minimum_order_quantity=D(draw(st.integers(min_value=1, max_value=20))),
        )
        factor = D(draw(st.sampled_from(["0.5", "1", "3", "10", "12", "100"])))
        multiple = D(draw(st.sampled_from(["1", "2", "3", "5"])))
        result.append(SupplyOption(supplier, contract, factor, multiple))
    return result


def _eligible(opts: list[SupplyOption], today: date) -> list[SupplyOption]:
    return [
        o
        for o in opts
        if o.contract.item == ITEM
        and o.valid_on(today)
        and o.supplier.status is SupplierStatus.ACTIVE
    ]


@SETTINGS
@given(positions(), options(), others(), st.booleans())
def test_replenishment_decisions(
    position: StockPosition, opts: list[SupplyOption], donors: list[StockPosition], urgent: bool
) -> None:
    result = replenish(position, opts, NOW, others=donors, urgent=urgent)
    stock = position.on_hand + position.on_order
    eligible = _eligible(opts, TODAY)

    event("triggered" if stock <= result.reorder_point else "not triggered")
    event(f"order: {type(result.order).__name__}, transfers: {bool(result.transfers)}")
    if stock > result.reorder_point:
        assert not result.triggered
        assert result.order is None
        assert result.transfers == ()
        return
    assert all(t.quantity > 0 and t.to_location == position.location for t in result.transfers)
    assert all(t.from_location != position.location for t in result.transfers)
    line = result.order
    if isinstance(line, NoSource):
        assert not eligible
        assert line.base_quantity == position.par_level - stock - result.transferred
        return
    ordered = D(0)
    if isinstance(line, OrderLineProposal):
        chosen = next(o for o in eligible if o.contract.code == line.contract)
        assert chosen.supplier.status is SupplierStatus.ACTIVE
        assert chosen.valid_on(TODAY)
        assert all(o.price_per_base_unit >= chosen.price_per_base_unit for o in eligible)
        assert line.quantity >= chosen.contract.minimum_order_quantity
        assert (line.quantity / chosen.pack_multiple) % 1 == 0
        assert line.urgency is result.urgency
        ordered = line.base_quantity
    assert stock + ordered + result.transferred >= position.par_level


@st.composite
def order_lines(draw: st.DrawFn) -> OrderLineProposal:
    multiple = draw(st.sampled_from([1, 2, 5]))
    moq = draw(st.integers(min_value=1, max_value=12))
    smallest = -(-moq // multiple) * multiple  # the MOQ rounded up to a multiple (ints)
    packs = draw(st.integers(min_value=0, max_value=10))
    item = draw(st.sampled_from(["I1", "I2", "I3"]))
    supplier = draw(st.sampled_from(["A", "B"]))
    return OrderLineProposal(
        item=item,
        location=draw(st.sampled_from(["MAIN", "ICU"])),
        facility=draw(st.sampled_from(["F1", "F2"])),
        supplier=supplier,
        contract=f"C-{supplier}-{item}-{multiple}-{moq}",
        unit="BX",
        quantity=D(smallest + packs * multiple),
        unit_price=Money(amount=D("12.50")),
        pack_factor=D(10),
        pack_multiple=D(multiple),
        minimum_order_quantity=D(moq),
        lead_time_days=2,
        urgency=draw(st.sampled_from(Urgency)),
        proposed_at=NOW - timedelta(minutes=draw(st.integers(min_value=0, max_value=240))),
    )


@SETTINGS
@given(st.lists(order_lines(), max_size=12), st.integers(min_value=0, max_value=180))
def test_consolidation_keeps_every_line_and_never_holds_stat(
    lines: list[OrderLineProposal], window_minutes: int
) -> None:
    window = timedelta(minutes=window_minutes)
    result = consolidate(lines, window, NOW)
    orders = result.released + result.held

    assert all(o.urgency is Urgency.ROUTINE for o in result.held)
    assert all(o.released_at > NOW for o in result.held)
    assert all(o.released_at == NOW for o in result.released)
    for order in orders:
        parts = [part for po_line in order.lines for part in po_line.parts]
        assert all((p.supplier, p.facility) == (order.supplier, order.facility) for p in parts)
        assert all(p.urgency is order.urgency for p in parts)
        if order.urgency is Urgency.STAT:
            assert len(parts) == 1
        else:
            oldest = min(p.proposed_at for p in parts)
            assert (order in result.released) == (oldest + window <= NOW)
        for po_line in order.lines:
            assert po_line.quantity == sum(p.quantity for p in po_line.parts)
            assert {(p.item, p.contract) for p in po_line.parts} == {
                (po_line.item, po_line.contract)
            }
    out = Counter(id(p) for o in orders for po_line in o.lines for p in po_line.parts)
    assert out == Counter(id(line) for line in lines)
    assert sum(po_line.quantity for o in orders for po_line in o.lines) == sum(
        line.quantity for line in lines
    )
