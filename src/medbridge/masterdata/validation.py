"""Validation of inbound stock movements against master data, before anything is stored.

Every problem is reported with the path of the field at fault (``[index, "item"]``), so that
an API answers 422 naming it, and a connector can build its protocol's negative ack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from medbridge.canonical.masterdata import Item, LocationKind
from medbridge.canonical.movements import StockMovement
from medbridge.domain.errors import UnknownUnit
from medbridge.domain.units import base_factor
from medbridge.masterdata.cache import LocationInfo, MasterDataSnapshot
from medbridge.masterdata.repository import MasterDataRepository

STOCK_HOLDING = {LocationKind.STORE, LocationKind.BIN}
"""Stock is held in stores and bins, not at a facility or network as a whole."""


@dataclass(frozen=True)
class FieldProblem:
    index: int
    field: str
    message: str


@dataclass(frozen=True)
class ResolvedMovements:
    movements: Sequence[StockMovement]
    items: dict[str, Item]
    locations: dict[str, LocationInfo]


class MasterDataView(Protocol):
    """What validation reads (a ``MasterDataSnapshot`` is one)."""

    def items(self, codes: Iterable[str]) -> dict[str, Item]: ...

    def locations(self, codes: Iterable[str]) -> dict[str, LocationInfo]: ...

    def cost_centers(self, codes: Iterable[str]) -> set[str]: ...


def check_movements(
    view: MasterDataView, movements: Sequence[StockMovement]
) -> tuple[ResolvedMovements, list[FieldProblem]]:
    """Resolve the movements' item and locations; list every problem found."""
    items = view.items(m.item for m in movements)
    location_codes = {m.location for m in movements} | {
        m.to_location for m in movements if m.to_location
    }
    locs = view.locations(location_codes)
    centers = view.cost_centers(m.cost_center for m in movements if m.cost_center)
    problems: list[FieldProblem] = []
    for i, m in enumerate(movements):
        item = items.get(m.item)
        if item is None:
            problems.append(FieldProblem(i, "item", f"unknown item {m.item!r}"))
        else:
            try:
                base_factor(item, m.unit)
            except UnknownUnit as error:
                problems.append(FieldProblem(i, "unit", str(error)))
        for field, code in (("location", m.location), ("to_location", m.to_location)):
            if code is None:
                continue
            info = locs.get(code)
            if info is None:
                problems.append(FieldProblem(i, field, f"unknown location {code!r}"))
            elif info.kind not in STOCK_HOLDING:
                problems.append(
                    FieldProblem(
                        i, field, f"location {code!r} is a {info.kind.value}, not a store or bin"
                    )
                )
        if m.cost_center is not None and m.cost_center not in centers:
            problems.append(
                FieldProblem(i, "cost_center", f"unknown cost center {m.cost_center!r}")
            )
    return ResolvedMovements(movements, items, locs), problems


def check_current(
    repo: MasterDataRepository, movements: Sequence[StockMovement]
) -> tuple[ResolvedMovements, list[FieldProblem], MasterDataSnapshot]:
    """``check_movements`` on the cached master data; a problem is looked at again on a
    snapshot checked against the database now (so that nothing is refused for being stale)."""
    snapshot = repo.snapshot()
    resolved, problems = check_movements(snapshot, movements)
    if problems:
        fresh = repo.snapshot(fresh=True)
        if fresh is not snapshot:
            snapshot = fresh
            resolved, problems = check_movements(snapshot, movements)
    return resolved, problems, snapshot
