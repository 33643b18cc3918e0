"""Contract terms beyond the ``contracts`` row: price tiers, and the one-contract-at-a-time
rule (two contracts of the same supplier, item and unit never valid on the same day, so that
a price is never ambiguous). Used by ``MasterDataRepository.save_contract`` / ``contracts``
in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from medbridge.canonical.masterdata import Contract, PriceTier
from medbridge.store import audit
from medbridge.store.sql import chunks
from medbridge.store.tables import contract_price_tiers as tiers_table
from medbridge.store.tables import contracts, item_packs, items, suppliers


def unknown_reference(conn: Connection, contract: Contract) -> tuple[str, str] | None:
    """(field, message) of what master data does not know: the supplier, the item, or the
    unit among the item's (its base unit and packs); None when all are known.

    On PostgreSQL the supplier's row is locked for the transaction: two writers of the same
    supplier's contracts take turns, so the overlap check of one sees the other's contract
    (SQLite serializes every writer already)."""
    query = select(suppliers.c.code).where(suppliers.c.code == contract.supplier)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    if conn.execute(query).first() is None:
        return "supplier", f"unknown supplier {contract.supplier!r}"
    base = conn.execute(
        select(items.c.base_unit).where(items.c.code == contract.item)
    ).scalar_one_or_none()
    if base is None:
        return "item", f"unknown item {contract.item!r}"
    units = {
        base,
        *conn.execute(
            select(item_packs.c.unit).where(item_packs.c.item == contract.item)
        ).scalars(),
    }
    if contract.unit not in units:
        return "unit", f"{contract.item} comes in {', '.join(sorted(units))}, not {contract.unit}"
    return None


def overlapping(conn: Connection, contract: Contract) -> Contract | None:
    """Another contract of ``contract``'s supplier, item and unit valid on a day it is."""
    rows = conn.execute(
        select(contracts.c.code, contracts.c.valid_from, contracts.c.valid_to).where(
            contracts.c.supplier == contract.supplier,
            contracts.c.item == contract.item,
            contracts.c.unit == contract.unit,
            contracts.c.code != contract.code,
        )
    )
    for row in rows:
        other = contract.model_copy(
            update={"code": row.code, "valid_from": row.valid_from, "valid_to": row.valid_to}
        )
        if contract.overlaps(other):
            return other
    return None


def overlap_field(contract: Contract, other: Contract) -> str:
    """The field to correct: ``valid_from`` when ``contract`` starts inside ``other``, else
    ``valid_to`` (it runs into ``other``)."""
    starts_inside = other.valid_from <= contract.valid_from and (
        other.valid_to is None or contract.valid_from <= other.valid_to
    )
    return "valid_from" if starts_inside else "valid_to"


def state(conn: Connection, code: str) -> dict[str, Any] | None:
    """The contract's row and its tiers, as the audit log records them."""
    row = audit.row_state(conn, contracts, code=code)
    if row is None:
        return None
    found = conn.execute(
        select(tiers_table.c.minimum_quantity, tiers_table.c.price)
        .where(tiers_table.c.contract == code)
        .order_by(tiers_table.c.minimum_quantity)
    )
    return row | {"tiers": [dict(t._mapping) for t in found]}


def replace_tiers(conn: Connection, contract: Contract) -> None:
    conn.execute(tiers_table.delete().where(tiers_table.c.contract == contract.code))
    if contract.tiers:
        conn.execute(
            tiers_table.insert(),
            [
                {
                    "contract": contract.code,
                    "minimum_quantity": t.minimum_quantity,
                    "price": t.price,
                }
                for t in contract.tiers
            ],
        )


def tiers_of(conn: Connection, codes: Iterable[str]) -> dict[str, tuple[PriceTier, ...]]:
    found: dict[str, list[PriceTier]] = {}
    for chunk in chunks(sorted(set(codes))):
        rows = conn.execute(
            select(tiers_table)
            .where(tiers_table.c.contract.in_(chunk))
            .order_by(tiers_table.c.contract, tiers_table.c.minimum_quantity)
        )
        for r in rows:
            found.setdefault(r.contract, []).append(
                PriceTier(minimum_quantity=r.minimum_quantity, price=r.price)
            )
    return {code: tuple(t) for code, t in found.items()}
