"""FEFO and quarantined lots (medbridge.domain.ledger): an issue without a lot passes over a
quarantined lot while other stock exists; a request never draws it, a fact draws it last."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from medbridge.canonical.movements import MovementKind
from medbridge.domain.errors import InsufficientStock
from medbridge.domain.ledger import NO_LOT, LedgerMovement, LotChange, StockBook

D = Decimal
ITEM, STORE, WARD = "AMOX-500", "F1-MAIN", "F1-ICU"


def book() -> StockBook:
    """Q (quarantined) expires first, then A; 5 of each."""
    b = StockBook(quarantined=frozenset({(ITEM, "Q")}))
    for lot, expiry in (("Q", date(2026, 1, 31)), ("A", date(2026, 6, 30))):
        b.apply(
            LedgerMovement(
                MovementKind.RECEIPT, ITEM, STORE, D(5), lot=lot, expiry=expiry, unit_cost=D(1)
            )
        )
    return b


def issue(kind: MovementKind, quantity: int, **extra: object) -> LedgerMovement:
    return LedgerMovement(kind, ITEM, STORE, D(quantity), **extra)  # type: ignore[arg-type]


def test_a_dispense_without_lot_passes_over_the_quarantined_lot_while_others_hold_stock() -> None:
    valued = book().apply(issue(MovementKind.DISPENSE, 3))
    assert valued.lot_changes == (LotChange(STORE, "A", D(-3)),)
    assert valued.discrepancy is None


def test_a_dispense_beyond_the_free_stock_draws_the_quarantined_lot_last() -> None:
    b = book()
    valued = b.apply(issue(MovementKind.DISPENSE, 12))
    assert valued.lot_changes == (
        LotChange(STORE, "A", D(-5)),
        LotChange(STORE, "Q", D(-5)),
        LotChange(STORE, NO_LOT, D(-2)),
    )
    assert b.on_hand[(ITEM, STORE, "Q")] == 0


def test_a_request_never_draws_the_quarantined_lot() -> None:
    b = book()
    valued = b.apply(issue(MovementKind.TRANSFER, 5, to_location=WARD))
    assert [(c.location, c.lot, c.quantity) for c in valued.lot_changes] == [
        (STORE, "A", D(-5)),
        (WARD, "A", D(5)),
    ]
    with pytest.raises(InsufficientStock):
        b.apply(issue(MovementKind.WASTAGE, 1))
    assert b.on_hand[(ITEM, STORE, "Q")] == 5


def test_a_named_quarantined_lot_is_taken_as_named() -> None:
    valued = book().apply(issue(MovementKind.RETURN_TO_SUPPLIER, 5, lot="Q"))
    assert valued.lot_changes == (LotChange(STORE, "Q", D(-5)),)
