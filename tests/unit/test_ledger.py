"""The stock ledger (medbridge.domain.ledger) and unit conversion (medbridge.domain.units).

Example-based: moving-average receipts, issue values to the cent with no residue, FEFO
allocation, atomic refusal of a request (wastage, return, transfer, count loss) larger than the
stock, dispenses and clinical consumption beyond the stock applied and flagged (facts, not
requests), negative balances valued and brought back, transfers, count adjustments.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import Item, ItemCategory, PackConversion
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.domain.errors import DomainError, InsufficientStock, InvalidMovement, UnknownUnit
from medbridge.domain.ledger import (
    NO_LOT,
    CostBasis,
    LedgerMovement,
    LotChange,
    StockBook,
    StockDiscrepancy,
    Valuation,
    from_canonical,
)
from medbridge.domain.units import base_factor, to_base_quantity

D = Decimal
ITEM = "AMOX-500"
STORE = "F1-MAIN"
WARD = "F1-ICU"

EARLY = date(2026, 1, 31)
LATE = date(2026, 6, 30)


# --- movement builders -------------------------------------------------------------------


def receipt(
    qty: str,
    unit_cost: str,
    *,
    lot: str | None = None,
    expiry: date | None = None,
    location: str = STORE,
    item: str = ITEM,
) -> LedgerMovement:
    return LedgerMovement(
        MovementKind.RECEIPT, item, location, D(qty), lot=lot, expiry=expiry, unit_cost=D(unit_cost)
    )


def issue(
    qty: str,
    *,
    kind: MovementKind = MovementKind.DISPENSE,
    lot: str | None = None,
    location: str = STORE,
    item: str = ITEM,
) -> LedgerMovement:
    return LedgerMovement(kind, item, location, D(qty), lot=lot)


def transfer(
    qty: str, *, lot: str | None = None, src: str = STORE, dst: str = WARD, item: str = ITEM
) -> LedgerMovement:
    return LedgerMovement(MovementKind.TRANSFER, item, src, D(qty), lot=lot, to_location=dst)


def count(
    qty: str,
    *,
    unit_cost: str | None = None,
    lot: str | None = None,
    expiry: date | None = None,
    location: str = STORE,
    item: str = ITEM,
) -> LedgerMovement:
    return LedgerMovement(
        MovementKind.COUNT_ADJUSTMENT,
        item,
        location,
        D(qty),
        lot=lot,
        expiry=expiry,
        unit_cost=None if unit_cost is None else D(unit_cost),
    )


def book_with(*movements: LedgerMovement) -> StockBook:
    book = StockBook()
    for movement in movements:
        book.apply(movement)
    return book


def lots_at(book: StockBook, location: str = STORE, item: str = ITEM) -> dict[str, Decimal]:
    """lot -> on hand at item@location (empty lots included)."""
    return {key[2]: book.on_hand[key] for key in book.lots(item, location)}


# --- receipts: moving average -------------------------------------------------------------


def test_receipt_adds_quantity_value_and_lot_with_expiry() -> None:
    book = StockBook()

    valued = book.apply(receipt("10", "2.50", lot="L1", expiry=EARLY))

    assert valued.amount == D("25.00")
    assert valued.lot_changes == (LotChange(STORE, "L1", D(10), EARLY),)
    assert book.valuation(ITEM, STORE) == Valuation(D(10), D("25.00"))
    assert book.on_hand[(ITEM, STORE, "L1")] == D(10)
    assert book.expiries[(ITEM, STORE, "L1")] == EARLY
    assert book.changed_lots == {(ITEM, STORE, "L1")}
    assert book.changed_values == {(ITEM, STORE)}


def test_receipt_without_lot_goes_to_the_no_lot_bucket() -> None:
    book = book_with(receipt("4", "1.00"))

    assert lots_at(book) == {NO_LOT: D(4)}
    assert book.expiries[(ITEM, STORE, NO_LOT)] is None


def test_receipts_build_a_moving_average_cost() -> None:
    book = book_with(receipt("10", "2.00", lot="L1"), receipt("30", "3.00", lot="L2"))

    valuation = book.valuation(ITEM, STORE)
    assert valuation == Valuation(D(40), D("110.00"))
    assert valuation.unit_cost == D("2.75")
    assert lots_at(book) == {"L1": D(10), "L2": D(30)}


def test_receipts_of_the_same_lot_accumulate() -> None:
    book = book_with(receipt("5", "1.00", lot="L1"), receipt("7", "1.00", lot="L1"))

    assert lots_at(book) == {"L1": D(12)}
    assert book.valuation(ITEM, STORE) == Valuation(D(12), D("12.00"))


@pytest.mark.parametrize(
    ("qty", "unit_cost", "amount"),
    [
        ("3", "0.3333", "1.00"),  # 0.9999
        ("1", "0.125", "0.12"),  # half to even: down
        ("1", "0.135", "0.14"),  # half to even: up
        ("2.5", "1.01", "2.52"),  # 2.525, half to even
        ("0.001", "0.004", "0.00"),  # too small to be worth a cent
    ],
)
def test_receipt_value_is_rounded_to_the_cent_half_even(
    qty: str, unit_cost: str, amount: str
) -> None:
    book = StockBook()

    valued = book.apply(receipt(qty, unit_cost))

    assert valued.amount == D(amount)
    assert valued.amount.as_tuple().exponent == -2
    assert book.valuation(ITEM, STORE).value == D(amount)


def test_value_of_items_and_locations_is_kept_apart() -> None:
    book = book_with(
        receipt("10", "1.00"),
        receipt("10", "5.00", location=WARD),
        receipt("10", "9.00", item="GAUZE"),
    )

    assert book.valuation(ITEM, STORE) == Valuation(D(10), D("10.00"))
    assert book.valuation(ITEM, WARD) == Valuation(D(10), D("50.00"))
    assert book.valuation("GAUZE", STORE) == Valuation(D(10), D("90.00"))
    assert book.valuation(ITEM, "NOWHERE") == Valuation()


# --- issues: value to the cent, no residue --------------------------------------------------


def test_issue_takes_the_average_value() -> None:
    book = book_with(receipt("10", "2.00"), receipt("30", "3.00"))  # 40 @ 2.75

    valued = book.apply(issue("4"))

    assert valued.amount == D("11.00")
    assert valued.lot_changes == (LotChange(STORE, NO_LOT, D(-4)),)
    assert book.valuation(ITEM, STORE) == Valuation(D(36), D("99.00"))


def test_issue_value_is_rounded_to_the_cent() -> None:
    book = book_with(receipt("3", "3.3333"))  # 3 units worth 10.00

    valued = book.apply(issue("1"))

    assert valued.amount == D("3.33")  # 3.3333... rounded
    assert book.valuation(ITEM, STORE) == Valuation(D(2), D("6.67"))


def test_issue_value_is_rounded_once_on_the_whole_quantity_not_per_unit() -> None:
    book = book_with(receipt("3", "3.3333"))  # 10.00

    valued = book.apply(issue("2"))

    assert valued.amount == D("6.67")  # 2 x 10.00 / 3 = 6.666..., not 2 x 3.33
    assert book.valuation(ITEM, STORE) == Valuation(D(1), D("3.33"))


def test_issuing_one_by_one_leaves_no_residue_the_last_unit_takes_the_rest() -> None:
    book = book_with(receipt("3", "3.3333"))  # 10.00

    amounts = [book.apply(issue("1")).amount for _ in range(3)]

    # 10/3 = 3.33; 6.67/2 = 3.335 -> 3.34 (half even); the last unit takes what is left
    assert amounts == [D("3.33"), D("3.34"), D("3.33")]
    assert sum(amounts) == D("10.00")
    assert book.valuation(ITEM, STORE) == Valuation(D(0), D(0))


def test_issue_emptying_the_location_takes_the_whole_remaining_value() -> None:
    book = book_with(receipt("3", "3.3333"), receipt("0.5", "0.03"))  # 3.5 units, 10.02
    book.apply(issue("1"))  # 10.02 / 3.5 = 2.862... -> 2.86
    assert book.valuation(ITEM, STORE) == Valuation(D("2.5"), D("7.16"))

    valued = book.apply(issue("2.5"))

    assert valued.amount == D("7.16")
    assert book.valuation(ITEM, STORE) == Valuation(D(0), D(0))
    assert all(held == 0 for held in lots_at(book).values())


@pytest.mark.parametrize(
    "kind",
    [
        MovementKind.DISPENSE,
        MovementKind.CLINICAL_CONSUMPTION,
        MovementKind.WASTAGE,
        MovementKind.RETURN_TO_SUPPLIER,
    ],
)
def test_every_issuing_kind_takes_stock_out_at_average_value(kind: MovementKind) -> None:
    book = book_with(receipt("8", "1.25"))

    valued = book.apply(issue("2", kind=kind))

    assert valued.amount == D("2.50")
    assert not valued.is_gain
    assert book.valuation(ITEM, STORE) == Valuation(D(6), D("7.50"))


# --- FEFO allocation ----------------------------------------------------------------------


def fefo_book() -> StockBook:
    """Lots received out of expiry order, one lot without expiry, some no-lot stock."""
    return book_with(
        receipt("5", "1.00", lot="LATE", expiry=LATE),
        receipt("3", "1.00", lot="UNDATED"),
        receipt("4", "1.00", lot="EARLY", expiry=EARLY),
        receipt("2", "1.00"),  # no lot
    )


def test_issue_without_lot_draws_the_earliest_expiry_first() -> None:
    book = fefo_book()

    valued = book.apply(issue("3"))

    assert valued.lot_changes == (LotChange(STORE, "EARLY", D(-3)),)
    assert lots_at(book) == {"LATE": D(5), "UNDATED": D(3), "EARLY": D(1), NO_LOT: D(2)}


def test_issue_without_lot_spans_lots_in_expiry_order_then_lots_without_expiry() -> None:
    book = fefo_book()

    valued = book.apply(issue("13"))

    assert valued.lot_changes == (
        LotChange(STORE, "EARLY", D(-4)),
        LotChange(STORE, "LATE", D(-5)),
        LotChange(STORE, NO_LOT, D(-2)),  # no expiry: last, then by lot code
        LotChange(STORE, "UNDATED", D(-2)),
    )
    assert lots_at(book) == {"LATE": D(0), "UNDATED": D(1), "EARLY": D(0), NO_LOT: D(0)}
    assert book.valuation(ITEM, STORE) == Valuation(D(1), D("1.00"))


def test_fefo_skips_emptied_lots() -> None:
    book = fefo_book()
    book.apply(issue("4", lot="EARLY"))

    valued = book.apply(issue("1"))

    assert valued.lot_changes == (LotChange(STORE, "LATE", D(-1)),)


def test_issue_of_a_given_lot_draws_only_that_lot() -> None:
    book = fefo_book()

    valued = book.apply(issue("5", lot="LATE"))

    assert valued.lot_changes == (LotChange(STORE, "LATE", D(-5)),)
    assert lots_at(book) == {"LATE": D(0), "UNDATED": D(3), "EARLY": D(4), NO_LOT: D(2)}
    assert book.valuation(ITEM, STORE) == Valuation(D(9), D("9.00"))


# --- insufficient stock: requests are refused, book unchanged ------------------------------

REQUESTS = (MovementKind.WASTAGE, MovementKind.RETURN_TO_SUPPLIER)
"""Issuing kinds that are requests, not facts: refused beyond what is held."""


def assert_refused(book: StockBook, movement: LedgerMovement) -> InsufficientStock:
    before = copy.deepcopy(book)
    with pytest.raises(InsufficientStock) as refused:
        book.apply(movement)
    assert book == before, "a refused movement must leave the book unchanged"
    return refused.value


@pytest.mark.parametrize("kind", REQUESTS)
def test_issue_of_a_lot_larger_than_the_lot_is_refused_even_when_the_location_has_enough(
    kind: MovementKind,
) -> None:
    book = fefo_book()  # 14 at the store, 4 in lot EARLY

    error = assert_refused(book, issue("5", lot="EARLY", kind=kind))

    assert (error.item, error.location, error.lot) == (ITEM, STORE, "EARLY")
    assert (error.wanted, error.held) == (D(5), D(4))
    assert error.field == "quantity"
    assert isinstance(error, DomainError)
    assert "lot EARLY" in str(error)


@pytest.mark.parametrize("kind", REQUESTS)
def test_issue_of_an_unknown_lot_is_refused(kind: MovementKind) -> None:
    error = assert_refused(fefo_book(), issue("1", lot="NOPE", kind=kind))

    assert (error.lot, error.held) == ("NOPE", D(0))


@pytest.mark.parametrize("kind", REQUESTS)
def test_issue_without_lot_larger_than_all_lots_together_is_refused(kind: MovementKind) -> None:
    book = fefo_book()  # 14 in all

    error = assert_refused(book, issue("14.001", kind=kind))

    assert (error.item, error.location, error.lot) == (ITEM, STORE, None)
    assert (error.wanted, error.held) == (D("14.001"), D(14))


@pytest.mark.parametrize("kind", REQUESTS)
def test_issue_from_an_empty_location_is_refused(kind: MovementKind) -> None:
    error = assert_refused(StockBook(), issue("1", kind=kind))

    assert error.held == 0


def test_refused_transfer_creates_nothing_at_the_destination() -> None:
    book = fefo_book()

    assert_refused(book, transfer("15"))

    assert book.lots(ITEM, WARD) == []
    assert (ITEM, WARD) not in book.valuations


@pytest.mark.parametrize(("qty", "lot"), [("-4", "UNDATED"), ("-15", None)])
def test_refused_count_loss_leaves_the_book_unchanged(qty: str, lot: str | None) -> None:
    error = assert_refused(fefo_book(), count(qty, lot=lot))

    assert (error.lot, error.wanted) == (lot, -D(qty))


# --- facts from the floor: a dispense beyond what is held is applied and flagged ------------

FACTS = (MovementKind.DISPENSE, MovementKind.CLINICAL_CONSUMPTION)


@pytest.mark.parametrize("kind", FACTS)
def test_a_fact_from_the_floor_beyond_a_lot_is_applied_leaving_the_lot_negative(
    kind: MovementKind,
) -> None:
    book = fefo_book()  # 14 at the store, 4 in lot EARLY, 1.00 each

    valued = book.apply(issue("5", lot="EARLY", kind=kind))

    assert valued.lot_changes == (LotChange(STORE, "EARLY", D(-5)),)
    assert lots_at(book) == {"LATE": D(5), "UNDATED": D(3), "EARLY": D(-1), NO_LOT: D(2)}
    assert valued.amount == D("5.00")  # the location held enough: its average
    assert book.valuation(ITEM, STORE) == Valuation(D(9), D("9.00"))
    assert valued.discrepancy == StockDiscrepancy(
        item=ITEM,
        location=STORE,
        lot="EARLY",
        wanted=D(5),
        held=D(4),
        known_lot=True,
        shortfall_lot="EARLY",
        unit_cost=D(1),
        cost_basis=CostBasis.AVERAGE,
    )
    assert valued.discrepancy.shortfall == D(1)


def test_a_dispense_of_an_unknown_lot_is_applied_on_that_lot_and_says_it_was_unknown() -> None:
    book = fefo_book()

    valued = book.apply(issue("2", lot="NOPE"))

    assert lots_at(book)["NOPE"] == D(-2)
    assert lots_at(book)["EARLY"] == D(4)  # other lots are not touched
    assert valued.discrepancy is not None
    assert (valued.discrepancy.known_lot, valued.discrepancy.held) == (False, D(0))
    assert valued.discrepancy.shortfall == D(2)
    assert book.valuation(ITEM, STORE) == Valuation(D(12), D("12.00"))


def test_a_dispense_of_an_unknown_lot_keeps_the_expiry_the_floor_reported() -> None:
    book = StockBook()

    valued = book.apply(LedgerMovement(MovementKind.DISPENSE, ITEM, STORE, D(1), "NEW", LATE))

    assert valued.lot_changes == (LotChange(STORE, "NEW", D(-1), LATE),)
    assert book.expiries[(ITEM, STORE, "NEW")] == LATE
    book.apply(receipt("5", "1.00", lot="NEW", expiry=LATE))
    assert lots_at(book) == {"NEW": D(4)}


def test_a_dispense_of_a_lot_already_owing_adds_to_its_debt() -> None:
    book = book_with(receipt("1", "2.00", lot="L1"), issue("3", lot="L1"))

    valued = book.apply(issue("2", lot="L1"))

    assert valued.discrepancy is not None
    assert valued.discrepancy.held == D(-2)
    assert valued.discrepancy.shortfall == D(2)
    assert lots_at(book) == {"L1": D(-4)}


def test_a_dispense_without_lot_beyond_all_lots_empties_them_fefo_and_owes_the_rest_lot_less() -> (
    None
):
    book = fefo_book()  # 14 units at 1.00; 2 of them without lot

    valued = book.apply(issue("15"))

    assert valued.lot_changes == (
        LotChange(STORE, "EARLY", D(-4)),
        LotChange(STORE, "LATE", D(-5)),
        LotChange(STORE, NO_LOT, D(-3)),  # the 2 held plus the 1 short, in one change
        LotChange(STORE, "UNDATED", D(-3)),
    )
    assert lots_at(book) == {"LATE": D(0), "UNDATED": D(0), "EARLY": D(0), NO_LOT: D(-1)}
    assert valued.amount == D("15.00")  # all 14.00 held, and the one short at the average
    assert book.valuation(ITEM, STORE) == Valuation(D(-1), D("-1.00"))
    assert valued.discrepancy is not None
    assert (valued.discrepancy.wanted, valued.discrepancy.held) == (D(15), D(14))
    assert (valued.discrepancy.lot, valued.discrepancy.shortfall_lot) == (None, NO_LOT)


def test_the_shortfall_without_lot_goes_on_a_new_lot_less_balance() -> None:
    book = book_with(receipt("2", "1.50", lot="L1"))

    valued = book.apply(issue("5", kind=MovementKind.CLINICAL_CONSUMPTION))

    assert valued.lot_changes == (LotChange(STORE, "L1", D(-2)), LotChange(STORE, NO_LOT, D(-3)))
    assert valued.amount == D("7.50")
    assert book.valuation(ITEM, STORE) == Valuation(D(-3), D("-4.50"))


def test_the_shortfall_is_valued_at_the_average_rounded_once() -> None:
    book = book_with(receipt("3", "3.3333"))  # 3 units worth 10.00

    valued = book.apply(issue("4"))

    assert valued.amount == D("13.33")  # 10.00 held + 1 x 3.333... -> 3.33
    assert book.valuation(ITEM, STORE) == Valuation(D(-1), D("-3.33"))


def test_nothing_ever_held_and_no_standard_cost_values_the_dispense_at_zero() -> None:
    book = StockBook()

    valued = book.apply(issue("3"))

    assert valued.amount == 0
    assert book.valuation(ITEM, STORE) == Valuation(D(-3), D(0))
    assert valued.discrepancy is not None
    assert (valued.discrepancy.cost_basis, valued.discrepancy.unit_cost) == (CostBasis.NONE, D(0))


def test_an_emptied_location_values_the_dispense_at_the_last_known_cost() -> None:
    book = book_with(receipt("4", "2.50"), issue("4"))  # emptied at 2.50
    assert book.valuation(ITEM, STORE) == Valuation()
    assert book.last_costs[(ITEM, STORE)] == D("2.5")

    valued = book.apply(issue("2"))

    assert valued.amount == D("5.00")
    assert valued.discrepancy is not None
    assert valued.discrepancy.cost_basis is CostBasis.LAST_KNOWN
    assert book.valuation(ITEM, STORE) == Valuation(D(-2), D("-5.00"))


def test_a_negative_balance_keeps_being_valued_at_the_cost_it_is_carried_at() -> None:
    book = book_with(receipt("1", "2.00"), issue("3"))  # -2 carried at 2.00

    valued = book.apply(issue("0.5"))

    assert valued.amount == D("1.00")
    assert valued.discrepancy is not None
    assert valued.discrepancy.cost_basis is CostBasis.NEGATIVE_BALANCE
    assert book.valuation(ITEM, STORE) == Valuation(D("-2.5"), D("-5.00"))


def test_a_receipt_fills_the_hole_at_its_own_cost_and_leaves_the_rest_at_that_cost() -> None:
    book = book_with(receipt("1", "2.00"), issue("6"))  # -5 carried at 2.00: -10.00

    valued = book.apply(receipt("8", "3.00"))

    assert valued.amount == D("24.00")  # what the supplier is owed: all of it
    assert valued.revaluation == D("5.00")  # the 5 dispensed cost 3.00, expensed at 2.00
    assert book.valuation(ITEM, STORE) == Valuation(D(3), D("9.00"))
    assert book.valuation(ITEM, STORE).unit_cost == D(3)  # not skewed by the hole
    assert lots_at(book) == {NO_LOT: D(3)}
    assert valued.discrepancy is None


def test_a_small_receipt_into_a_hole_leaves_the_rest_of_the_hole_at_its_cost() -> None:
    book = book_with(receipt("1", "2.00"), issue("6"))  # -5 carried at 2.00

    valued = book.apply(receipt("2", "3.00"))

    assert valued.revaluation == D("2.00")  # 2 x (3.00 - 2.00)
    assert book.valuation(ITEM, STORE) == Valuation(D(-3), D("-6.00"))
    assert book.valuation(ITEM, STORE).unit_cost == D(2)


def test_a_receipt_exactly_filling_the_hole_leaves_nothing_and_no_value() -> None:
    book = book_with(receipt("1", "2.00"), issue("6"))

    valued = book.apply(receipt("5", "1.00"))

    assert valued.revaluation == D("-5.00")  # cheaper than expensed: the expense comes back
    assert book.valuation(ITEM, STORE) == Valuation(D(0), D(0))
    assert book.last_costs[(ITEM, STORE)] == D(1)


def test_a_barely_larger_receipt_does_not_blow_up_the_average() -> None:
    book = book_with(receipt("1", "2.00"), issue("6"))  # -5 carried at 2.00

    book.apply(receipt("5.001", "3.00"))  # 15.00 (rounded): 0.001 unit left over

    assert book.valuation(ITEM, STORE) == Valuation(D("0.001"), D("0.00"))


def test_a_count_gain_without_cost_fills_a_hole_at_the_cost_it_is_carried_at() -> None:
    book = book_with(receipt("1", "2.00"), issue("4"))  # -3 at 2.00

    valued = book.apply(count("3"))

    assert (valued.amount, valued.revaluation) == (D("6.00"), D(0))
    assert book.valuation(ITEM, STORE) == Valuation(D(0), D(0))


def test_a_transfer_into_a_hole_fills_it_at_the_source_cost() -> None:
    book = book_with(
        receipt("1", "2.00", location=WARD),
        issue("3", location=WARD),  # the ward owes 2 at 2.00
        receipt("10", "5.00"),
    )

    valued = book.apply(transfer("4"))

    assert (valued.amount, valued.revaluation) == (D("20.00"), D("6.00"))
    assert book.valuation(ITEM, WARD) == Valuation(D(2), D("10.00"))
    assert book.valuation(ITEM, STORE) == Valuation(D(6), D("30.00"))


@pytest.mark.parametrize("kind", REQUESTS)
def test_requests_are_still_refused_where_a_fact_would_be_applied(kind: MovementKind) -> None:
    book = book_with(receipt("1", "2.00"), issue("3"))  # owes 2

    assert_refused(book, issue("1", kind=kind))
    assert_refused(book, transfer("1"))
    assert_refused(book, count("-1"))


# --- transfers ----------------------------------------------------------------------------


def test_transfer_moves_quantity_lot_expiry_and_value_to_the_destination() -> None:
    book = book_with(receipt("10", "1.50", lot="L1", expiry=EARLY))

    valued = book.apply(transfer("4", lot="L1"))

    assert valued.amount == D("6.00")
    assert valued.lot_changes == (
        LotChange(STORE, "L1", D(-4)),
        LotChange(WARD, "L1", D(4), EARLY),
    )
    assert book.on_hand[(ITEM, STORE, "L1")] == D(6)
    assert book.on_hand[(ITEM, WARD, "L1")] == D(4)
    assert book.expiries[(ITEM, WARD, "L1")] == EARLY
    assert book.valuation(ITEM, STORE) == Valuation(D(6), D("9.00"))
    assert book.valuation(ITEM, WARD) == Valuation(D(4), D("6.00"))
    assert book.changed_values == {(ITEM, STORE), (ITEM, WARD)}
    assert (ITEM, WARD, "L1") in book.changed_lots


def test_transfer_without_lot_moves_the_fefo_lots_with_their_expiries() -> None:
    book = fefo_book()

    valued = book.apply(transfer("10"))

    assert lots_at(book, WARD) == {"EARLY": D(4), "LATE": D(5), NO_LOT: D(1)}
    assert book.expiries[(ITEM, WARD, "EARLY")] == EARLY
    assert book.expiries[(ITEM, WARD, "LATE")] == LATE
    assert book.expiries[(ITEM, WARD, NO_LOT)] is None
    assert valued.amount == D("10.00")
    assert book.valuation(ITEM, WARD) == Valuation(D(10), D("10.00"))
    assert book.valuation(ITEM, STORE) == Valuation(D(4), D("4.00"))


def test_transfer_blends_into_the_destination_average() -> None:
    book = book_with(receipt("10", "1.00"), receipt("10", "4.00", location=WARD))

    book.apply(transfer("10"))

    assert book.valuation(ITEM, STORE) == Valuation(D(0), D(0))
    assert book.valuation(ITEM, WARD) == Valuation(D(20), D("50.00"))
    assert book.valuation(ITEM, WARD).unit_cost == D("2.5")


def test_transfer_emptying_the_source_moves_its_whole_value() -> None:
    book = book_with(receipt("3", "3.3333"))  # 10.00
    book.apply(issue("1"))  # 3.33 out, 6.67 left for 2

    valued = book.apply(transfer("2"))

    assert valued.amount == D("6.67")
    assert book.valuation(ITEM, STORE) == Valuation(D(0), D(0))
    assert book.valuation(ITEM, WARD) == Valuation(D(2), D("6.67"))


def test_a_transferred_lot_keeps_the_destination_expiry_it_already_had() -> None:
    book = book_with(
        receipt("1", "1.00", lot="L1", expiry=EARLY, location=WARD),
        receipt("1", "1.00", lot="L1", expiry=EARLY),
    )

    book.apply(transfer("1", lot="L1"))

    assert book.on_hand[(ITEM, WARD, "L1")] == D(2)
    assert book.expiries[(ITEM, WARD, "L1")] == EARLY


# --- count adjustments ----------------------------------------------------------------------


def test_count_gain_with_a_unit_cost_adds_that_value() -> None:
    book = book_with(receipt("10", "1.00"))

    valued = book.apply(count("5", unit_cost="3.00", lot="FOUND", expiry=LATE))

    assert valued.is_gain
    assert valued.amount == D("15.00")
    assert valued.lot_changes == (LotChange(STORE, "FOUND", D(5), LATE),)
    assert book.expiries[(ITEM, STORE, "FOUND")] == LATE
    assert book.valuation(ITEM, STORE) == Valuation(D(15), D("25.00"))


def test_count_gain_without_a_unit_cost_is_valued_at_the_current_average() -> None:
    book = book_with(receipt("10", "2.00"), receipt("20", "3.50"))  # 30 @ 3.00

    valued = book.apply(count("2"))

    assert valued.is_gain
    assert valued.amount == D("6.00")
    assert lots_at(book) == {NO_LOT: D(32)}
    assert book.valuation(ITEM, STORE) == Valuation(D(32), D("96.00"))


def test_count_gain_without_a_unit_cost_is_rounded_to_the_cent() -> None:
    book = book_with(receipt("3", "3.3333"))  # 3 @ 3.333...

    valued = book.apply(count("1"))

    assert valued.amount == D("3.33")
    assert book.valuation(ITEM, STORE) == Valuation(D(4), D("13.33"))


def test_count_gain_without_a_unit_cost_where_nothing_is_held_adds_no_value() -> None:
    book = StockBook()

    valued = book.apply(count("3"))

    assert valued.amount == 0
    assert book.valuation(ITEM, STORE) == Valuation(D(3), D(0))
    assert lots_at(book) == {NO_LOT: D(3)}


def test_count_loss_issues_at_average_value_fefo() -> None:
    book = fefo_book()  # 14 units, 14.00

    valued = book.apply(count("-6"))

    assert not valued.is_gain
    assert valued.amount == D("6.00")  # positive: the value moved
    assert valued.lot_changes == (
        LotChange(STORE, "EARLY", D(-4)),
        LotChange(STORE, "LATE", D(-2)),
    )
    assert book.valuation(ITEM, STORE) == Valuation(D(8), D("8.00"))


def test_count_loss_of_a_given_lot() -> None:
    book = fefo_book()

    valued = book.apply(count("-3", lot="UNDATED"))

    assert valued.lot_changes == (LotChange(STORE, "UNDATED", D(-3)),)
    assert lots_at(book)["UNDATED"] == 0


def test_count_loss_of_everything_takes_the_whole_value() -> None:
    book = book_with(receipt("3", "3.3333"))

    valued = book.apply(count("-3"))

    assert valued.amount == D("10.00")
    assert book.valuation(ITEM, STORE) == Valuation(D(0), D(0))


# --- unit conversion ----------------------------------------------------------------------


AMOX = Item(
    code=ITEM,
    name="Amoxicillin 500 mg capsule",
    category=ItemCategory.DRUG,
    base_unit="CAP",
    packs=(
        PackConversion(unit="BX", factor=D(20)),
        PackConversion(unit="CA", factor=D(480)),
        PackConversion(unit="STRIP", factor=D("2.5")),
    ),
)


@pytest.mark.parametrize(
    ("quantity", "unit", "base"),
    [
        ("7", "CAP", "7"),
        ("2", "BX", "40"),
        ("0.5", "BX", "10"),
        ("1", "CA", "480"),
        ("3", "STRIP", "7.5"),
        ("-2", "BX", "-40"),  # a count loss keeps its sign
    ],
)
def test_to_base_quantity(quantity: str, unit: str, base: str) -> None:
    assert to_base_quantity(AMOX, D(quantity), unit) == D(base)


def test_base_factor_of_the_base_unit_is_one() -> None:
    assert base_factor(AMOX, "CAP") == 1
    assert base_factor(AMOX, "CA") == 480


def test_unknown_unit_names_the_item_the_unit_and_the_known_units() -> None:
    with pytest.raises(UnknownUnit) as refused:
        to_base_quantity(AMOX, D(1), "PK")

    error = refused.value
    assert (error.item, error.unit) == (ITEM, "PK")
    assert error.field == "unit"
    assert isinstance(error, DomainError)
    assert "'PK'" in str(error)
    assert "known: CAP, BX, CA, STRIP" in str(error)


def test_unit_codes_are_case_sensitive() -> None:
    with pytest.raises(UnknownUnit):
        base_factor(AMOX, "bx")


def canonical(kind: MovementKind, quantity: str, unit: str, **fields: object) -> StockMovement:
    return StockMovement.model_validate(
        {
            "kind": kind,
            "item": ITEM,
            "location": STORE,
            "quantity": D(quantity),
            "unit": unit,
            "occurred_at": datetime(2025, 3, 14, 9, 30, tzinfo=UTC),
            **fields,
        }
    )


def test_from_canonical_converts_quantity_and_unit_cost_to_the_base_unit() -> None:
    movement = canonical(
        MovementKind.RECEIPT,
        "2",
        "BX",
        lot="L1",
        expiry=EARLY,
        unit_cost=Money(amount=D("25.00")),
    )

    assert from_canonical(movement, AMOX) == LedgerMovement(
        MovementKind.RECEIPT, ITEM, STORE, D(40), lot="L1", expiry=EARLY, unit_cost=D("1.25")
    )


def test_from_canonical_keeps_the_sign_of_a_count_loss_and_the_transfer_destination() -> None:
    loss = from_canonical(canonical(MovementKind.COUNT_ADJUSTMENT, "-1", "STRIP"), AMOX)
    moved = from_canonical(canonical(MovementKind.TRANSFER, "1", "CA", to_location=WARD), AMOX)

    assert (loss.quantity, loss.unit_cost) == (D("-2.5"), None)
    assert (moved.quantity, moved.to_location) == (D(480), WARD)


def test_a_receipt_in_packs_is_valued_at_the_pack_price_without_losing_a_cent() -> None:
    thirds = Item(
        code=ITEM,
        name="Amoxicillin 500 mg capsule",
        category=ItemCategory.DRUG,
        base_unit="CAP",
        packs=(PackConversion(unit="BX", factor=D(3)),),
    )
    movement = canonical(MovementKind.RECEIPT, "7", "BX", unit_cost=Money(amount=D("10.00")))
    book = StockBook()

    valued = book.apply(from_canonical(movement, thirds))  # 21 CAP at 3.333... each

    assert valued.amount == D("70.00")
    assert book.valuation(ITEM, STORE) == Valuation(D(21), D("70.00"))


def test_a_transfer_to_its_own_location_is_refused_before_touching_the_book() -> None:
    book = StockBook()
    book.apply(LedgerMovement(MovementKind.RECEIPT, "X", "A", Decimal(10), unit_cost=Decimal(2)))
    before = (dict(book.on_hand), dict(book.valuations))
    with pytest.raises(InvalidMovement, match="to_location"):
        book.apply(LedgerMovement(MovementKind.TRANSFER, "X", "A", Decimal(4), to_location="A"))
    assert (book.on_hand, book.valuations) == before
