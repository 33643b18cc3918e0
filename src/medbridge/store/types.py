"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no exact decimal type: a NUMERIC column stores a REAL (a binary float), so money
would drift. ``ExactDecimal`` stores scaled integers on SQLite (value * 10**scale in an
INTEGER, exact up to 9.2e18) and NUMERIC on PostgreSQL; SQL sums stay exact on both when the
expression keeps the column's type (``func.sum(col, type_=col.type)``).
``UTCDateTime`` stores UTC and always returns timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine


class ExactDecimal(TypeDecorator[Decimal]):
    impl = Numeric
    cache_ok = True

    def __init__(self, scale: int, precision: int = 18) -> None:
        super().__init__()
        self.scale, self.precision = scale, precision
        self._factor = Decimal(10) ** scale

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = Decimal(value)
        if dialect.name == "sqlite":
            scaled = exact * self._factor
            if scaled != scaled.to_integral_value():
                raise ValueError(f"{value} has more than {self.scale} decimal places")
            return int(scaled)
        return exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / self._factor).quantize(Decimal(1).scaleb(-self.scale))
        return Decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(DateTime(timezone=dialect.name != "sqlite"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: MedBridge stores timezone-aware times only")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


QUANTITY = ExactDecimal(6)
MONEY = ExactDecimal(2)
UNIT_COST = ExactDecimal(6)
