"""Placing receiving scans against what a ship notice (or a purchase order) still expects,
in base units. Pure: no I/O.

A scan is one trade item at the level its GTIN names (the item's own GTIN: one base unit;
a pack GTIN: the pack's factor in base units), times its (30)/(37) count. What a dock
expects of each outcome:

* ``MATCHED``: the ordered item in the order line's unit, within what the line still
  expects: received.
* ``SUBSTITUTED``: another pack of the ordered item (a box scanned against a line in vials):
  received, converted to base units; or another item than any ordered (a known GTIN of our
  item master): held at the dock for pharmacy, never received as the ordered item.
* ``OVER``: the scan would take its line beyond what it still expects: reported and held at
  the dock, not received (a scanned pack is indivisible: the whole scan is over). A buyer
  decides (a receipt through ``POST /v1/purchase-orders/{ref}/receipts``, or a return).
* ``UNKNOWN``: the GTIN is in no item and no pack of the master data: parked, never received
  as something else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class ScanOutcome(StrEnum):
    MATCHED = "matched"
    SUBSTITUTED = "substituted"
    OVER = "over"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ExpectedLine:
    """An order line as the scans see it; quantities in the item's base unit."""

    line: int
    item: str
    unit: str
    """The order line's unit."""
    base_unit: str
    factor: Decimal
    """Base units per line unit."""
    expected: Decimal
    """What the ship notice (or the order) expects of the line, in base units."""
    counted: Decimal = Decimal(0)
    """Received by scan already, in base units."""


@dataclass(frozen=True)
class Identified:
    """A scan's GTIN in the master data: the item and the unit the GTIN names."""

    item: str
    unit: str
    factor: Decimal
    """Base units per ``unit``."""


@dataclass(frozen=True)
class Placement:
    outcome: ScanOutcome
    received: bool
    line: int | None
    base_quantity: Decimal | None
    note: str | None = None


class Tally:
    """What each line still expects, lowered by each scan received against it."""

    def __init__(self, lines: Sequence[ExpectedLine]) -> None:
        self.lines = {ln.line: ln for ln in sorted(lines, key=lambda ln: ln.line)}
        self.remaining = {ln.line: ln.expected - ln.counted for ln in self.lines.values()}

    def place(self, what: Identified | None, count: Decimal) -> Placement:
        if what is None:
            return Placement(
                ScanOutcome.UNKNOWN, False, None, None, "GTIN of no item or pack: parked"
            )
        base = count * what.factor
        ours = [ln for ln in self.lines.values() if ln.item == what.item]
        if not ours:
            return Placement(
                ScanOutcome.SUBSTITUTED,
                False,
                None,
                base,
                f"{what.item} is not on this order: held for pharmacy, not received",
            )
        fits = [ln for ln in ours if self.remaining[ln.line] >= base]
        if not fits:
            line = ours[0]
            left = max(sum((self.remaining[ln.line] for ln in ours), Decimal(0)), Decimal(0))
            return Placement(
                ScanOutcome.OVER,
                False,
                line.line,
                base,
                f"{base.normalize():f} {line.base_unit} scanned, {left.normalize():f} "
                "still expected: held, not received",
            )
        line = fits[0]
        self.remaining[line.line] -= base
        if what.unit == line.unit:
            return Placement(ScanOutcome.MATCHED, True, line.line, base)
        return Placement(
            ScanOutcome.SUBSTITUTED,
            True,
            line.line,
            base,
            f"pack {what.unit} (x{what.factor.normalize():f}) for a line in {line.unit}: "
            f"received as {base.normalize():f} {line.base_unit}",
        )
