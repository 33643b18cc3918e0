"""Flat-file connector errors. Every one is raised before anything is applied: a refused file
changes nothing, and its reason names the line (1-based, the header is line 1) and the column.

FlatFileError                      code
 +-- SnapshotRefused                                 the file is refused whole
      +-- Incomplete               truncated         no trailer line, or its row count differs
      +-- MalformedSnapshot        malformed
      |    +-- BadEncoding         bad-encoding      bytes do not decode in the configured encoding
      |    +-- MissingColumn       missing-column    a mapped column is not in the header
      |    +-- WrongFieldCount     field-count       a row has more or fewer fields than the header
      |    +-- BadValue            bad-value         an empty required field, a bad number or date
      |    +-- DuplicateKey        duplicate-key     item/location/lot counted twice
      +-- UnknownReference         unknown-reference an item, location or unit MedBridge does not
                                                     know (checked against master data)

The ``code`` is stable: the watched folder writes it into the ``rejected/`` reason file.
"""

from __future__ import annotations


class FlatFileError(Exception):
    """Root of the flat-file connector's errors."""

    code = "error"

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None):
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.message, self.line, self.column = message, line, column

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "line": self.line, "column": self.column, "reason": str(self)}


class SnapshotRefused(FlatFileError):
    code = "refused"


class Incomplete(SnapshotRefused):
    """A half-written (or cut) file: the completeness rule is not met."""

    code = "truncated"


class MalformedSnapshot(SnapshotRefused):
    code = "malformed"


class BadEncoding(MalformedSnapshot):
    code = "bad-encoding"


class MissingColumn(MalformedSnapshot):
    code = "missing-column"


class WrongFieldCount(MalformedSnapshot):
    code = "field-count"


class BadValue(MalformedSnapshot):
    code = "bad-value"


class DuplicateKey(MalformedSnapshot):
    code = "duplicate-key"


class UnknownReference(SnapshotRefused):
    code = "unknown-reference"
