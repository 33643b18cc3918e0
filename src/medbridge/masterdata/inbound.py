"""Resolution of inbound movements: the source system's codes -> MedBridge's item, location,
unit and cost center, through the cross-references. Every code that does not resolve is
reported (field, value, reason); nothing is guessed.

Items: an NDC in any spelling (an undashed 10-digit NDC is tried in its three shapes and must
match exactly one known item), a GTIN (the item's own or one of its packs', which also gives
the unit), or the source's local code (``item_codes`` with issuer = the source system).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from pydantic import ValidationError
from sqlalchemy import Connection, select

from medbridge.canonical.codes import CodeError, NdcShape, normalize_gtin, normalize_ndc
from medbridge.canonical.inbound import InboundMovement, ItemCodeKind, UnresolvedCode
from medbridge.canonical.masterdata import CodeSystem, Item
from medbridge.canonical.movements import StockMovement
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.store.tables import cost_center_xrefs, item_packs, location_xrefs, unit_xrefs

Unmapped = UnresolvedCode
"""Kept as the resolver's name for an unresolved code."""


class InboundResolver:
    def __init__(self, repo: MasterDataRepository) -> None:
        self.repo = repo

    def resolve(
        self, conn: Connection, drafts: Sequence[InboundMovement]
    ) -> tuple[list[StockMovement], list[Unmapped]]:
        movements: list[StockMovement] = []
        problems: list[Unmapped] = []
        for index, draft in enumerate(drafts):
            found: list[Unmapped] = []
            item_code, pack_unit = self._item(conn, draft, index, found)
            item = self.repo.items(conn, [item_code]).get(item_code) if item_code else None
            location = self._location(
                conn, draft.source_system, draft.location, "location", index, found
            )
            to_location = (
                self._location(
                    conn, draft.source_system, draft.to_location, "to_location", index, found
                )
                if draft.to_location
                else None
            )
            unit = self._unit(conn, draft, item, pack_unit, index, found) if item else None
            cost_center = self._cost_center(conn, draft, index, found)
            problems += found
            if found or item is None or location is None or unit is None:
                continue
            try:
                movements.append(
                    StockMovement(
                        kind=draft.kind,
                        item=item.code,
                        location=location,
                        quantity=draft.quantity,
                        unit=unit,
                        lot=draft.lot,
                        expiry=draft.expiry,
                        to_location=to_location,
                        unit_cost=draft.unit_cost,
                        cost_center=cost_center,
                        occurred_at=draft.occurred_at,
                        encounter_ref=draft.encounter_ref,
                        reason=draft.reason,
                    )
                )
            except ValidationError as error:  # resolved codes that make no valid movement
                for detail in error.errors(include_url=False):
                    message = str(detail["msg"]).removeprefix("Value error, ")
                    field = message.split(":", 1)[0] if ":" in message else "movement"
                    problems.append(Unmapped(index, field, "", f"as resolved: {message}"))
        return movements, problems

    def _item(
        self, conn: Connection, draft: InboundMovement, index: int, found: list[Unmapped]
    ) -> tuple[str | None, str | None]:
        code = draft.item.code.strip()
        kind = draft.item.kind
        if kind is ItemCodeKind.LOCAL:
            issuer = draft.item.issuer or draft.source_system
            item = self.repo.item_by_code(conn, CodeSystem.LOCAL, code, issuer)
            if item is None:
                found.append(Unmapped(index, "item", code, f"no item for {issuer} code {code}"))
            return item, None
        if kind is ItemCodeKind.GTIN:
            try:
                gtin = normalize_gtin(code)
            except CodeError as error:
                found.append(Unmapped(index, "item", code, str(error)))
                return None, None
            item = self.repo.item_by_code(conn, CodeSystem.GTIN, gtin)
            if item is not None:
                return item, None
            pack = conn.execute(
                select(item_packs.c.item, item_packs.c.unit).where(item_packs.c.gtin == gtin)
            ).first()
            if pack is None:
                found.append(Unmapped(index, "item", gtin, "unknown GTIN"))
                return None, None
            return pack.item, pack.unit
        return self._ndc(conn, code, index, found), None

    def _ndc(self, conn: Connection, code: str, index: int, found: list[Unmapped]) -> str | None:
        shapes: tuple[NdcShape | None, ...] = (None,)
        if code.isdigit() and len(code) == 10:
            shapes = get_args(NdcShape)
        candidates: set[str] = set()
        error: str | None = None
        for shape in shapes:
            try:
                ndc = normalize_ndc(code, shape)
            except CodeError as problem:
                error = str(problem)
                continue
            item = self.repo.item_by_code(conn, CodeSystem.NDC, ndc)
            if item is not None:
                candidates.add(item)
        if len(candidates) == 1:
            return candidates.pop()
        if len(candidates) > 1:
            found.append(
                Unmapped(index, "item", code, "ambiguous 10-digit NDC: several items match")
            )
        else:
            found.append(Unmapped(index, "item", code, error or "unknown NDC"))
        return None

    def _location(
        self,
        conn: Connection,
        source: str,
        code: str | None,
        field: str,
        index: int,
        found: list[Unmapped],
    ) -> str | None:
        assert code is not None
        location = conn.execute(
            select(location_xrefs.c.location).where(
                location_xrefs.c.source_system == source, location_xrefs.c.code == code
            )
        ).scalar_one_or_none()
        if location is None:
            found.append(Unmapped(index, field, code, f"no location cross-reference for {source}"))
        return location

    def _unit(
        self,
        conn: Connection,
        draft: InboundMovement,
        item: Item,
        pack_unit: str | None,
        index: int,
        found: list[Unmapped],
    ) -> str | None:
        known = {item.base_unit, *(p.unit for p in item.packs)}
        if draft.unit is None:
            return pack_unit or item.base_unit
        if draft.unit in known:
            return draft.unit
        mapped = conn.execute(
            select(unit_xrefs.c.unit).where(
                unit_xrefs.c.source_system == draft.source_system, unit_xrefs.c.code == draft.unit
            )
        ).scalar_one_or_none()
        if mapped is None or mapped not in known:
            why = (
                "no unit cross-reference"
                if mapped is None
                else f"maps to {mapped}, not a unit of the item"
            )
            found.append(
                Unmapped(
                    index,
                    "unit",
                    draft.unit,
                    f"{why} (item {item.code}: {', '.join(sorted(known))})",
                )
            )
            return None
        return str(mapped)

    def _cost_center(
        self, conn: Connection, draft: InboundMovement, index: int, found: list[Unmapped]
    ) -> str | None:
        """The patient location's cost center; none given means the location's own."""
        if draft.patient_location is None:
            return None
        center = conn.execute(
            select(cost_center_xrefs.c.cost_center).where(
                cost_center_xrefs.c.source_system == draft.source_system,
                cost_center_xrefs.c.code == draft.patient_location,
            )
        ).scalar_one_or_none()
        if center is None:
            found.append(
                Unmapped(
                    index,
                    "patient_location",
                    draft.patient_location,
                    "no cost-center cross-reference",
                )
            )
        return center
