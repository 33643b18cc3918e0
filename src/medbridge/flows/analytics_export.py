"""The analytics export (issue 18): events, stock movements, journal lines, purchase orders,
goods receipts, supplier invoices with their match, and daily KPIs, from the store to the
``analytics`` connector (Parquet by day and a DuckDB file of views).

What it promises:

* **no patient, no encounter.** Nothing read here identifies a patient: the tables exported
  hold none, and an event's ``data`` leaves without ``encounter_ref`` (the encounter
  pseudonym; ``governance.minimisation.PROTECTED``) and ``patient_location`` (a ward and bed)
  at any depth. Free text a person typed (an order's note, who received) stays home too
  (``flows.analytics_datasets``: what each dataset reads and how a row leaves).
* **incremental, never a duplicate.** Each dataset has a watermark (the export's start, kept
  in the directory). An export reads the rows changed since the watermark (less ``settle``:
  a transaction that began before it may commit after it), takes the days those rows belong
  to (and, for rows that change, the days they were written to before) and writes each such
  day again whole. A day without a change is not touched; a day written again holds each row
  once. The daily KPIs are written again from the earliest day any change touched (a late
  dispense moves every later balance) up to today, and always for the day the last export
  left open.
* **one snapshot.** Every row is read in one read transaction (PostgreSQL: repeatable read),
  so the datasets and the KPIs agree with each other.
* **audited.** Each export appends ``analytics.export`` (who, the directory, the days written
  per dataset, the ``since`` asked) to the audit log.

Days are UTC days. ``since``: no day before it is written (a first export of a long history
can start late); the days before it are left as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, Date, Engine
from sqlalchemy.sql.elements import ColumnElement

from medbridge.connectors.analytics import ExportState, ParquetExport
from medbridge.flows.analytics_datasets import FEEDS_KPIS, KPI_SCHEMA, KPIS, Dataset, datasets
from medbridge.observability.daily_kpis import DailyKpis, daily_kpis, day_of, start_of
from medbridge.store import audit as audit_store
from medbridge.store.db import read_only

SETTLE = timedelta(seconds=60)
"""How far before the last watermark changes are read again: a transaction that stamped a row
before the last export began may have committed after it read."""
BATCH_DAYS = 31
"""Days read per query (in memory: one day of rows at a time)."""


@dataclass(frozen=True)
class DatasetReport:
    name: str
    days: tuple[date, ...]
    """The days written (again) by this export."""
    rows: int
    """The rows in those days."""


@dataclass(frozen=True)
class ExportReport:
    directory: str
    as_of: datetime
    since: date | None
    datasets: tuple[DatasetReport, ...]
    duckdb_file: str

    def of(self, name: str) -> DatasetReport:
        return next(d for d in self.datasets if d.name == name)


class AnalyticsExport:
    """``run()`` exports what changed since the last run into ``target``."""

    def __init__(
        self,
        engine: Engine,
        target: ParquetExport,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        settle: timedelta = SETTLE,
    ) -> None:
        self.engine, self.target, self.now, self.settle = engine, target, now, settle
        self.datasets = datasets()

    def run(self, *, actor: str, since: date | None = None) -> ExportReport:
        with self.target.lock():
            return self._run(actor, since)

    def _run(self, actor: str, since: date | None) -> ExportReport:
        as_of = self.now()
        today = day_of(as_of)
        if since is not None and since > today:
            raise ValueError(f"since: {since} is after today ({today})")
        state = self.target.state()
        reports: list[DatasetReport] = []
        touched: set[date] = set()
        with self._snapshot() as conn:
            for dataset in self.datasets:
                days = self._changed_days(conn, dataset, state.watermarks.get(dataset.name))
                days = {d for d in days if since is None or d >= since}
                rows = self._write(conn, dataset, days)
                reports.append(DatasetReport(dataset.name, tuple(sorted(days)), rows))
                if dataset.name in FEEDS_KPIS:
                    touched |= days
            reports.append(self._kpis(conn, state, touched, today, since))
        for name in [*(d.name for d in self.datasets), KPIS]:
            state.watermarks[name] = as_of
        duckdb_file = self.target.write_views(
            {d.name: d.schema for d in self.datasets} | {KPIS: KPI_SCHEMA}
        )
        self.target.save_state(state)
        report = ExportReport(str(self.target.root), as_of, since, tuple(reports), str(duckdb_file))
        self._audit(report, actor)
        return report

    # --- reading ---------------------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """One read transaction for the whole export (PostgreSQL: one repeatable-read
        snapshot; SQLite: one deferred read transaction, a snapshot under WAL)."""
        engine = read_only(self.engine)
        if engine.dialect.name == "postgresql":
            engine = engine.execution_options(isolation_level="REPEATABLE READ")
        with engine.connect() as conn, conn.begin():
            yield conn

    def _changed_days(
        self, conn: Connection, dataset: Dataset, watermark: datetime | None
    ) -> set[date]:
        moved = dataset.mutable and watermark is not None  # a changed row may leave its day
        columns = (dataset.key, dataset.day) if moved else (dataset.day,)
        stmt = dataset.query.with_only_columns(*columns, maintain_column_froms=True).distinct()
        if watermark is not None:
            stmt = stmt.where(dataset.changed >= watermark - self.settle)
        rows = conn.execute(stmt).all()
        days = {_day(r[-1]) for r in rows}
        if watermark is None:  # everything: the days already in the directory too (a lost state)
            days |= set(self.target.days(dataset.name))
        if moved and rows:
            keys = [str(r[0]) for r in rows]
            days |= self.target.days_holding(dataset.name, dataset.key.name, keys)
        return days

    def _write(self, conn: Connection, dataset: Dataset, days: Iterable[date]) -> int:
        """Each of ``days`` written whole; rows come ordered by day, so one day at a time is
        held in memory."""
        written = 0
        wanted = set(days)

        def flush(day: date, rows: list[dict[str, Any]]) -> int:
            table = pa.Table.from_pylist(rows, schema=dataset.schema)
            return self.target.replace_day(dataset.name, day, table)

        for batch in _batches(sorted(wanted)):
            stmt = (
                dataset.query.add_columns(dataset.day.label("_day"))
                .where(*_within(dataset.day, batch[0], batch[-1]))
                .order_by(dataset.day, dataset.key)
            )
            pending = set(batch)
            current: date | None = None
            rows: list[dict[str, Any]] = []
            for r in conn.execute(stmt.execution_options(yield_per=5000)):
                day = _day(r._mapping["_day"])
                if day not in wanted:
                    continue
                if day != current:
                    if day not in pending:  # written already: a day must never be cut in two
                        raise RuntimeError(f"{dataset.name}: rows of {day} not read together")
                    if current is not None:
                        written += flush(current, rows)
                        pending.discard(current)
                    current, rows = day, []
                rows.append(dataset.shape(r._mapping))
            if current is not None:
                written += flush(current, rows)
                pending.discard(current)
            for day in sorted(pending):  # no row left: the day goes
                written += flush(day, [])
        return written

    def _kpis(
        self,
        conn: Connection,
        state: ExportState,
        touched: set[date],
        today: date,
        since: date | None,
    ) -> DatasetReport:
        last = state.watermarks.get(KPIS)
        starts = set(touched) | ({day_of(last)} if last is not None else set())
        if last is None:  # everything: from the first day already in the directory too
            starts |= set(self.target.days(KPIS)[:1])
        if not starts:
            return DatasetReport(KPIS, (), 0)
        first = min(starts) if since is None else max(min(starts), since)
        written, days = 0, []
        for batch in _batches(_days(first, today)):
            by_day: dict[date, list[DailyKpis]] = defaultdict(list)
            for k in daily_kpis(conn, batch[0], batch[-1]):
                by_day[k.day].append(k)
            for day in batch:
                rows = [k.model_dump(exclude={"day"}) for k in by_day.get(day, [])]
                table = pa.Table.from_pylist(rows, schema=KPI_SCHEMA)
                written += self.target.replace_day(KPIS, day, table)
                days.append(day)
        return DatasetReport(KPIS, tuple(days), written)

    def _audit(self, report: ExportReport, actor: str) -> None:
        detail = {
            "as_of": report.as_of.isoformat(),
            "since": report.since.isoformat() if report.since else None,
            "datasets": {
                d.name: {
                    "first_day": d.days[0].isoformat() if d.days else None,
                    "last_day": d.days[-1].isoformat() if d.days else None,
                    "days": len(d.days),
                    "rows": d.rows,
                }
                for d in report.datasets
            },
        }
        with self.engine.begin() as conn:
            audit_store.append(
                conn,
                actor=actor,
                action="analytics.export",
                target_type="analytics_export",
                target_id=report.directory,
                detail=detail,
            )


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return day_of(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value
    text = str(value)  # a driver answering a date as text
    return date.fromisoformat(text[:10])


def _within(column: ColumnElement[Any], first: date, last: date) -> list[ColumnElement[bool]]:
    if isinstance(column.type, Date):
        return [column >= first, column <= last]
    return [column >= start_of(first), column < start_of(last + timedelta(days=1))]


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _batches(days: Sequence[date]) -> list[list[date]]:
    """Consecutive runs of sorted ``days``, each spanning at most ``BATCH_DAYS`` days."""
    batches: list[list[date]] = []
    for day in days:
        if batches and (day - batches[-1][0]).days < BATCH_DAYS:
            batches[-1].append(day)
        else:
            batches.append([day])
    return batches
