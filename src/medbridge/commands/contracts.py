"""``medbridge contracts``: supplier contracts with their price tiers, and the price changes
partners' 832 catalogs proposed (``proposals``: applied, pending a procurement task, decided,
or reported for review)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from medbridge.app import MedBridge
from medbridge.flows import contract_catalog
from medbridge.flows.contract_catalog import ProposalStatus
from medbridge.runtime.policies import catalog_policy
from medbridge.settings import Settings
from medbridge.store import audit, contract_proposals

app = typer.Typer(help="Supplier contracts and 832 catalog price proposals.", no_args_is_help=True)
console = Console()


def _cells(*values: object) -> list[Text]:
    return [Text("" if v is None else str(v)) for v in values]  # no Rich markup in data


@app.command("list")
def contracts_list(
    supplier: Annotated[str | None, typer.Option(help="Only this supplier's.")] = None,
    item: Annotated[str | None, typer.Option(help="Only this item's.")] = None,
    valid_on: Annotated[str | None, typer.Option(help="Only those valid that day (ISO).")] = None,
) -> None:
    """Contracts, in code order, with their price tiers."""
    try:
        day = date.fromisoformat(valid_on) if valid_on else None
    except ValueError:
        raise typer.BadParameter(
            f"{valid_on!r} is not a date (YYYY-MM-DD)", param_hint="--valid-on"
        ) from None
    mb = MedBridge.build(Settings())
    try:
        with mb.engine.connect() as conn:
            found = mb.masterdata.contracts(conn, None if item is None else [item])
    finally:
        mb.close()
    chosen = [
        c
        for c in found
        if (supplier is None or c.supplier == supplier) and (day is None or c.valid_on(day))
    ]
    table = Table("code", "supplier", "item", "unit", "price", "tiers", "valid")
    for c in chosen:
        tiers = ", ".join(f"{t.minimum_quantity}+ {t.price}" for t in c.tiers)
        valid = f"{c.valid_from} to {c.valid_to or '(open)'}"
        table.add_row(*_cells(c.code, c.supplier, c.item, c.unit, c.price.amount, tiers, valid))
    console.print(table)
    console.print(f"{len(chosen)} contract(s)")


@app.command("proposals")
def proposals(
    status: Annotated[ProposalStatus | None, typer.Option(help="Only this status.")] = None,
    partner: Annotated[str | None, typer.Option(help="Only this supplier's catalogs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 200,
) -> None:
    """What partners' 832 catalogs proposed, newest first."""
    mb = MedBridge.build(Settings())
    try:
        with mb.engine.connect() as conn:
            found = contract_proposals.listing(
                conn,
                status=None if status is None else status.value,
                partner=partner,
                limit=limit,
            )
    finally:
        mb.close()
    table = Table("id", "status", "partner", "catalog", "item", "contract", "price", "task", "why")
    for p in found:
        change = f"{p['current_price']} -> {p['proposed_price']}" if p["proposed_price"] else ""
        table.add_row(
            *_cells(
                p["id"],
                p["status"],
                p["partner"],
                f"{p['catalog_number']} line {p['line']}",
                p["item"] or p["partner_item"],
                p["contract"],
                change,
                p["task_id"],
                p["reason"],
            )
        )
    console.print(table)
    console.print(f"{len(found)} proposal(s)")


@app.command("reread")
def reread(proposal_id: int) -> None:
    """Read a catalog line reported for review (unknown item, no contract, no price) again,
    once master data knows it."""
    mb = MedBridge.build(Settings())
    try:
        ids = contract_catalog.ContractCatalog(
            mb.engine, mb.masterdata, catalog_policy(mb.settings)
        ).reread(proposal_id, actor=audit.cli_actor())
        with mb.engine.connect() as conn:
            rows = [contract_proposals.get(conn, i) or {} for i in ids]
    except (contract_catalog.ProposalNotFound, contract_catalog.NotRereadable) as error:
        Console(stderr=True).print(str(error), markup=False)
        raise typer.Exit(1) from None
    finally:
        mb.close()
    for row in rows:
        console.print(f"{row.get('id')}: {row.get('status')}, {row.get('reason')}", markup=False)
