"""The master data store: write canonical master data, read what the pipeline needs.

Every write records one audit row in its transaction (``store.audit``) with the state of
the row before and after, when it changed something; ``actor`` says who wrote (an API
client, ``cli:<user>``, or ``system:<component>`` for the seed and the ERP sync)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, select

from medbridge.canonical.base import Money
from medbridge.canonical.codes import CodeError, NdcShape, ndc_readings, normalize_ndc
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
from medbridge.masterdata import contracts as contract_terms
from medbridge.masterdata.cache import LocationInfo, MasterDataCache, MasterDataSnapshot, touch
from medbridge.store import audit
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

SYSTEM = audit.system_actor("masterdata")
"""Who writes when a caller names nobody: code, not a person (tests, benchmarks)."""


def _item_state(conn: Connection, code: str) -> dict[str, Any] | None:
    state = audit.row_state(conn, items, code=code)
    if state is None:
        return None
    packs = conn.execute(
        select(item_packs.c.unit, item_packs.c.factor, item_packs.c.gtin)
        .where(item_packs.c.item == code)
        .order_by(item_packs.c.unit)
    )
    return state | {"packs": [dict(p._mapping) for p in packs]}


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

    def save_units(
        self, conn: Connection, values: Iterable[UnitOfMeasure], *, actor: str = SYSTEM
    ) -> None:
        touch(conn)
        for u in values:
            audit.upsert_audited(
                conn,
                units,
                {"code": u.code, "name": u.name},
                ("code",),
                actor=actor,
                action="masterdata.unit.save",
                target_type="unit",
            )

    def save_item(self, conn: Connection, item: Item, *, actor: str = SYSTEM) -> None:
        """The item and its packs (one audit row); each code is a cross-reference of its own."""
        touch(conn)
        before = _item_state(conn, item.code)
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
        audit.record_change(
            conn,
            actor=actor,
            action="masterdata.item.save",
            target_type="item",
            target_id=item.code,
            before=before,
            after=_item_state(conn, item.code),
        )
        for code in item.codes:
            self.link_code(conn, item.code, code, actor=actor)

    def link_code(
        self,
        conn: Connection,
        item: str,
        code: ItemCode,
        *,
        actor: str = SYSTEM,
        replace: bool = False,
    ) -> None:
        """Cross-reference an external code to an item (a code maps to one item only; one
        that maps to another item already is refused unless ``replace``: a wrong mapping
        corrected, audited with the item it mapped to before)."""
        touch(conn)
        row = {"system": code.system.value, "issuer": code.issuer or "", "code": code.code}
        if not conn.execute(select(items.c.code).where(items.c.code == item)).first():
            raise MasterDataError("item", f"unknown item {item!r}")
        current = conn.execute(select(item_codes.c.item).filter_by(**row)).scalar_one_or_none()
        if current is not None and current != item and not replace:
            raise MasterDataError(
                "codes",
                f"{code.system.value} {code.code} already maps to {current}"
                " (replace it to correct a wrong mapping)",
            )
        audit.upsert_audited(
            conn,
            item_codes,
            {**row, "item": item},
            ("system", "issuer", "code"),
            actor=actor,
            action="xref.item_code.link",
            target_type="item_code",
        )

    def item_ndc(self, conn: Connection, item: str, raw: str, shape: NdcShape | None = None) -> str:
        """The 11-digit NDC meant by ``raw`` for ``item``: an undashed 10-digit code (shape
        lost) is read in the one shape whose labeler is one of the item's other NDCs' (or
        ``shape`` as given); MasterDataError naming ``code`` if none or several fit."""
        if shape is not None:
            try:
                return normalize_ndc(raw, shape)
            except CodeError as error:
                raise MasterDataError("code", str(error)) from None
        try:
            readings = ndc_readings(raw)
        except CodeError as error:
            raise MasterDataError("code", str(error)) from None
        if len(readings) == 1:
            return next(iter(readings.values()))
        known = conn.execute(
            select(item_codes.c.code).where(
                item_codes.c.item == item, item_codes.c.system == CodeSystem.NDC.value
            )
        ).scalars()
        labelers = {code[:5] for code in known}
        fits = {ndc for ndc in readings.values() if ndc[:5] in labelers}
        if len(fits) == 1:
            return fits.pop()
        why = "several of its shapes" if fits else "none of its shapes"
        raise MasterDataError(
            "code",
            f"NDC {raw!r}: an undashed 10-digit NDC is ambiguous (4-4-2, 5-3-2 or 5-4-1) and"
            f" {why} share a labeler with {item}'s NDCs; give it dashed or name its shape",
        )

    def unlink_code(self, conn: Connection, code: ItemCode, *, actor: str = SYSTEM) -> str | None:
        """Remove a code's cross-reference (audited); the item it mapped to, or None if it
        mapped to none. Messages carrying the code are parked for review again."""
        touch(conn)
        row: dict[str, Any] = {
            "system": code.system.value,
            "issuer": code.issuer or "",
            "code": code.code,
        }
        before = audit.row_state(conn, item_codes, **row)
        if before is None:
            return None
        conn.execute(item_codes.delete().filter_by(**row))
        audit.record_change(
            conn,
            actor=actor,
            action="xref.item_code.unlink",
            target_type="item_code",
            target_id="/".join((row["system"], row["issuer"], row["code"])),
            before=before,
            after=None,
        )
        return str(before["item"])

    def save_cost_center(
        self, conn: Connection, center: CostCenter, *, actor: str = SYSTEM
    ) -> None:
        touch(conn)
        audit.upsert_audited(
            conn,
            cost_centers,
            center.model_dump(mode="json"),
            ("code",),
            actor=actor,
            action="masterdata.cost_center.save",
            target_type="cost_center",
        )

    def save_location(self, conn: Connection, location: Location, *, actor: str = SYSTEM) -> None:
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
        audit.upsert_audited(
            conn,
            locations,
            row,
            ("code",),
            actor=actor,
            action="masterdata.location.save",
            target_type="location",
        )
        follow_facility(conn, location.code, facility, actor=actor)

    def save_gl_account(self, conn: Connection, account: GLAccount, *, actor: str = SYSTEM) -> None:
        touch(conn)
        audit.upsert_audited(
            conn,
            gl_accounts,
            account.model_dump(mode="json"),
            ("code",),
            actor=actor,
            action="masterdata.gl_account.save",
            target_type="gl_account",
        )

    def assign_account(
        self, conn: Connection, assignment: AccountAssignment, *, actor: str = SYSTEM
    ) -> None:
        touch(conn)
        audit.upsert_audited(
            conn,
            account_assignments,
            assignment.model_dump(mode="json"),
            ("facility", "role"),
            actor=actor,
            action="masterdata.account_assignment.save",
            target_type="account_assignment",
        )

    def save_supplier(self, conn: Connection, supplier: Supplier, *, actor: str = SYSTEM) -> None:
        touch(conn)
        audit.upsert_audited(
            conn,
            suppliers,
            supplier.model_dump(mode="json"),
            ("code",),
            actor=actor,
            action="masterdata.supplier.save",
            target_type="supplier",
        )

    def save_contract(
        self,
        conn: Connection,
        contract: Contract,
        *,
        actor: str = SYSTEM,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """The contract and its price tiers (one audit row, ``detail`` added to it: e.g. the
        catalog a price came from). MasterDataError naming ``supplier``, ``item`` or ``unit``
        when master data does not know them (the unit: not one of the item's), naming
        ``valid_from`` or ``valid_to`` when another contract of the same supplier, item and
        unit is valid on one of its days."""
        problem = contract_terms.unknown_reference(conn, contract)
        if problem is not None:
            raise MasterDataError(*problem)
        other = contract_terms.overlapping(conn, contract)
        if other is not None:
            until = other.valid_to.isoformat() if other.valid_to else "open-ended"
            raise MasterDataError(
                contract_terms.overlap_field(contract, other),
                f"contract {contract.code} overlaps contract {other.code} of {contract.supplier}"
                f" for {contract.item} in {contract.unit} ({other.valid_from.isoformat()} to"
                f" {until}): one contract per supplier, item and unit on any day",
            )
        touch(conn)
        before = contract_terms.state(conn, contract.code)
        row = contract.model_dump(exclude={"price", "tiers"}) | {
            "price": contract.price.amount,
            "currency": contract.price.currency,
        }
        upsert(conn, contracts, [row], keys=("code",))
        contract_terms.replace_tiers(conn, contract)
        audit.record_change(
            conn,
            actor=actor,
            action="masterdata.contract.save",
            target_type="contract",
            target_id=contract.code,
            before=before,
            after=contract_terms.state(conn, contract.code),
            detail=detail,
        )

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
        rows = list(conn.execute(stmt))
        tiers = contract_terms.tiers_of(conn, [r.code for r in rows])
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
                tiers=tiers.get(r.code, ()),
            )
            for r in rows
        ]

    def account_map(self, conn: Connection) -> AccountMap:
        return {
            (row.facility, AccountRole(row.role)): row.account
            for row in conn.execute(select(account_assignments))
        }


class CrossReferences:
    """Writes of the per-source cross-references (location, cost center, unit)."""

    @staticmethod
    def map_location(
        conn: Connection, source_system: str, code: str, location: str, *, actor: str = SYSTEM
    ) -> None:
        touch(conn)
        audit.upsert_audited(
            conn,
            location_xrefs,
            {"source_system": source_system, "code": code, "location": location},
            ("source_system", "code"),
            actor=actor,
            action="xref.location.map",
            target_type="location_xref",
        )

    @staticmethod
    def map_cost_center(
        conn: Connection, source_system: str, code: str, cost_center: str, *, actor: str = SYSTEM
    ) -> None:
        touch(conn)
        audit.upsert_audited(
            conn,
            cost_center_xrefs,
            {"source_system": source_system, "code": code, "cost_center": cost_center},
            ("source_system", "code"),
            actor=actor,
            action="xref.cost_center.map",
            target_type="cost_center_xref",
        )

    @staticmethod
    def map_unit(
        conn: Connection, source_system: str, code: str, unit: str, *, actor: str = SYSTEM
    ) -> None:
        touch(conn)
        audit.upsert_audited(
            conn,
            unit_xrefs,
            {"source_system": source_system, "code": code, "unit": unit},
            ("source_system", "code"),
            actor=actor,
            action="xref.unit.map",
            target_type="unit_xref",
        )


def follow_facility(conn: Connection, code: str, facility: str | None, *, actor: str) -> None:
    """The locations under ``code`` take its facility (a store moved to another facility:
    its bins move with it), each change audited; a facility below starts its own."""
    parents = [code]
    while parents:
        below = conn.execute(
            select(locations).where(locations.c.parent.in_(parents)).order_by(locations.c.code)
        ).all()
        parents = []
        for child in below:
            if child.kind == LocationKind.FACILITY.value:
                continue
            parents.append(child.code)
            if child.facility != facility:
                audit.upsert_audited(
                    conn,
                    locations,
                    dict(child._mapping) | {"facility": facility},
                    ("code",),
                    actor=actor,
                    action="masterdata.location.save",
                    target_type="location",
                )
