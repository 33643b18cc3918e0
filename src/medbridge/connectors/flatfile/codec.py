"""The wire format: a delimited text file (stdlib ``csv``) with a header line, data rows and a
trailer line ``#EOF,<rows>`` (see ``config``). ``parse`` turns the bytes into typed rows or
raises a ``SnapshotRefused`` naming the line and column; it never returns part of a file."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from medbridge.connectors.flatfile.config import FlatFileConfig
from medbridge.connectors.flatfile.errors import (
    BadEncoding,
    BadValue,
    DuplicateKey,
    Incomplete,
    MalformedSnapshot,
    MissingColumn,
    SnapshotRefused,
    WrongFieldCount,
)

SnapshotKey = tuple[str, str, str | None]
"""item, location, lot (``None``: stock without a lot)."""


@dataclass(frozen=True)
class SnapshotRow:
    line: int
    item: str
    location: str
    lot: str | None
    quantity: Decimal
    unit: str | None = None
    expiry: date | None = None

    @property
    def key(self) -> SnapshotKey:
        return (self.item, self.location, self.lot)


@dataclass(frozen=True)
class Snapshot:
    name: str
    sha256: str
    rows: tuple[SnapshotRow, ...]


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _records(raw: bytes, config: FlatFileConfig) -> list[tuple[int, list[str]]]:
    """(line number of the record's first line, fields) of every non-blank record."""
    try:
        text = raw.decode(config.encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadEncoding(f"not valid {config.encoding} at byte {exc.start}", line=line) from None
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=config.delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                records.append((line, fields))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise MalformedSnapshot(f"unreadable CSV ({exc})", line=reader.line_num) from None
    return records


def trailer_count(fields: list[str], config: FlatFileConfig) -> int | None:
    """The row count of a trailer record, or ``None`` if the record is not a trailer."""
    if not fields or fields[0].strip() != config.trailer_marker:
        return None
    count = fields[1].strip() if len(fields) == 2 else ""
    # ASCII digits, and few enough to be a row count: "1²".isdigit() and "٣".isdigit() are
    # true, yet int() refuses the first; int() refuses more than 4,300 digits
    if not (count.isascii() and count.isdigit()) or len(count) > 12:
        return -1
    return int(count)


def is_complete(raw: bytes, config: FlatFileConfig) -> bool:
    """Whether the completeness rule holds at a glance: the last non-blank line is a trailer.
    (Cheap: used by the watched folder to leave a file that is still being written alone.)"""
    last = next((ln for ln in reversed(raw.splitlines()) if ln.strip()), b"")
    marker = (config.trailer_marker + config.delimiter).encode(config.encoding, "replace")
    return last.strip().startswith(marker)


def _optional(value: str) -> str | None:
    return value.strip() or None


def _required(value: str, line: int, column: str) -> str:
    text = value.strip()
    if not text:
        raise BadValue("empty; a value is required", line=line, column=column)
    return text


def _quantity(value: str, line: int, column: str) -> Decimal:
    if not value.isascii():  # Decimal() would read any script's digits
        raise BadValue(f"not a number: {value.strip()[:40]!r}", line=line, column=column)
    try:
        quantity = Decimal(value.strip())
    except InvalidOperation:
        raise BadValue(f"not a number: {value.strip()[:40]!r}", line=line, column=column) from None
    if not quantity.is_finite():
        raise BadValue("not a finite number", line=line, column=column)
    if quantity < 0:
        raise BadValue("a counted quantity cannot be negative", line=line, column=column)
    return quantity


def _expiry(value: str, line: int, column: str) -> date | None:
    text = value.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadValue(f"not an ISO date: {text[:40]!r}", line=line, column=column) from None


def parse(raw: bytes, config: FlatFileConfig, name: str) -> Snapshot:
    """Every row of the file, typed; or the first problem found, naming line and column."""
    if len(raw) > config.max_bytes:
        raise SnapshotRefused(f"file of {len(raw)} bytes is over the {config.max_bytes} limit")
    records = _records(raw, config)
    if not records:
        raise Incomplete("empty file: no header, no trailer", line=1)
    header_line, header = records[0]
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for h in header:
        if h in seen:
            raise MalformedSnapshot("column named twice in the header", line=header_line, column=h)
        seen.add(h)
    cols = config.columns
    for column in cols.all():
        if column not in seen:
            raise MissingColumn("mapped column not in the header", line=header_line, column=column)
    index = {h: i for i, h in enumerate(header)}

    # completeness first: a cut file is reported as truncated, not as its cut last row
    last_line, last = records[-1]
    announced = trailer_count(last, config) if len(records) > 1 else None
    if announced is None:
        raise Incomplete(
            f"no trailer line '{config.trailer_marker}{config.delimiter}<rows>' after line "
            f"{last_line}: the file is incomplete (half-written or cut)",
            line=last_line + 1,
        )
    if announced < 0:
        raise MalformedSnapshot(
            f"trailer must be '{config.trailer_marker}{config.delimiter}<rows>'", line=last_line
        )
    if announced != len(records) - 2:
        raise Incomplete(
            f"the trailer announces {announced} rows, the file holds {len(records) - 2}",
            line=last_line,
        )

    rows: list[SnapshotRow] = []
    first_seen: dict[SnapshotKey, int] = {}
    for line, fields in records[1:-1]:
        if trailer_count(fields, config) is not None:
            raise MalformedSnapshot(f"data after the trailer of line {line}", line=line + 1)
        if len(fields) != len(header):
            raise WrongFieldCount(
                f"{len(fields)} fields where the header has {len(header)}", line=line
            )

        def get(column: str, fields: list[str] = fields) -> str:
            return fields[index[column]]

        row = SnapshotRow(
            line=line,
            item=_required(get(cols.item), line, cols.item),
            location=_required(get(cols.location), line, cols.location),
            lot=_optional(get(cols.lot)),
            quantity=_quantity(get(cols.quantity), line, cols.quantity),
            unit=None if cols.unit is None else _required(get(cols.unit), line, cols.unit),
            expiry=None if cols.expiry is None else _expiry(get(cols.expiry), line, cols.expiry),
        )
        if row.key in first_seen:
            raise DuplicateKey(
                f"item/location/lot already counted on line {first_seen[row.key]}",
                line=line,
                column=cols.lot,
            )
        first_seen[row.key] = line
        rows.append(row)
    return Snapshot(name=name, sha256=digest(raw), rows=tuple(rows))
