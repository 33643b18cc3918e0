"""``medbridge close PERIOD``: the period close (``flows.period_close``) from the command line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medbridge.app import MedBridge
from medbridge.canonical.erp import ErpPort
from medbridge.demo.wiring import running_demo_erp
from medbridge.domain.close_report import report_html
from medbridge.domain.period_close import (
    CloseReport,
    PeriodError,
    UnforcedDifferences,
    report_csv,
)
from medbridge.flows.period_close import PeriodClose
from medbridge.store.audit import cli_actor

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    errors.print(f"medbridge: {message}", markup=False, highlight=False, style="red")
    return typer.Exit(2)


def _adapters(mb: MedBridge) -> Callable[[str], ErpPort | None]:
    """Each destination's adapter (the primary one: else the running demo's ERP), built once."""
    built: dict[str, ErpPort | None] = {}

    def erp_of(name: str) -> ErpPort | None:
        if name not in built:
            slot = mb.erp_slots[name]
            if slot.config is None and slot is mb.erp_slot:
                demo = running_demo_erp(mb.settings)
                if demo is not None:
                    slot.attach(demo)
            built[name] = mb.erp(name)
        return built[name]

    return erp_of


def _print(report: CloseReport) -> None:
    table = Table("kind", "facility", "account", "amount", "owner", "reference", "detail")
    for d in report.differences:
        table.add_row(
            d.kind, d.facility or "", d.account or "", str(d.amount), d.owner, d.reference, d.detail
        )
    if report.differences:
        console.print(table)
    grni = sum((g.amount for g in report.grni), start=0)
    ppv = sum((p.amount for p in report.ppv), start=0)
    erps = ", ".join(f"{e.destination}: {e.status}" for e in report.erps) or "none"
    console.print(
        f"{report.period} as of {report.cutoff.isoformat()}: GRNI accrual {grni} on"
        f" {len(report.grni)} order line(s), PPV {ppv}, ERPs {erps},"
        f" {report.late_entries} late entr{'y' if report.late_entries == 1 else 'ies'},"
        f" {len(report.differences)} difference(s)",
        markup=False,
        highlight=False,
    )


def make_close(build: Callable[[], MedBridge]) -> Callable[..., None]:
    """The ``close`` command, building MedBridge with ``build`` (the CLI's settings)."""

    def close(
        period: Annotated[str, typer.Argument(help="YYYY-MM")],
        cutoff: Annotated[
            str | None,
            typer.Option(help="ISO 8601 moment with zone in the period (default: its end)."),
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="The report only: lock nothing.")
        ] = False,
        force: Annotated[
            bool, typer.Option("--force", help="Close despite differences (needs --reason).")
        ] = False,
        reason: Annotated[
            str | None, typer.Option(help="Why it is closed with differences (audited).")
        ] = None,
        csv_file: Annotated[
            Path | None, typer.Option("--csv", help="Write the report as CSV here.")
        ] = None,
        html_file: Annotated[
            Path | None, typer.Option("--html", help="Write the report as HTML here.")
        ] = None,
    ) -> None:
        """Close an accounting period: GRNI accrual and PPV reports, stock valuation vs GL
        inventory per facility, each ERP reconciled; then the period is locked (a late event
        of it posts to the next open period, with a note). A close that finds differences is
        refused unless --force --reason (finance decides). Exit 1 when refused for them."""
        if force and not (reason or "").strip():
            raise _fail("--force needs --reason")
        moment: datetime | None = None
        if cutoff is not None:
            try:
                moment = datetime.fromisoformat(cutoff)
            except ValueError:
                raise _fail(f"--cutoff: {cutoff!r} is not an ISO 8601 moment") from None
        mb = build()
        closer = PeriodClose(mb.engine, list(mb.erp_slots), _adapters(mb))
        try:
            with errors.status(f"closing {period}" if not dry_run else f"reading {period}"):
                report = closer.close(
                    period,
                    actor=cli_actor(),
                    cutoff=moment,
                    force_reason=reason if force else None,
                    dry_run=dry_run,
                )
        except UnforcedDifferences as error:
            _print(error.report)
            errors.print(f"medbridge: {error}", markup=False, highlight=False, style="red")
            raise typer.Exit(1) from None
        except PeriodError as error:
            raise _fail(str(error)) from None
        _print(report)
        if csv_file is not None:
            csv_file.write_text(report_csv(report), encoding="utf-8")
        if html_file is not None:
            html_file.write_text(report_html(report, "open" if dry_run else "closed"), "utf-8")
        verb = "would close" if dry_run else "closed"
        console.print(f"{period} {verb}", markup=False, highlight=False)

    return close
