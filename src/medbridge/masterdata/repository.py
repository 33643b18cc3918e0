"""The master data store: write canonical master data, read what the pipeline needs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Engine, select

from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import (
    AccountAssignment,
    AccountRole,
    CodeSystem,
    Contract,
    CostCenter,
    GLAccount,
    Item,
    ItemCategory,
    ItemCode,
    Location,
    LocationKind,
    PackConversion,
    Supplier,
    UnitOfMeasure,
)
from medbridge.domain.posting import AccountMap
from medbridge.masterdata.cache import LocationInfo, MasterDataCache, MasterDataSnapshot, touch
from medbridge.store.sql import chunks, upsert
from medbridge.store.tables import (
    account_assignments,
    contracts,
    cost_center_xrefs,
    cost_centers,
    gl_accounts,
    item_codes,
    item_packs,
    items,
    location_xrefs,
    locations,
    suppliers,
    unit_xrefs,
    units,
)


class MasterDataError(Exception):
    """Master data that cannot be stored as given; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class MasterDataRepository:
    """Writes of master data (each bumps the master-data revision, see ``masterdata.cache``)
    and reads: from the database given a connection, or from memory (``snapshot``)."""

    def __init__(self, engine: Engine, cache: MasterDataCache | None = None) -> None:
        self.engine = engine
        self.cache = cache or MasterDataCache(engine)

    def snapshot(self, *, fresh: bool = False) -> MasterDataSnapshot:
        """Master data and cross-references as of now, from memory (kept fresh on change)."""
        return self.cache.snapshot(fresh=fresh)

    # --- writes ------------------------------------------------------------------------

    def save_units(self, conn: Connection, values: Iterable[UnitOfMeasure]) -> None:
        touch(conn)
        upsert(conn, units, [{"code": u.code, "name": u.name} for u in values], keys=("code",))

    def save_item(self, conn: Connection, item: Item) -> None:
        touch(conn)
        upsert(
            conn,
            items,
            [
                {
                    "code": item.code,
                    "name": item.name,
                    "category": item.category.value,
                    "base_unit": item.base_unit,
                    "strength": item.strength,
                }
            ],
            keys=("code",),
        )
        conn.execute(item_packs.delete().where(item_packs.c.item == item.code))
        if item.packs:
            conn.execute(
                item_packs.insert(),
                [
                    {"item": item.code, "unit": p.unit, "factor": p.factor, "gtin": p.gtin}
                    for p in item.packs
                ],
            )
        for code in item.codes:
            self.link_code(conn, item.code, code)

    def link_code(self, conn: Connection, item: str, code: ItemCode) -> None:
        """Cross-reference an external code to an item (a code maps to one item only)."""
        touch(conn)
        row = {"system": code.system.value, "issuer": code.issuer or "", "code": code.code}
        current = conn.execute(select(item_codes.c.item).filter_by(**row)).scalar_one_or_none()
        if current is not None and current != item:
            raise MasterDataError(
                "codes", f"{code.system.value} {code.code} already maps to {current}"
            )
        upsert(conn, item_codes, [{**row, "item": item}], keys=("system", "issuer", "code"))

    def save_cost_center(self, conn: Connection, center: CostCenter) -> None:
        touch(conn)
        upsert(conn, cost_centers, [center.model_dump(mode="json")], keys=("code",))

    def save_location(self, conn: Connection, location: Location) -> None:
        touch(conn)
        facility: str | None = None
        if location.kind is LocationKind.FACILITY:
            facility = location.code
        elif location.parent is not None:
            parent = conn.execute(
                select(locations.c.kind, locations.c.facility).where(
                    locations.c.code == location.parent
                )
            ).first()
            if parent is None:
                raise MasterDataError("parent", f"parent location {location.parent} is unknown")
            facility = parent.facility
        row = location.model_dump(mode="json") | {"facility": facility}
        upsert(conn, locations, [row], keys=("code",))

    def save_gl_account(self, conn: Connection, account: GLAccount) -> None:
        touch(conn)
        upsert(conn, gl_accounts, [account.model_dump(mode="json")], keys=("code",))

    def assign_account(self, conn: Connection, assignment: AccountAssignment) -> None:
        touch(conn)
        upsert(
            conn,
            account_assignments,
            [assignment.model_dump(mode="json")],
            keys=("facility", "role"),
        )

    def save_supplier(self, conn: Connection, supplier: Supplier) -> None:
        touch(conn)
        upsert(conn, suppliers, [supplier.model_dump(mode="json")], keys=("code",))

    def save_contract(self, conn: Connection, contract: Contract) -> None:
        touch(conn)
        row = contract.model_dump(exclude={"price"}) | {
            "price": contract.price.amount,
            "currency": contract.price.currency,
        }
        upsert(conn, contracts, [row], keys=("code",))

    # --- reads -------------------------------------------------------------------------

    def items(self, conn: Connection, codes: Iterable[str]) -> dict[str, Item]:
        wanted = sorted(set(codes))
        found: dict[str, dict[str, object]] = {}
        packs: dict[str, list[PackConversion]] = {}
        for chunk in chunks(wanted):
            for row in conn.execute(select(items).where(items.c.code.in_(chunk))):
                found[row.code] = dict(row._mapping)
            for row in conn.execute(select(item_packs).where(item_packs.c.item.in_(chunk))):
                packs.setdefault(row.item, []).append(
                    PackConversion(unit=row.unit, factor=row.factor, gtin=row.gtin)
                )
        return {
            code: Item(
                code=code,
                name=str(row["name"]),
                category=ItemCategory(str(row["category"])),
                base_unit=str(row["base_unit"]),
                strength=row["strength"],
                packs=tuple(packs.get(code, ())),
            )
            for code, row in found.items()
        }

    def item_by_code(
        self, conn: Connection, system: CodeSystem, code: str, issuer: str = ""
    ) -> str | None:
        return conn.execute(
            select(item_codes.c.item).where(
                item_codes.c.system == system.value,
                item_codes.c.issuer == issuer,
                item_codes.c.code == code,
            )
        ).scalar_one_or_none()

    def locations(self, conn: Connection, codes: Iterable[str]) -> dict[str, LocationInfo]:
        result: dict[str, LocationInfo] = {}
        for chunk in chunks(sorted(set(codes))):
            for row in conn.execute(select(locations).where(locations.c.code.in_(chunk))):
                result[row.code] = LocationInfo(
                    row.code, LocationKind(row.kind), row.facility, row.cost_center
                )
        return result

    def suppliers(self, conn: Connection) -> dict[str, Supplier]:
        return {
            r.code: Supplier(
                code=r.code, name=r.name, status=r.status, lead_time_days=r.lead_time_days
            )
            for r in conn.execute(select(suppliers))
        }

    def contracts(self, conn: Connection, items: Iterable[str] | None = None) -> list[Contract]:
        stmt = select(contracts).order_by(contracts.c.code)
        if items is not None:
            stmt = stmt.where(contracts.c.item.in_(sorted(set(items))))
        return [
            Contract(
                code=r.code,
                supplier=r.supplier,
                item=r.item,
                unit=r.unit,
                price=Money(amount=r.price, currency=r.currency),
                valid_from=r.valid_from,
                valid_to=r.valid_to,
                minimum_order_quantity=r.minimum_order_quantity,
            )
            for r in conn.execute(stmt)
        ]

    def account_map(self, conn: Connection) -> AccountMap:
        return {
            (row.facility, AccountRole(row.role)): row.account
            for row in conn.execute(select(account_assignments))
        }


class CrossReferences:
    """Writes of the per-source cross-references (location, cost center, unit)."""

    @staticmethod
    def map_location(conn: Connection, source_system: str, code: str, location: str) -> None:
        touch(conn)
        upsert(
            conn,
            location_xrefs,
            [{"source_system": source_system, "code": code, "location": location}],
            keys=("source_system", "code"),
        )

    @staticmethod
    def map_cost_center(conn: Connection, source_system: str, code: str, cost_center: str) -> None:
        touch(conn)
        upsert(
            conn,
            cost_center_xrefs,
            [{"source_system": source_system, "code": code, "cost_center": cost_center}],
            keys=("source_system", "code"),
        )

    @staticmethod
    def map_unit(conn: Connection, source_system: str, code: str, unit: str) -> None:
        touch(conn)
        upsert(
            conn,
            unit_xrefs,
            [{"source_system": source_system, "code": code, "unit": unit}],
            keys=("source_system", "code"),
        )
