"""``medbridge import items FILE [--dry-run]``: a bulk import of master data (the column
layout in ``masterdata.importer``; README "Onboarding master data")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medbridge.masterdata.importer import ImportReport, import_items
from medbridge.masterdata.tabular import ImportRejected
from medbridge.store.audit import cli_actor

app = typer.Typer(help="Import master data from a CSV or XLSX file.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


def _print(report: ImportReport) -> None:
    done = (
        "dry run: nothing written"
        if report.dry_run
        else "imported"
        if report.new or report.changed
        else "nothing to change"
    )
    table = Table(title=f"{report.file} ({done})")
    for column in ("rows", "new", "changed", "unchanged", "codes added"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            str(v)
            for v in (report.rows, report.new, report.changed, report.unchanged, report.codes_added)
        )
    )
    console.print(table)
    console.print(f"sha256 {report.sha256}", markup=False, highlight=False)


@app.command("items")
def items_command(
    file: Annotated[Path, typer.Argument(help="A .csv (UTF-8, header row) or .xlsx file.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count; write nothing.")
    ] = False,
) -> None:
    """Import items (all or nothing): every problem is listed with its row (the header is
    row 1) and column, and then nothing is written (exit 1)."""
    from medbridge.cli import _build  # the command's own MedBridge (cli imports this module)

    data = file.read_bytes()
    mb = _build()
    try:
        report = import_items(mb.engine, file.name, data, actor=cli_actor(), dry_run=dry_run)
    except ImportRejected as error:
        for problem in error.problems:
            errors.print(f"{file.name}: {problem}", markup=False, highlight=False)
        more = error.total - len(error.problems)
        if more > 0:
            errors.print(f"... and {more} more problems", markup=False, highlight=False)
        errors.print(
            f"{error.total} problem(s) in {file.name}: nothing imported",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1) from None
    finally:
        mb.engine.dispose()
    _print(report)
