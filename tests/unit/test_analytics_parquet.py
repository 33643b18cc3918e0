"""The analytics connector's export directory (``connectors.analytics``): a day replaced whole,
a day emptied removed, the days a key was written to found again, the watermarks kept, the
DuckDB views over the days (an empty dataset an empty table of its columns)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from medbridge.connectors.analytics import (
    AnalyticsConfig,
    ExportDirectoryError,
    ExportState,
    ParquetExport,
)

SCHEMA = pa.schema([("reference", pa.string()), ("total", pa.decimal128(18, 2))])
D1, D2 = date(2026, 11, 4), date(2026, 11, 5)


def rows(*pairs: tuple[str, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"reference": r, "total": Decimal(t)} for r, t in pairs], schema=SCHEMA
    )


def test_a_day_written_twice_holds_its_rows_once(tmp_path: Path) -> None:
    out = ParquetExport(AnalyticsConfig(directory=tmp_path))
    assert out.replace_day("orders", D1, rows(("PO1", "1.50"), ("PO2", "2.00"))) == 2
    assert out.replace_day("orders", D1, rows(("PO1", "1.50"), ("PO2", "2.50"))) == 2
    assert out.replace_day("orders", D2, rows(("PO3", "3.00"))) == 1
    assert out.days("orders") == [D1, D2]
    assert out.days_holding("orders", "reference", ["PO2", "PO9"]) == {D1}
    assert out.days_holding("orders", "reference", []) == set()
    out.write_views({"orders": SCHEMA, "invoices": SCHEMA})
    with duckdb.connect(str(tmp_path / "medbridge.duckdb"), read_only=True) as db:
        got = db.execute("SELECT day, reference, total FROM orders ORDER BY reference").fetchall()
        assert got == [
            (D1, "PO1", Decimal("1.50")),
            (D1, "PO2", Decimal("2.50")),
            (D2, "PO3", Decimal("3.00")),
        ]
        assert db.execute("SELECT count(*) FROM invoices").fetchall() == [(0,)]
    assert out.replace_day("orders", D2, rows()) == 0  # no row left: the day goes
    assert out.days("orders") == [D1]
    assert not list(tmp_path.rglob("*.writing"))


def test_the_watermarks_are_kept_and_a_foreign_state_refused(tmp_path: Path) -> None:
    out = ParquetExport(AnalyticsConfig(directory=tmp_path / "new" / "dir"))
    assert out.state().watermarks == {}
    at = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    out.save_state(ExportState({"orders": at}))
    assert out.state().watermarks == {"orders": at}
    (out.root / "_export_state.json").write_text('{"version": 9}')
    with pytest.raises(ExportDirectoryError, match="not an export state"):
        out.state()


def test_a_file_is_no_export_directory_and_a_bad_name_no_dataset(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportDirectoryError, match="not a directory"):
        ParquetExport(AnalyticsConfig(directory=blocker))
    out = ParquetExport(AnalyticsConfig(directory=tmp_path / "ok"))
    with pytest.raises(ExportDirectoryError, match="dataset name"):
        out.replace_day("../escape", D1, rows(("PO1", "1")))


def test_one_export_at_a_time(tmp_path: Path) -> None:
    out = ParquetExport(AnalyticsConfig(directory=tmp_path))
    other = ParquetExport(AnalyticsConfig(directory=tmp_path))
    with out.lock(), pytest.raises(ExportDirectoryError, match="another export"), other.lock():
        pass
    with other.lock():
        pass
