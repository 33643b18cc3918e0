"""Reading a spreadsheet of master data: CSV (UTF-8, a header row) or XLSX (the first sheet,
read in openpyxl's read-only mode), as rows of text cells numbered as in the file (the
header is row 1), and the problems found in them, each naming its row and column."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

MAX_PROBLEMS = 50
"""How many problems a rejected file reports (every problem is counted)."""

MAX_CELL = 4000
"""The longest cell read (a pack or code list); longer is a problem of its own."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Problem:
    """What is wrong where: ``row`` as in the file (the header is row 1), ``column`` its
    header name (or a field's name, for the API)."""

    row: int
    column: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.message}"


class ImportRejected(Exception):
    """A file with problems: nothing of it was written. ``problems`` holds the first
    ``MAX_PROBLEMS``, ``total`` counts them all."""

    def __init__(self, problems: Sequence[Problem], total: int | None = None) -> None:
        self.problems = list(problems)[:MAX_PROBLEMS]
        self.total = len(problems) if total is None else total
        more = f" (and {self.total - len(self.problems)} more)" if self.total > MAX_PROBLEMS else ""
        first = str(self.problems[0]) if self.problems else "no rows"
        super().__init__(f"{self.total} problem(s), nothing written; first: {first}{more}")


class Problems:
    """Collects problems, keeping the first ``MAX_PROBLEMS`` and counting all."""

    def __init__(self) -> None:
        self.kept: list[Problem] = []
        self.total = 0

    def add(self, row: int, column: str, message: str) -> None:
        self.total += 1
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(Problem(row, column, message))

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_any(self) -> None:
        if self.total:
            raise ImportRejected(sorted(self.kept, key=lambda p: p.row), self.total)


def is_xlsx(name: str, data: bytes) -> bool:
    return name.lower().endswith((".xlsx", ".xlsm")) or data[:4] == b"PK\x03\x04"


def _xlsx_text(value: Any) -> str:
    """A cell's text: an integral number without its ``.0`` (a GTIN typed as a number), a
    date as ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def read_rows(name: str, data: bytes) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every row, the header first (row 1); ImportRejected for a file
    that cannot be read at all."""
    if is_xlsx(name, data):
        yield from _xlsx_rows(data)
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ImportRejected([Problem(line, "", f"not UTF-8 text: {error.reason}")]) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter(text))
    try:
        yield from enumerate(reader, start=1)
    except csv.Error as error:
        raise ImportRejected([Problem(reader.line_num, "", f"unreadable CSV: {error}")]) from None


def delimiter(text: str) -> str:
    """The CSV's delimiter, from its header row: a comma, else a semicolon (what a spreadsheet
    set to a decimal comma writes, common in European hospitals' exports), else a tab. The
    column names hold none of them, so the header says which one it is."""
    header = text.split("\n", 1)[0]
    for candidate in (",", ";", "\t"):
        if candidate in header:
            return candidate
    return ","


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (BadZipFile, KeyError, ValueError, OSError) as error:
        raise ImportRejected([Problem(1, "", f"unreadable XLSX file: {error}")]) from None
    try:
        sheet = book.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_xlsx_text(v) for v in values]
    finally:
        book.close()


def header_problems(
    cells: Sequence[str], known: Sequence[str], required: Sequence[str]
) -> tuple[dict[str, int], list[Problem]]:
    """Where each known column is ({name: index}) and what is wrong with the header."""
    where: dict[str, int] = {}
    problems: list[Problem] = []
    for index, raw in enumerate(cells):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in known:
            problems.append(
                Problem(1, raw.strip(), f"unknown column; the columns are {', '.join(known)}")
            )
        elif name in where:
            problems.append(Problem(1, name, "the column is there twice"))
        else:
            where[name] = index
    problems += [Problem(1, c, "required column missing") for c in required if c not in where]
    return where, problems


def cell_problem(value: str) -> str | None:
    """Why a cell cannot be stored as text (a control character, over-long), or None."""
    if len(value) > MAX_CELL:
        return f"longer than {MAX_CELL} characters"
    if _CONTROL.search(value):
        return "contains a control character"
    return None


def pairs(value: str, what: str) -> list[tuple[str, str]]:
    """``ISSUER:CODE;ISSUER:CODE`` as (issuer, code) pairs; ValueError naming the bad one."""
    found: list[tuple[str, str]] = []
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        issuer, sep, code = part.partition(":")
        issuer, code = issuer.strip(), code.strip()
        if not sep or not issuer or not code:
            raise ValueError(f"{part!r}: a {what} is ISSUER:CODE")
        if len(issuer) > 64 or len(code) > 64:
            raise ValueError(f"{part!r}: issuer and code are at most 64 characters each")
        found.append((issuer, code))
    return found
