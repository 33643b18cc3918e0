"""Bounded numbers and printable codes for every route: an id or offset beyond what the
database holds is a 422 naming the parameter, never a 500 (an integer over 2^63 reached SQLite
before), and so is a code with a control character (PostgreSQL refuses a NUL in text: a 500
the API schema fuzz found on PostgreSQL)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

MAX_ID = 2**63 - 1
"""The largest row id either database stores (a signed 64-bit integer)."""
MAX_OFFSET = 10_000_000

RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
"""No control character (NUL included): a code, an issuer, a lot."""
QueryCode = Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)]
