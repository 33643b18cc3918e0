"""The replenishment policy (medbridge.domain.replenishment), example by example.

Reorder trigger and quantity (par, reorder point, pack multiple, MOQ), supplier choice per base
unit, typed "no source" results, urgency, inter-location transfers, consolidation windows and
the safety stock / reorder point formulas.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import (
    Contract,
    Item,
    ItemCategory,
    PackConversion,
    Supplier,
    SupplierStatus,
)
from medbridge.domain.errors import UnknownUnit
from medbridge.domain.replenishment import (
    NoSource,
    NoSourceReason,
    OrderLineProposal,
    Replenishment,
    StockPosition,
    SupplyOption,
    TransferProposal,
    Urgency,
    consolidate,
    reorder_point,
    replenish,
    safety_stock,
    supply_options,
)

D = Decimal
ITEM = "AMOX-500"
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
TODAY = NOW.date()


def option(
    supplier: str = "ACME",
    *,
    price: str = "12.00",
    factor: str = "10",
    unit: str = "BX",
    multiple: str = "1",
    moq: str = "1",
    status: SupplierStatus = SupplierStatus.ACTIVE,
    lead: int = 2,
    valid_from: date = date(2026, 1, 1),
    valid_to: date | None = None,
    item: str = ITEM,
    contract: str | None = None,
) -> SupplyOption:
    return SupplyOption(
        Supplier(code=supplier, name=supplier, status=status, lead_time_days=lead),
        Contract(
            code=contract or f"C-{supplier}-{unit}",
            supplier=supplier,
            item=item,
            unit=unit,
            price=Money(amount=D(price)),
            valid_from=valid_from,
            valid_to=valid_to,
            minimum_order_quantity=D(moq),
        ),
        D(factor),
        D(multiple),
    )


def position(
    on_hand: str = "30",
    on_order: str = "0",
    *,
    par: str = "100",
    rop: str | None = "40",
    safety: str | None = "5",
    location: str = "F1-MAIN",
    facility: str = "F1",
    usage: tuple[str, ...] = (),
) -> StockPosition:
    return StockPosition(
        ITEM,
        location,
        facility,
        D(on_hand),
        D(on_order),
        D(par),
        None if rop is None else D(rop),
        None if safety is None else D(safety),
        tuple(D(u) for u in usage),
    )


def ordered(result: Replenishment) -> OrderLineProposal:
    assert isinstance(result.order, OrderLineProposal), result.order
    return result.order


# --- trigger and quantity -----------------------------------------------------------------


def test_below_reorder_point_orders_up_to_par_in_contract_units() -> None:
    result = replenish(position("30"), [option()], NOW)

    line = ordered(result)
    assert result.triggered
    assert (line.supplier, line.contract, line.unit) == ("ACME", "C-ACME-BX", "BX")
    assert line.quantity == D(7)  # 70 tablets = 7 boxes of 10
    assert line.base_quantity == D(70)
    assert line.unit_price == Money(amount=D("12.00"))
    assert (line.item, line.location, line.facility) == (ITEM, "F1-MAIN", "F1")
    assert line.proposed_at == NOW
    assert line.urgency is Urgency.ROUTINE
    assert result.transfers == ()


def test_quantity_rounds_up_to_the_pack_multiple() -> None:
    line = ordered(replenish(position("33"), [option(multiple="2")], NOW))

    assert line.quantity == D(8)  # 67 tablets -> 6.7 boxes -> 8 (multiples of 2)


def test_quantity_is_raised_to_the_moq_and_stays_a_pack_multiple() -> None:
    moq_12 = replenish(position("30"), [option(moq="12")], NOW)
    moq_9_by_2 = replenish(position("30"), [option(moq="9", multiple="2")], NOW)

    assert ordered(moq_12).quantity == D(12)  # 7 -> 12
    assert ordered(moq_9_by_2).quantity == D(10)  # 7 -> 8 -> 9 -> 10


def test_exactly_at_the_reorder_point_orders() -> None:
    result = replenish(position("40"), [option()], NOW)

    assert ordered(result).quantity == D(6)


def test_above_the_reorder_point_orders_nothing() -> None:
    result = replenish(position("41"), [option()], NOW)

    assert not result.triggered
    assert result.order is None
    assert result.transfers == ()


def test_stock_on_order_counts_towards_the_position() -> None:
    covered = replenish(position("10", "31"), [option()], NOW)
    short = replenish(position("10", "20"), [option()], NOW)

    assert covered.order is None
    assert ordered(short).quantity == D(7)  # 100 - 30 = 70


def test_nothing_is_ordered_when_the_position_already_reaches_par() -> None:
    result = replenish(position("50", par="50", rop="50"), [option()], NOW)

    assert result.triggered
    assert result.order is None


# --- supplier choice ----------------------------------------------------------------------


def test_cheapest_per_base_unit_wins_across_pack_sizes() -> None:
    boxes = option("ACME", price="12.00", factor="10", unit="BX")  # 1.20 a tablet
    cases = option("BETA", price="100.00", factor="100", unit="CA")  # 1.00 a tablet

    line = ordered(replenish(position("30"), [boxes, cases], NOW))

    assert (line.supplier, line.unit, line.quantity) == ("BETA", "CA", D(1))
    assert line.price_per_base_unit == D(1)


def test_price_ties_go_to_the_shorter_lead_time_then_the_supplier_code() -> None:
    slow = option("AAA", lead=5)
    fast = option("ZZZ", lead=1)
    also_fast = option("MMM", lead=1)

    assert ordered(replenish(position(), [slow, fast], NOW)).supplier == "ZZZ"
    assert ordered(replenish(position(), [slow, fast, also_fast], NOW)).supplier == "MMM"


def test_a_supplier_on_hold_is_skipped() -> None:
    held = option("CHEAP", price="5.00", status=SupplierStatus.ON_HOLD)
    inactive = option("GONE", price="6.00", status=SupplierStatus.INACTIVE)

    line = ordered(replenish(position(), [held, inactive, option("ACME")], NOW))

    assert line.supplier == "ACME"


def test_contracts_not_valid_today_are_skipped() -> None:
    expired = option("OLD", price="5.00", valid_to=TODAY - timedelta(days=1))
    future = option("NEW", price="5.00", valid_from=TODAY + timedelta(days=1))
    last_day = option("LAST", price="11.00", valid_to=TODAY)

    line = ordered(replenish(position(), [expired, future, last_day, option("ACME")], NOW))

    assert line.supplier == "LAST"


def test_contracts_for_other_items_are_ignored() -> None:
    other = option("CHEAP", price="1.00", item="OTHER")

    assert ordered(replenish(position(), [other, option()], NOW)).supplier == "ACME"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ([], NoSourceReason.NO_CONTRACT),
        ([option(item="OTHER")], NoSourceReason.NO_CONTRACT),
        ([option(valid_to=date(2026, 2, 28))], NoSourceReason.EXPIRED),
        ([option(valid_from=date(2026, 4, 1))], NoSourceReason.EXPIRED),
        (
            [
                option("A", status=SupplierStatus.ON_HOLD),
                option("B", status=SupplierStatus.INACTIVE),
            ],
            NoSourceReason.ALL_ON_HOLD,
        ),
        ([option(status=SupplierStatus.INACTIVE)], NoSourceReason.ALL_INACTIVE),
    ],
)
def test_no_eligible_supplier_is_a_typed_no_source(
    options: list[SupplyOption], reason: NoSourceReason
) -> None:
    result = replenish(position("30"), options, NOW)

    assert result.order == NoSource(ITEM, "F1-MAIN", "F1", reason, D(70), Urgency.ROUTINE)


def test_no_source_is_only_reported_when_an_order_is_needed() -> None:
    assert replenish(position("90"), [], NOW).order is None


# --- urgency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_hand", "urgent", "expected"),
    [
        ("0", False, Urgency.STAT),  # stockout
        ("-2", False, Urgency.STAT),
        ("4", False, Urgency.STAT),  # below the safety stock of 5
        ("5", False, Urgency.ROUTINE),
        ("30", True, Urgency.STAT),  # a STAT pharmacy order
        ("30", False, Urgency.ROUTINE),
    ],
)
def test_urgency(on_hand: str, urgent: bool, expected: Urgency) -> None:
    result = replenish(position(on_hand), [option()], NOW, urgent=urgent)

    assert result.urgency is expected
    assert ordered(result).urgency is expected


def test_an_urgent_flag_never_forces_an_order_above_the_reorder_point() -> None:
    result = replenish(position("60"), [option()], NOW, urgent=True)

    assert result.urgency is Urgency.STAT
    assert result.order is None


# --- transfers ---------------------------------------------------------------------------


def test_a_transfer_from_surplus_covers_the_whole_need() -> None:
    ward = position("200", location="F1-ICU")  # surplus 200 - max(100, 40) = 100

    result = replenish(position("30"), [option()], NOW, others=[ward])

    assert result.transfers == (TransferProposal(ITEM, "F1-ICU", "F1", "F1-MAIN", "F1", D(70)),)
    assert result.order is None


def test_a_partial_transfer_leaves_the_remainder_to_order() -> None:
    ward = position("130", location="F1-ICU")  # surplus 30

    result = replenish(position("30"), [option()], NOW, others=[ward])

    assert result.transferred == D(30)
    assert ordered(result).quantity == D(4)  # 40 tablets


def test_surplus_is_measured_above_the_larger_of_par_and_reorder_point() -> None:
    ward = position("130", par="100", rop="120", location="F1-ICU")  # surplus 10

    result = replenish(position("30"), [option()], NOW, others=[ward])

    assert result.transferred == D(10)
    assert ordered(result).quantity == D(6)


def test_transfers_prefer_the_same_facility_then_the_most_surplus() -> None:
    far = position("500", location="F2-MAIN", facility="F2")
    near_small = position("180", location="F1-ICU")
    near_large = position("190", location="F1-ER")

    result = replenish(position("30"), [option()], NOW, others=[far, near_small, near_large])

    assert [t.from_location for t in result.transfers] == ["F1-ER"]


def test_one_covering_location_beats_several_partial_ones() -> None:
    near = position("120", location="F1-ICU")  # surplus 20
    far = position("300", location="F2-MAIN", facility="F2")  # surplus 200

    result = replenish(position("30"), [option()], NOW, others=[near, far])

    assert result.transfers == (TransferProposal(ITEM, "F2-MAIN", "F2", "F1-MAIN", "F1", D(70)),)


def test_partial_surpluses_are_combined_before_ordering() -> None:
    near = position("120", location="F1-ICU")  # surplus 20
    far = position("130", location="F2-MAIN", facility="F2")  # surplus 30
    short = position("10", location="F1-ER")  # no surplus

    result = replenish(position("30"), [option()], NOW, others=[far, short, near])

    assert [(t.from_location, t.quantity) for t in result.transfers] == [
        ("F1-ICU", D(20)),
        ("F2-MAIN", D(30)),
    ]
    assert ordered(result).quantity == D(2)


def test_the_position_itself_is_never_a_donor() -> None:
    me = position("300")

    result = replenish(position("30"), [option()], NOW, others=[me])

    assert result.transfers == ()


# --- consolidation -----------------------------------------------------------------------


def line(
    minutes_ago: int,
    *,
    item: str = ITEM,
    quantity: str = "10",
    supplier: str = "ACME",
    facility: str = "F1",
    location: str = "F1-MAIN",
    urgency: Urgency = Urgency.ROUTINE,
    multiple: str = "1",
    moq: str = "1",
) -> OrderLineProposal:
    return OrderLineProposal(
        item=item,
        location=location,
        facility=facility,
        supplier=supplier,
        contract=f"C-{supplier}-{item}",
        unit="BX",
        quantity=D(quantity),
        unit_price=Money(amount=D("12.00")),
        pack_factor=D(10),
        pack_multiple=D(multiple),
        minimum_order_quantity=D(moq),
        lead_time_days=2,
        urgency=urgency,
        proposed_at=NOW - timedelta(minutes=minutes_ago),
    )


WINDOW = timedelta(hours=1)


def test_routine_lines_are_held_until_the_oldest_has_waited_the_window() -> None:
    result = consolidate([line(20), line(50, item="GAUZE")], WINDOW, NOW)

    assert result.released == ()
    (held,) = result.held
    assert held.released_at == NOW + timedelta(minutes=10)
    assert (held.supplier, held.facility, held.urgency) == ("ACME", "F1", Urgency.ROUTINE)
    assert [po_line.item for po_line in held.lines] == [ITEM, "GAUZE"]


def test_routine_lines_are_released_once_the_window_has_passed() -> None:
    result = consolidate([line(20), line(60, item="GAUZE")], WINDOW, NOW)

    assert result.held == ()
    (order,) = result.released
    assert order.released_at == NOW
    assert len(order.lines) == 2


def test_groups_are_per_supplier_and_facility() -> None:
    lines = [line(70), line(70, supplier="BETA"), line(10, facility="F2", location="F2-MAIN")]

    result = consolidate(lines, WINDOW, NOW)

    assert [(o.supplier, o.facility) for o in result.released] == [("ACME", "F1"), ("BETA", "F1")]
    assert [(o.supplier, o.facility) for o in result.held] == [("ACME", "F2")]


def test_lines_for_the_same_item_merge() -> None:
    icu = line(70, quantity="4", location="F1-ICU", multiple="2", moq="4")
    main = line(30, quantity="6", multiple="2", moq="4")

    (order,) = consolidate([main, icu], WINDOW, NOW).released

    (merged,) = order.lines
    assert merged.quantity == D(10)
    assert merged.parts == (icu, main)
    assert (merged.item, merged.unit, merged.unit_price) == (ITEM, "BX", Money(amount=D("12")))


def test_a_merged_line_is_re_rounded_to_the_pack_multiple_and_moq() -> None:
    odd = [line(70, quantity="3", multiple="2", moq="10"), line(70, quantity="2", multiple="2")]

    (order,) = consolidate(odd, WINDOW, NOW).released

    assert order.lines[0].quantity == D(10)


def test_stat_lines_are_released_at_once_each_in_its_own_order() -> None:
    stat_a = line(0, urgency=Urgency.STAT)
    stat_b = line(1, urgency=Urgency.STAT)
    routine = line(5)

    result = consolidate([stat_a, routine, stat_b], WINDOW, NOW)

    assert [o.lines[0].parts for o in result.released] == [(stat_b,), (stat_a,)]
    assert all(o.urgency is Urgency.STAT and o.released_at == NOW for o in result.released)
    (held,) = result.held
    assert held.lines[0].parts == (routine,)


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        consolidate([], timedelta(minutes=-1), NOW)


# --- parameters --------------------------------------------------------------------------

SERIES = tuple(D(u) for u in ("10", "12", "8", "14", "6"))  # mean 10, sample stdev sqrt(10)


def test_safety_stock_formula_rounds_up_to_a_whole_unit() -> None:
    # 1.65 * 3.1623 * sqrt(4) = 10.44 -> 11
    assert safety_stock(SERIES, 4) == D(11)
    assert safety_stock(SERIES, 4, service_z=D("2.33")) == D(15)  # 14.74 -> 15
    assert safety_stock(SERIES, 0) == D(0)
    assert safety_stock([D(7)], 4) == D(0)
    assert safety_stock([], 4) == D(0)
    assert safety_stock([D(5)] * 10, 9) == D(0)


def test_reorder_point_formula() -> None:
    assert reorder_point(SERIES, 4) == D(51)  # 10 * 4 + 11
    assert reorder_point(SERIES, 4, D(3)) == D(43)
    assert reorder_point([D("2.5"), D("2.5")], 3) == D(8)  # 7.5 -> 8
    assert reorder_point([], 4) == D(0)


def test_negative_lead_time_is_refused() -> None:
    with pytest.raises(ValueError, match="lead_time_days"):
        safety_stock(SERIES, -1)


def test_computed_parameters_use_the_chosen_suppliers_lead_time() -> None:
    unset = position("52", rop=None, safety=None, usage=tuple(str(u) for u in SERIES))

    at_51 = replenish(unset, [option(lead=4)], NOW)
    at_28 = replenish(unset, [option(lead=2)], NOW)

    assert (at_51.reorder_point, at_51.safety_stock) == (D(51), D(11))
    assert at_51.order is None  # 52 > 51
    assert (at_28.reorder_point, at_28.safety_stock) == (D(28), D(8))


def test_without_an_eligible_supplier_the_longest_lead_time_is_assumed() -> None:
    unset = position("30", rop=None, safety=None, usage=tuple(str(u) for u in SERIES))
    held = [
        option("A", status=SupplierStatus.ON_HOLD, lead=1),
        option("B", status=SupplierStatus.ON_HOLD, lead=4),
    ]

    assert replenish(unset, held, NOW).reorder_point == D(51)


def test_explicit_parameters_win_over_computed_ones() -> None:
    explicit = position("30", rop="20", safety="40", usage=tuple(str(u) for u in SERIES))

    result = replenish(explicit, [option(lead=4)], NOW)

    assert (result.reorder_point, result.safety_stock) == (D(20), D(40))
    assert result.urgency is Urgency.STAT
    assert result.order is None


# --- options from master data ------------------------------------------------------------


def test_supply_options_take_the_pack_factor_from_the_item() -> None:
    item = Item(
        code=ITEM,
        name="Amoxicillin 500 mg",
        category=ItemCategory.DRUG,
        base_unit="TAB",
        packs=(PackConversion(unit="BX", factor=D(20)),),
    )
    acme = option("ACME")
    other = option("ACME", item="OTHER")

    (resolved,) = supply_options(
        item, [acme.contract, other.contract], {"ACME": acme.supplier}, {"C-ACME-BX": D(3)}
    )

    assert (resolved.pack_factor, resolved.pack_multiple) == (D(20), D(3))
    assert resolved.price_per_base_unit == D("0.6")
    with pytest.raises(UnknownUnit):
        supply_options(item, [option(unit="CA").contract], {"ACME": acme.supplier})
    with pytest.raises(ValueError, match="unknown supplier"):
        supply_options(item, [acme.contract], {})


def test_an_option_must_be_consistent() -> None:
    acme = option()
    with pytest.raises(ValueError, match="positive"):
        SupplyOption(acme.supplier, acme.contract, D(0))
    with pytest.raises(ValueError, match="not BETA's"):
        SupplyOption(option("BETA").supplier, acme.contract, D(10))
