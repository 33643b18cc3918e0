"""``medbridge recall LOT``: a lot's trace (as ``GET /v1/lots/{code}/{lot}/trace``), and its
quarantine (``--quarantine --reason``) or release (``--release``), audited as the operating
system user (``cli:<user>``).

Encounter pseudonyms are printed only with ``--encounters`` (whoever runs the command has the
database, but a recall list printed for a meeting should not carry them by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from medbridge.app import MedBridge
from medbridge.flows import recall as flow
from medbridge.flows.ledger_posting import LedgerPosting
from medbridge.store import recall as store
from medbridge.store.audit import cli_actor

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    errors.print(f"medbridge recall: {message}", markup=False, highlight=False)
    return typer.Exit(1)


def _item(mb: MedBridge, lot: str, item: str | None, gtin: str | None) -> str:
    if item and gtin:
        raise _fail("give --item or --gtin, not both")
    code = item or gtin
    if code is not None:
        try:
            return flow.resolve_item(mb.masterdata, code)
        except flow.UnknownItem as error:
            raise _fail(str(error)) from error
    with mb.engine.connect() as conn:
        known = store.items_with_lot(conn, lot)
    if len(known) == 1:
        return known[0]
    if not known:
        raise _fail(f"lot {lot} is known for no item: name it with --item or --gtin")
    raise _fail(f"lot {lot} is known for {', '.join(known)}: name one with --item or --gtin")


def command(build: Callable[[], MedBridge]) -> Callable[..., None]:
    """The ``recall`` command, building MedBridge with ``build`` (the CLI's own)."""

    def recall(
        lot: Annotated[str, typer.Argument(help="The lot number.")],
        item: Annotated[str | None, typer.Option(help="The item code.")] = None,
        gtin: Annotated[str | None, typer.Option(help="A GTIN of the item or a pack.")] = None,
        quarantine: Annotated[
            bool, typer.Option("--quarantine", help="Put the lot in quarantine (needs --reason).")
        ] = False,
        reason: Annotated[str | None, typer.Option(help="Why it is quarantined.")] = None,
        release: Annotated[
            bool, typer.Option("--release", help="Release it; what it held applies now.")
        ] = False,
        note: Annotated[str, typer.Option(help="A note on the release.")] = "",
        encounters: Annotated[
            bool, typer.Option("--encounters", help="Print encounter pseudonyms.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="The trace as JSON.")] = False,
    ) -> None:
        """Where a lot came from, where it is, where it went; quarantine or release it."""
        if not lot or len(lot) > 64 or not lot.isprintable():
            raise _fail("LOT: 1 to 64 printable characters")
        if quarantine and release:
            raise _fail("--quarantine or --release, not both")
        if quarantine and not (reason and reason.strip()):
            raise _fail("--quarantine needs --reason")
        if reason is not None and len(reason) > 500:
            raise _fail("--reason: at most 500 characters")
        mb = build()
        code = _item(mb, lot, item, gtin)
        actor = cli_actor()
        if quarantine:
            assert reason is not None
            changed = flow.quarantine(mb.engine, code, lot, reason.strip(), actor)
            said = "quarantined" if changed else "already in quarantine"
            console.print(f"lot {lot} of {code}: {said}", markup=False, highlight=False)
        elif release:
            posting = LedgerPosting(mb.engine, mb.masterdata, mb.erp_router())
            try:
                done = flow.release(posting, code, lot, actor, note)
            except (flow.NotQuarantined, flow.UnresolvableMovement) as error:
                raise _fail(str(error)) from error
            console.print(
                f"lot {lot} of {code}: released; {len(done.applied)} held movement(s) applied,"
                f" {len(done.refused)} refused (each with a pharmacy task)",
                markup=False,
                highlight=False,
            )
        found = flow.trace(mb.engine, mb.masterdata, code, lot, with_encounters=encounters)
        if as_json:
            console.print_json(json.dumps(found))
            return
        _print(found)

    return recall


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table if rows else f"{title}: none", markup=False, highlight=False)


def _print(t: dict[str, Any]) -> None:
    q = t["quarantine"]
    state = "not quarantined"
    if q is not None:
        state = f"{q['status']} ({q['reason']}, by {q['quarantined_by']} at {q['quarantined_at']})"
    console.print(f"lot {t['lot']} of {t['item']}: {state}", markup=False, highlight=False)
    _table(
        "came from",
        ["received", "location", "quantity", "expiry", "supplier", "PO", "ship notice", "receipt"],
        [
            [
                r["occurred_at"],
                r["location"],
                r["quantity"],
                r["expiry"],
                r["supplier"],
                r["purchase_order"]["reference"] if r["purchase_order"] else None,
                ", ".join(f"{n['partner']} {n['number']}" for n in r["ship_notices"]),
                ", ".join(g["reference"] for g in r["goods_receipts"]),
            ]
            for r in t["came_from"]
        ],
    )
    _table(
        "on hand",
        ["location", "quantity", "expiry"],
        [[r["location"], r["quantity"], r["expiry"]] for r in t["on_hand"]],
    )
    _table(
        "transfers",
        ["at", "from", "to", "quantity"],
        [
            [r["occurred_at"], r["from_location"], r["to_location"], r["quantity"]]
            for r in t["transfers"]
        ],
    )
    encounters = any("encounter_ref" in g for g in t["dispensed"])
    _table(
        "dispensed",
        ["day", "location", "cost center", "kind", "quantity", "events"]
        + (["encounters"] if encounters else []),
        [
            [g["day"], g["location"], g["cost_center"], g["kind"], g["quantity"], g["events"]]
            + ([", ".join(g.get("encounter_ref", []))] if encounters else [])
            for g in t["dispensed"]
        ],
    )
    if t["other_movements"]:
        _table(
            "other movements",
            ["at", "kind", "location", "quantity"],
            [
                [r["occurred_at"], r["kind"], r["location"], r["quantity"]]
                for r in t["other_movements"]
            ],
        )
    if t["held_movements"]:
        _table(
            "held by the quarantine",
            ["at", "kind", "location", "to", "quantity", "status"],
            [
                [h[k] for k in ("occurred_at", "kind", "location", "to_location", "quantity")]
                + [h["status"]]
                for h in t["held_movements"]
            ],
        )
