"""Placing scans against expected lines in base units (``domain.scan_matching``)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from medbridge.domain.scan_matching import ExpectedLine, Identified, ScanOutcome, Tally

VIAL = Identified("VANCO-1G", "VIAL", Decimal(1))
BOX = Identified("VANCO-1G", "BX", Decimal(10))
LINE = ExpectedLine(1, "VANCO-1G", "VIAL", "VIAL", Decimal(1), Decimal(12))


def test_vials_match_a_box_is_another_pack_and_what_goes_beyond_is_over() -> None:
    tally = Tally([LINE])
    one = tally.place(VIAL, Decimal(1))
    assert (one.outcome, one.received, one.line, one.base_quantity) == (
        ScanOutcome.MATCHED,
        True,
        1,
        Decimal(1),
    )
    box = tally.place(BOX, Decimal(1))
    assert (box.outcome, box.received, box.base_quantity) == (
        ScanOutcome.SUBSTITUTED,
        True,
        Decimal(10),
    )
    over = tally.place(BOX, Decimal(1))  # 1 left: a box is indivisible
    assert (over.outcome, over.received, over.line) == (ScanOutcome.OVER, False, 1)
    assert over.note is not None
    assert "1 still expected" in over.note
    assert tally.place(VIAL, Decimal(1)).outcome is ScanOutcome.MATCHED
    assert tally.place(VIAL, Decimal(1)).outcome is ScanOutcome.OVER


def test_counted_before_lowers_what_is_expected_and_a_second_line_takes_the_rest() -> None:
    tally = Tally(
        [
            replace(LINE, counted=Decimal(12)),
            ExpectedLine(2, "VANCO-1G", "BX", "VIAL", Decimal(10), Decimal(20)),
        ]
    )
    placed = tally.place(BOX, Decimal(2))
    assert (placed.outcome, placed.line, placed.base_quantity) == (
        ScanOutcome.MATCHED,
        2,
        Decimal(20),
    )


def test_unknown_and_unordered_items_are_never_received() -> None:
    tally = Tally([LINE])
    unknown = tally.place(None, Decimal(1))
    assert (unknown.outcome, unknown.received) == (ScanOutcome.UNKNOWN, False)
    other = tally.place(Identified("DILUENT-10", "VIAL", Decimal(1)), Decimal(1))
    assert (other.outcome, other.received, other.line) == (ScanOutcome.SUBSTITUTED, False, None)
    assert tally.remaining == {1: Decimal(12)}
