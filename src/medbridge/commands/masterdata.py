"""``medbridge import items FILE [--dry-run]``: a bulk import of master data (the column
layout in ``masterdata.importer``; README "Onboarding master data")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medbridge.masterdata.importer import ImportReport, import_items
from medbridge.masterdata.row_import import KINDS, import_rows
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


FileArgument = Annotated[Path, typer.Argument(help="A .csv (UTF-8, header row) or .xlsx file.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Validate and count; write nothing.")]


def _import(kind: str, file: Path, dry_run: bool) -> None:
    """Import (all or nothing): every problem is listed with its row (the header is row 1)
    and column, and then nothing is written (exit 1)."""
    from medbridge.cli import _build  # the command's own MedBridge (cli imports this module)

    data = file.read_bytes()
    mb = _build()
    try:
        if kind == "items":
            report = import_items(mb.engine, file.name, data, actor=cli_actor(), dry_run=dry_run)
        else:
            report = import_rows(
                mb.engine, kind, file.name, data, actor=cli_actor(), dry_run=dry_run
            )
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


@app.command("items")
def items_command(file: FileArgument, dry_run: DryRun = False) -> None:
    """Import items: code, name, category, base_unit, strength, ndc, gtin, packs
    (UNIT:FACTOR[:GTIN];...), supplier_skus and erp_ids and local_codes (ISSUER:CODE;...).
    All or nothing; problems named by row (header = row 1) and column (exit 1)."""
    _import("items", file, dry_run)


def _row_command(kind: str) -> None:
    columns = ", ".join(KINDS[kind].columns)

    def command(file: FileArgument, dry_run: DryRun = False) -> None:
        _import(kind, file, dry_run)

    command.__doc__ = (
        f"Import {kind}: {columns}. All or nothing; problems named by row (header = row 1)"
        " and column (exit 1)."
    )
    app.command(kind)(command)


for _kind in KINDS:
    _row_command(_kind)
