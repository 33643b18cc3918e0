"""Contract price tiers and validity (``canonical.masterdata.Contract``) and how replenishment
prices order lines with them: the line pays the tier its quantity reaches, a merged line the
tier of the merged quantity; a contract without tiers prices as before."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import (
    Contract,
    Item,
    ItemCategory,
    PackConversion,
    PriceTier,
    Supplier,
)
from medbridge.canonical.trade import CatalogPrice
from medbridge.domain.contract_pricing import change_percent, our_price, repriced
from medbridge.domain.replenishment import (
    OrderLineProposal,
    StockPosition,
    SupplyOption,
    Urgency,
    consolidate,
    replenish,
)

D = Decimal
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def contract(
    *tiers: tuple[str, str],
    price: str = "12.00",
    moq: str = "1",
    valid_from: date = date(2026, 1, 1),
    valid_to: date | None = None,
    code: str = "C-ACME-BX",
) -> Contract:
    return Contract(
        code=code,
        supplier="ACME",
        item="GAUZE",
        unit="BX",
        price=Money(amount=D(price)),
        valid_from=valid_from,
        valid_to=valid_to,
        minimum_order_quantity=D(moq),
        tiers=tuple(PriceTier(minimum_quantity=D(q), price=D(p)) for q, p in tiers),
    )


TIERED = contract(("10", "11.50"), ("50", "11.00"))


@pytest.mark.parametrize(
    ("quantity", "price"),
    [("1", "12.00"), ("9.5", "12.00"), ("10", "11.50"), ("49", "11.50"), ("50", "11.00")],
)
def test_a_line_pays_the_tier_its_quantity_reaches(quantity: str, price: str) -> None:
    assert TIERED.price_for(D(quantity)) == Money(amount=D(price))


def test_without_tiers_the_price_is_the_contracts() -> None:
    assert contract().price_for(D(1000)) == Money(amount=D("12.00"))


@pytest.mark.parametrize(
    ("tiers", "moq", "says"),
    [
        ((("10", "12.50"),), "1", "more than"),  # dearer than a smaller quantity
        ((("1", "11.00"),), "1", "does not start above"),  # the MOQ's price is ``price``
        ((("20", "11"), ("10", "11.5")), "1", "does not start above"),  # not ascending
        ((("10", "11"), ("10", "10")), "1", "does not start above"),  # twice the same break
        ((("5", "11"),), "6", "does not start above"),  # below the minimum order quantity
    ],
)
def test_tiers_out_of_order_are_refused_naming_tiers(
    tiers: tuple[tuple[str, str], ...], moq: str, says: str
) -> None:
    with pytest.raises(ValidationError, match=f"tiers: .*{says}"):
        contract(*tiers, moq=moq)


def test_a_negative_price_is_refused_naming_price() -> None:
    with pytest.raises(ValidationError, match="price: "):
        contract(price="-0.01")


def test_validity_overlaps() -> None:
    jan_jun = contract(valid_from=date(2027, 1, 1), valid_to=date(2027, 6, 30))
    jul_on = contract(valid_from=date(2027, 7, 1))
    jun_on = contract(valid_from=date(2027, 6, 30))
    assert not jan_jun.overlaps(jul_on)
    assert not jul_on.overlaps(jan_jun)
    assert jan_jun.overlaps(jun_on)  # one common day
    assert jun_on.overlaps(jan_jun)
    assert contract().overlaps(jul_on)  # both open-ended
    assert jan_jun.valid_on(date(2027, 6, 30))
    assert not jan_jun.valid_on(date(2027, 7, 1))


def _replenish(terms: Contract, need: str) -> OrderLineProposal:
    supplier = Supplier(code="ACME", name="Acme")
    option = SupplyOption(supplier, terms, D(10))  # a box of 10
    position = StockPosition("GAUZE", "F1-MAIN", "F1", D(0), D(0), D(need), D(0), D(0))
    decided = replenish(position, [option], NOW)
    assert isinstance(decided.order, OrderLineProposal)
    return decided.order


def test_replenishment_prices_the_line_at_its_tier() -> None:
    small, large = _replenish(TIERED, "30"), _replenish(TIERED, "600")
    assert (small.quantity, small.unit_price.amount) == (D(3), D("12.00"))
    assert (large.quantity, large.unit_price.amount) == (D(60), D("11.00"))
    assert _replenish(contract(), "600").unit_price.amount == D("12.00")


def _line(quantity: str, minutes_ago: int, price: str) -> OrderLineProposal:
    return OrderLineProposal(
        item="GAUZE",
        location="F1-MAIN",
        facility="F1",
        supplier="ACME",
        contract="C-ACME-BX",
        unit="BX",
        quantity=D(quantity),
        unit_price=Money(amount=D(price)),
        pack_factor=D(10),
        pack_multiple=D(1),
        minimum_order_quantity=D(1),
        lead_time_days=2,
        urgency=Urgency.ROUTINE,
        proposed_at=NOW - timedelta(minutes=minutes_ago),
    )


def test_a_merged_line_pays_the_tier_of_the_merged_quantity() -> None:
    lines = [_line("6", 90, "12.00"), _line("6", 80, "12.00")]
    window = timedelta(hours=1)
    (order,) = consolidate(lines, window, NOW, {"C-ACME-BX": TIERED}).released
    assert (order.lines[0].quantity, order.lines[0].unit_price.amount) == (D(12), D("11.50"))
    (plain,) = consolidate(lines, window, NOW).released  # no contracts given: as before
    assert plain.lines[0].unit_price.amount == D("12.00")
    untiered = {"C-ACME-BX": contract(price="99")}  # a contract without tiers: as proposed
    (kept,) = consolidate(lines, window, NOW, untiered).released
    assert kept.lines[0].unit_price.amount == D("12.00")


def test_the_change_of_a_catalog_price() -> None:
    assert change_percent(D("2.94"), D("3.00")) == D("2.040816")
    assert change_percent(D("10"), D("9")) == D("-10")
    assert change_percent(D("0"), D("1")) is None  # from nothing: beyond any tolerance


# --- prices from a partner's catalog (domain.contract_pricing) ------------------------------

DRAPE = Item(
    code="DRAPE-SM",
    name="Drape",
    category=ItemCategory.SUPPLY,
    base_unit="EA",
    packs=(PackConversion(unit="BX", factor=D(5)), PackConversion(unit="CA", factor=D(20))),
)
PER_EA = Contract(
    code="MEDSURG-DRAPE",
    supplier="MEDSURG",
    item="DRAPE-SM",
    unit="EA",
    price=Money(amount=D("2.94")),
    valid_from=date(2026, 1, 1),
)


def catalog(*prices: tuple[str | None, str, str]) -> list[CatalogPrice]:
    return [CatalogPrice(tier=t, amount=D(a), unit=u) for t, a, u in prices]


def test_a_catalog_price_is_converted_to_the_contract_unit() -> None:
    assert our_price(DRAPE, PER_EA, catalog((None, "66.50", "CA")), "USD") == D("3.325")
    both = catalog((None, "66.50", "CA"), (None, "3.10", "EA"))
    assert our_price(DRAPE, PER_EA, both, "USD") == D("3.10"), "the contract's unit first"
    pallet = our_price(DRAPE, PER_EA, catalog((None, "900", "PL")), "USD")
    assert pallet == "priced in PL, which DRAPE-SM does not convert to EA"
    assert "the catalog is in EUR" in str(our_price(DRAPE, PER_EA, catalog(), "EUR"))


def test_our_tier_is_the_list_price_the_only_tier_or_the_one_named() -> None:
    tiers = catalog(("C01", "65", "CA"), ("C02", "62.20", "CA"))
    assert "MEDBRIDGE_CONTRACT_CATALOG_TIER" in str(our_price(DRAPE, PER_EA, tiers, "USD"))
    assert our_price(DRAPE, PER_EA, tiers, "USD", ours="C02") == D("3.11")
    assert our_price(DRAPE, PER_EA, tiers, "USD", ours="C09") == "no price of tier C09"
    assert our_price(DRAPE, PER_EA, tiers[:1], "USD") == D("3.25")
    listed = [*tiers, *catalog((None, "70", "CA"))]
    assert our_price(DRAPE, PER_EA, listed, "USD") == D("3.5")


def test_a_new_price_scales_the_tiers() -> None:
    moved = repriced(TIERED, D("13.20"))  # +10%
    assert moved.price.amount == D("13.20")
    assert [t.price for t in moved.tiers] == [D("12.65"), D("12.10")]
    assert moved.code == TIERED.code
