"""``medbridge analytics export --to DIR [--since DAY]``: the analytics export
(``flows.analytics_export``) into a directory of Parquet datasets and a DuckDB file."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medbridge.store.audit import cli_actor

app = typer.Typer(help="Analytics: Parquet and DuckDB exports.", no_args_is_help=True)
console = Console()


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a day (YYYY-MM-DD)") from None


@app.command("export")
def export(
    to: Annotated[Path, typer.Option("--to", help="The export directory (created if missing).")],
    since: Annotated[
        str | None, typer.Option(help="Write no day before this one (YYYY-MM-DD, UTC).")
    ] = None,
) -> None:
    """Write what changed since the last export to DIR: events, movements, journal lines,
    purchase orders, goods receipts, invoices and daily KPIs as Parquet by day, and
    DIR/medbridge.duckdb with a view per dataset."""
    # pyarrow and duckdb load only for this command; the command's root builds MedBridge
    from medbridge.cli import UsageError, _build
    from medbridge.connectors.analytics import AnalyticsConfig, AnalyticsError, ParquetExport
    from medbridge.flows.analytics_export import AnalyticsExport

    first = _day(since)
    mb = _build()
    try:
        target = ParquetExport(AnalyticsConfig(directory=to))
        report = AnalyticsExport(mb.engine, target).run(actor=cli_actor(), since=first)
    except (AnalyticsError, ValueError) as error:
        raise UsageError(str(error)) from None
    finally:
        mb.engine.dispose()
    table = Table(title=f"analytics export as of {_when(report.as_of)}")
    for column in ("dataset", "days written", "first day", "last day", "rows"):
        table.add_column(column, justify="right" if column in ("days written", "rows") else "left")
    for d in report.datasets:
        first_day = d.days[0].isoformat() if d.days else "-"
        last_day = d.days[-1].isoformat() if d.days else "-"
        table.add_row(d.name, str(len(d.days)), first_day, last_day, str(d.rows))
    console.print(table)
    typer.echo(f"DuckDB: {report.duckdb_file}")  # whole, never wrapped: a path to copy


def _when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")
