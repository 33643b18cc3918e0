"""trytond's JSON-RPC wire format: typed values travel as ``{"__class__": ..., ...}`` objects.

``decode`` turns an answer into Python values (``Decimal``, ``datetime``, ``date``, ``time``,
``timedelta``, ``bytes``); ``encode`` does the reverse for call parameters. trytond's
datetimes are naive UTC (``write_date``, ``create_date``); ``to_utc``/``from_utc`` make them
aware at this boundary so nothing naive travels further.

Shared by every connector that talks to a trytond (GNU Health, Tryton ERP); each turns
``TrytonValueError`` into its own protocol error.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any


class TrytonValueError(ValueError):
    """A value in an answer that cannot be decoded (unknown or malformed ``__class__``)."""


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "datetime": lambda d: datetime(
        d["year"], d["month"], d["day"], d["hour"], d["minute"], d["second"], d["microsecond"]
    ),
    "date": lambda d: date(d["year"], d["month"], d["day"]),
    "time": lambda d: time(d["hour"], d["minute"], d["second"], d["microsecond"]),
    "timedelta": lambda d: timedelta(seconds=d["seconds"]),
    "Decimal": lambda d: Decimal(d["decimal"]),
    "bytes": lambda d: base64.b64decode(d["base64"]),
}


def decode(value: Any) -> Any:
    """Decode a parsed JSON answer, recursively; an unknown ``__class__`` is a protocol error."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("__class__")
    if kind is None:
        return {k: decode(v) for k, v in value.items()}
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise TrytonValueError(f"unknown value class {kind!r}")
    try:
        return decoder(value)
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise TrytonValueError(f"malformed {kind} value ({exc})") from exc


def encode(value: Any) -> Any:
    """Encode call parameters; tuples become lists (domains are lists of tuples)."""
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("encode naive UTC datetimes only: use from_utc()")
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    return value


def to_utc(value: datetime) -> datetime:
    """trytond's naive UTC timestamp -> aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def from_utc(value: datetime) -> datetime:
    """Aware datetime -> trytond's naive UTC."""
    return value.astimezone(UTC).replace(tzinfo=None)
