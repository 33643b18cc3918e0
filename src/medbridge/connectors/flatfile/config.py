"""Per-source configuration of a flat-file inventory snapshot.

The completeness rule (how a half-written file is told from a finished one): the file's last
non-blank line is a trailer ``<trailer_marker><delimiter><row count>`` (``#EOF,120``), written by
the sender after the last data row; the count is the number of data rows (header and trailer
excluded). No trailer, or a count that differs from the rows read, and the file is
``Incomplete``: it is never applied. The watched folder leaves a file without trailer alone
while it is younger than ``incomplete_grace_seconds`` (it may still be being written), and
rejects it as truncated after that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class ColumnMapping:
    """Header names of the snapshot's columns. ``unit`` and ``expiry`` are optional: without a
    unit column quantities are in the item's base unit; ``expiry`` is an ISO date
    (``YYYY-MM-DD``) and is only used for a lot the ledger does not have yet."""

    item: str = "item"
    location: str = "location"
    lot: str = "lot"
    quantity: str = "quantity"
    unit: str | None = None
    expiry: str | None = None

    def required(self) -> tuple[str, ...]:
        return (self.item, self.location, self.lot, self.quantity)

    def all(self) -> tuple[str, ...]:
        return self.required() + tuple(c for c in (self.unit, self.expiry) if c is not None)


@dataclass(frozen=True)
class FlatFileConfig:
    """One legacy source. A header line is always required (columns are found by name).

    ``tolerance``: an absolute quantity in the item's base unit; a difference whose magnitude
    is at most this is not a variance. ``locations``: stores the snapshot covers in full even
    when it lists nothing there (a location named in the file is always covered); ledger
    lots at a covered location that the file does not list are variances (counted 0).
    ``emit_adjustments``: hand a signed count adjustment per variance to the movement sink.
    """

    source: str
    columns: ColumnMapping = field(default_factory=ColumnMapping)
    delimiter: str = ","
    encoding: str = "utf-8"
    trailer_marker: str = "#EOF"
    tolerance: Decimal = Decimal(0)
    emit_adjustments: bool = False
    locations: frozenset[str] = frozenset()
    incomplete_grace_seconds: float = 300.0
    max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1:
            raise ValueError("delimiter: must be one character")
        if not self.source or "/" in self.source or self.source.startswith("."):
            raise ValueError("source: a plain folder name is required")
        if self.tolerance < 0:
            raise ValueError("tolerance: cannot be negative")
        names = self.columns.all()
        if len(set(names)) != len(names):
            raise ValueError("columns: two fields map to the same column")
