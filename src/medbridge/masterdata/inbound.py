"""Resolution of inbound movements: the source system's codes -> MedBridge's item, location,
unit and cost center, through the cross-references. Every code that does not resolve is
reported (field, value, reason); nothing is guessed.

Items: an NDC in any spelling (an undashed 10-digit NDC is tried in its three shapes and must
match exactly one known item), a GTIN (the item's own or one of its packs', which also gives
the unit), or the source's local code (``item_codes`` with issuer = the source system).

Resolution reads a ``MasterDataSnapshot`` (memory, no query): ``resolve_current`` takes the
cached one, and looks again on a snapshot checked against the database before it reports a
code as unresolved, so that a cross-reference added a moment ago is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from pydantic import ValidationError

from medbridge.canonical.codes import CodeError, NdcShape, normalize_gtin, normalize_ndc
from medbridge.canonical.inbound import InboundMovement, ItemCodeKind, UnresolvedCode
from medbridge.canonical.masterdata import CodeSystem, Item
from medbridge.canonical.movements import StockMovement
from medbridge.masterdata.cache import MasterDataSnapshot
from medbridge.masterdata.repository import MasterDataRepository

Unmapped = UnresolvedCode
"""Kept as the resolver's name for an unresolved code."""

ABSENT = "not in the message: fill it in (the sender's code) or discard the message"
"""The reason of a place the message leaves out (``InboundMovement.location`` None)."""


class InboundResolver:
    def __init__(self, repo: MasterDataRepository) -> None:
        self.repo = repo

    def resolve_current(
        self, drafts: Sequence[InboundMovement], *, fresh: bool = False
    ) -> tuple[list[StockMovement], list[Unmapped]]:
        """Resolve on the cached master data (checked now when ``fresh``, or when a code did
        not resolve on the cached snapshot)."""
        snapshot = self.repo.snapshot(fresh=fresh)
        movements, problems = self.resolve(snapshot, drafts)
        if problems and not fresh:
            again = self.repo.snapshot(fresh=True)
            if again is not snapshot:
                movements, problems = self.resolve(again, drafts)
        return movements, problems

    def resolve(
        self, snap: MasterDataSnapshot, drafts: Sequence[InboundMovement]
    ) -> tuple[list[StockMovement], list[Unmapped]]:
        movements: list[StockMovement] = []
        problems: list[Unmapped] = []
        for index, draft in enumerate(drafts):
            found: list[Unmapped] = []
            item_code, pack_unit = self._item(snap, draft, index, found)
            item = snap.item_by_code.get(item_code) if item_code else None
            location = self._location(
                snap, draft.source_system, draft.location, "location", index, found
            )
            to_location = (
                self._location(
                    snap, draft.source_system, draft.to_location, "to_location", index, found
                )
                if draft.to_location
                else None
            )
            unit = self._unit(snap, draft, item, pack_unit, index, found) if item else None
            cost_center = self._cost_center(snap, draft, index, found)
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
        self, snap: MasterDataSnapshot, draft: InboundMovement, index: int, found: list[Unmapped]
    ) -> tuple[str | None, str | None]:
        code = draft.item.code.strip()
        kind = draft.item.kind
        if kind is ItemCodeKind.LOCAL:
            issuer = draft.item.issuer or draft.source_system
            item = snap.item_for(CodeSystem.LOCAL, code, issuer)
            if item is None:
                found.append(Unmapped(index, "item", code, f"no item for {issuer} code {code}"))
            return item, None
        if kind is ItemCodeKind.GTIN:
            try:
                gtin = normalize_gtin(code)
            except CodeError as error:
                found.append(Unmapped(index, "item", code, str(error)))
                return None, None
            item = snap.item_for(CodeSystem.GTIN, gtin)
            if item is not None:
                return item, None
            pack = snap.pack_gtins.get(gtin)
            if pack is None:
                found.append(Unmapped(index, "item", gtin, "unknown GTIN"))
                return None, None
            return pack
        return self._ndc(snap, code, index, found), None

    def _ndc(
        self, snap: MasterDataSnapshot, code: str, index: int, found: list[Unmapped]
    ) -> str | None:
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
            item = snap.item_for(CodeSystem.NDC, ndc)
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
        snap: MasterDataSnapshot,
        source: str,
        code: str | None,
        field: str,
        index: int,
        found: list[Unmapped],
    ) -> str | None:
        if code is None:  # the message does not say: a reviewer fills it in
            found.append(Unmapped(index, field, "", ABSENT))
            return None
        location = snap.location_xrefs.get((source, code))
        if location is None:
            found.append(Unmapped(index, field, code, f"no location cross-reference for {source}"))
        return location

    def _unit(
        self,
        snap: MasterDataSnapshot,
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
        mapped = snap.unit_xrefs.get((draft.source_system, draft.unit))
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
        self, snap: MasterDataSnapshot, draft: InboundMovement, index: int, found: list[Unmapped]
    ) -> str | None:
        """The patient location's cost center; none given means the location's own."""
        if draft.patient_location is None:
            return None
        center = snap.cost_center_xrefs.get((draft.source_system, draft.patient_location))
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
