"""The export directory: Parquet datasets partitioned by day (hive style), the watermarks, and
a DuckDB file of views over them.

Layout of ``directory``::

    <dataset>/day=YYYY-MM-DD/part-0.parquet   one file per day, rewritten whole
    _export_state.json                        each dataset's watermark (ISO 8601, UTC)
    .export.lock                              held by the export writing (one at a time)
    medbridge.duckdb                          one view per dataset (absolute paths)
    views.sql                                 the same views, paths relative to the directory

Promises: a day is replaced atomically (written beside, then renamed over), so a reader sees
the old day or the new one, never half of one, and a day written twice holds its rows once.
The state is written last, after every day it accounts for: an export that dies half way
leaves the old watermarks, and the next export writes those days again (whole). The DuckDB
file is rebuilt beside and renamed over too: a tool holding the old one open keeps reading it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medbridge.connectors.analytics.config import AnalyticsConfig
from medbridge.connectors.analytics.errors import ExportDirectoryError

PART = "part-0.parquet"
STATE_FILE = "_export_state.json"
LOCK_FILE = ".export.lock"
STATE_VERSION = 1
_PARTITION = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass
class ExportState:
    """What was exported: per dataset, the moment up to which its changes are in the files."""

    watermarks: dict[str, datetime] = field(default_factory=dict)

    def to_json(self) -> str:
        marks = {name: at.isoformat() for name, at in sorted(self.watermarks.items())}
        return json.dumps({"version": STATE_VERSION, "watermarks": marks}, indent=2)

    @classmethod
    def from_json(cls, text: str, where: Path) -> ExportState:
        try:
            raw = json.loads(text)
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"version {raw.get('version')!r}, expected {STATE_VERSION}")
            marks = {str(k): datetime.fromisoformat(v) for k, v in raw["watermarks"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ExportDirectoryError(f"{where}: not an export state ({error})") from None
        return cls(marks)


class ParquetExport:
    def __init__(self, config: AnalyticsConfig) -> None:
        self.config = config
        self.root = config.directory.resolve()
        if self.root.exists() and not self.root.is_dir():
            raise ExportDirectoryError(f"{self.root}: not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExportDirectoryError(f"{self.root}: {error.strerror or error}") from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The directory for one export at a time (another one at once: refused)."""
        with open(self.root / LOCK_FILE, "a+b") as held:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ExportDirectoryError(f"{self.root}: another export is writing it") from None
            try:
                yield
            finally:
                fcntl.flock(held, fcntl.LOCK_UN)

    # --- watermarks --------------------------------------------------------------------

    def state(self) -> ExportState:
        path = self.root / STATE_FILE
        if not path.exists():
            return ExportState()
        return ExportState.from_json(path.read_text(encoding="utf-8"), path)

    def save_state(self, state: ExportState) -> None:
        _replace_text(self.root / STATE_FILE, state.to_json())

    # --- days ----------------------------------------------------------------------------

    def days(self, dataset: str) -> list[date]:
        """The days the dataset holds."""
        folder = self._folder(dataset)
        if not folder.is_dir():
            return []
        found = (_PARTITION.match(p.name) for p in folder.iterdir() if (p / PART).is_file())
        return sorted(date.fromisoformat(m.group(1)) for m in found if m)

    def replace_day(self, dataset: str, day: date, table: pa.Table) -> int:
        """``table`` as the whole of ``dataset`` on ``day`` (no rows: the day is removed);
        the number of rows written."""
        partition = self._folder(dataset) / f"day={day.isoformat()}"
        if table.num_rows == 0:
            shutil.rmtree(partition, ignore_errors=True)
            return 0
        partition.mkdir(parents=True, exist_ok=True)
        target = partition / PART
        beside = partition / f".{PART}.writing"
        pq.write_table(table, beside, compression=self.config.compression)
        os.replace(beside, target)
        return int(table.num_rows)

    def days_holding(self, dataset: str, column: str, keys: Iterable[str]) -> set[date]:
        """The days whose rows of ``dataset`` have ``column`` in ``keys``: where a changed row
        was written before (a row whose day moved must leave its old day)."""
        wanted = pa.array(sorted(set(keys)), pa.string())
        if len(wanted) == 0:
            return set()
        holding = set()
        for day in self.days(dataset):
            path = self._folder(dataset) / f"day={day.isoformat()}" / PART
            values = pq.read_table(path, columns=[column]).column(column)
            if pc.any(pc.is_in(values, value_set=wanted)).as_py():
                holding.add(day)
        return holding

    # --- DuckDB ------------------------------------------------------------------------------

    def write_views(self, schemas: Mapping[str, pa.Schema]) -> Path:
        """The DuckDB file (and ``views.sql``): a view per dataset over its Parquet files, the
        day as a DATE column; a dataset without a day yet is an empty table of its columns."""
        statements, relative = [], []
        empty: dict[str, pa.Schema] = {}
        for name, schema in sorted(schemas.items()):
            self._folder(name)  # the name is checked
            if not self.days(name):
                empty[name] = schema
                continue
            statements.append(_view(name, (self.root / name).as_posix()))
            relative.append(_view(name, name))
        target = self.root / self.config.duckdb_file
        beside = target.with_name(f".{target.name}.writing")
        beside.unlink(missing_ok=True)
        with duckdb.connect(str(beside)) as db:
            for statement in statements:
                db.execute(statement)
            for name, schema in empty.items():
                db.register("empty_dataset", schema.empty_table())
                # the name passed _NAME (letters, digits, _): nothing to inject
                db.execute(f"CREATE TABLE {name} AS SELECT *, NULL::DATE AS day FROM empty_dataset")  # noqa: S608
                db.unregister("empty_dataset")
        os.replace(beside, target)
        header = "-- MedBridge analytics views; run from this directory: duckdb -init views.sql\n"
        _replace_text(self.root / self.config.views_file, header + "\n".join(relative) + "\n")
        return target

    def _folder(self, dataset: str) -> Path:
        if not _NAME.match(dataset):
            raise ExportDirectoryError(f"dataset name {dataset!r}: lower-case letters, digits, _")
        return self.root / dataset


def _view(name: str, where: str) -> str:
    glob = f"{where}/*/*.parquet".replace("'", "''")  # a quote in the path, doubled
    return (  # the name passed _NAME (letters, digits, _)
        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{glob}', "  # noqa: S608
        "hive_partitioning = true, hive_types = {'day': 'DATE'});"
    )


def _replace_text(path: Path, text: str) -> None:
    beside = path.with_name(f".{path.name}.writing")
    beside.write_text(text, encoding="utf-8")
    os.replace(beside, path)
