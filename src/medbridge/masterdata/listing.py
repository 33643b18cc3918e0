"""Reads of master data for the API: one item, location, cost center or supplier as JSON, and
pages of them (keyset by code), and the checks of what a write refers to (a unit, a parent
location, a cost center, a facility), each naming the field at fault."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Connection, Table, select, union

from medbridge.canonical.masterdata import (
    LOCATION_PARENT,
    CostCenter,
    Item,
    Location,
    LocationKind,
)
from medbridge.masterdata.repository import MasterDataError
from medbridge.store.sql import chunks
from medbridge.store.tables import (
    cost_centers,
    item_codes,
    item_packs,
    items,
    locations,
    suppliers,
    units,
)


def _decimal_text(value: Any) -> str:
    return format(value.normalize(), "f") if value is not None else ""


def item_views(conn: Connection, codes: Sequence[str]) -> list[dict[str, Any]]:
    """The items ``codes`` (in that order, unknown ones left out) with packs and codes."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(list(codes)):
        for row in conn.execute(select(items).where(items.c.code.in_(chunk))):
            found[row.code] = dict(row._mapping) | {"packs": [], "codes": []}
        for row in conn.execute(
            select(item_packs).where(item_packs.c.item.in_(chunk)).order_by(item_packs.c.unit)
        ):
            found[row.item]["packs"].append(
                {"unit": row.unit, "factor": _decimal_text(row.factor), "gtin": row.gtin}
            )
        for row in conn.execute(
            select(item_codes)
            .where(item_codes.c.item.in_(chunk))
            .order_by(item_codes.c.system, item_codes.c.issuer, item_codes.c.code)
        ):
            found[row.item]["codes"].append(
                {"system": row.system, "issuer": row.issuer or None, "code": row.code}
            )
    return [found[c] for c in codes if c in found]


def item_page(
    conn: Connection,
    *,
    after: str | None,
    limit: int,
    code: str | None = None,
    ndc: str | None = None,
    gtin: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of items by code (``after``: the last code of the previous page); ``ndc`` and
    ``gtin`` (normalized) match an item's codes, ``gtin`` its packs' too."""
    query = select(items.c.code)
    if code is not None:
        query = query.where(items.c.code == code)
    if ndc is not None:
        query = query.where(
            items.c.code.in_(
                select(item_codes.c.item).where(
                    item_codes.c.system == "ndc", item_codes.c.code == ndc
                )
            )
        )
    if gtin is not None:
        owners = union(
            select(item_codes.c.item.label("item")).where(
                item_codes.c.system == "gtin", item_codes.c.code == gtin
            ),
            select(item_packs.c.item.label("item")).where(item_packs.c.gtin == gtin),
        ).subquery()
        query = query.where(items.c.code.in_(select(owners.c.item)))
    if after is not None:
        query = query.where(items.c.code > after)
    codes = list(conn.execute(query.order_by(items.c.code).limit(limit + 1)).scalars())
    more = len(codes) > limit
    codes = codes[:limit]
    return item_views(conn, codes), (codes[-1] if more and codes else None)


def row_page(
    conn: Connection,
    table: Table,
    *,
    after: str | None,
    limit: int,
    equal: dict[str, Any],
    facilities: Collection[str] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a code-keyed table's rows: ``equal`` filters (None values ignored),
    ``facilities`` (a bound client's) keeps rows of those facilities only."""
    query = select(table)
    for column, value in equal.items():
        if value is not None:
            query = query.where(table.c[column] == value)
    if facilities is not None:
        query = query.where(table.c.facility.in_(sorted(facilities)))
    if after is not None:
        query = query.where(table.c.code > after)
    found = [dict(r._mapping) for r in conn.execute(query.order_by(table.c.code).limit(limit + 1))]
    more = len(found) > limit
    found = found[:limit]
    return found, (found[-1]["code"] if more and found else None)


def one(conn: Connection, table: Table, code: str) -> dict[str, Any] | None:
    row = conn.execute(select(table).where(table.c.code == code)).first()
    return None if row is None else dict(row._mapping)


# --- what a write refers to --------------------------------------------------------------


def check_item(conn: Connection, item: Item) -> None:
    """Its units are known; its pack GTINs are no other item's packs'."""
    wanted = {item.base_unit, *(p.unit for p in item.packs)}
    known = set(conn.execute(select(units.c.code).where(units.c.code.in_(wanted))).scalars())
    if item.base_unit not in known:
        raise MasterDataError("base_unit", f"unknown unit {item.base_unit!r}")
    for pack in item.packs:
        if pack.unit not in known:
            raise MasterDataError("packs", f"unknown unit {pack.unit!r}")
    gtins = [p.gtin for p in item.packs if p.gtin]
    if gtins:
        other = conn.execute(
            select(item_packs.c.item, item_packs.c.gtin).where(
                item_packs.c.gtin.in_(gtins), item_packs.c.item != item.code
            )
        ).first()
        if other is not None:
            raise MasterDataError("packs", f"pack GTIN {other.gtin} is {other.item}'s")


def check_location(conn: Connection, location: Location) -> None:
    """Its parent is known and of the kind above its own; its cost center is known."""
    if location.parent is not None:
        kind = conn.execute(
            select(locations.c.kind).where(locations.c.code == location.parent)
        ).scalar_one_or_none()
        if kind is None:
            raise MasterDataError("parent", f"unknown location {location.parent!r}")
        wanted = LOCATION_PARENT[location.kind]
        if wanted is not None and kind != wanted.value:
            raise MasterDataError(
                "parent",
                f"a {location.kind.value}'s parent is a {wanted.value}, {location.parent} is a"
                f" {kind}",
            )
        if location.parent == location.code:
            raise MasterDataError("parent", "a location is not its own parent")
    if location.cost_center is not None and one(conn, cost_centers, location.cost_center) is None:
        raise MasterDataError("cost_center", f"unknown cost center {location.cost_center!r}")


def check_cost_center(conn: Connection, center: CostCenter) -> None:
    """Its facility is a known location of kind facility."""
    kind = conn.execute(
        select(locations.c.kind).where(locations.c.code == center.facility)
    ).scalar_one_or_none()
    if kind != LocationKind.FACILITY.value:
        raise MasterDataError("facility", f"{center.facility!r} is no known facility")


__all__ = [
    "check_cost_center",
    "check_item",
    "check_location",
    "cost_centers",
    "item_page",
    "item_views",
    "locations",
    "one",
    "row_page",
    "suppliers",
]
