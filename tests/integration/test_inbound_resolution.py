"""Resolving inbound codes through the item master and the cross-references."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from medbridge.app import MedBridge
from medbridge.canonical.inbound import ExternalItem, InboundMovement, ItemCodeKind
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.domain.units import to_base_quantity
from medbridge.masterdata.inbound import InboundResolver, Unmapped
from medbridge.masterdata.repository import CrossReferences

pytestmark = pytest.mark.db

SOURCE = "hl7:EHR@H1"


def draft(
    kind: ItemCodeKind, code: str, *, unit: str | None = None, quantity: str = "1", **more: object
) -> InboundMovement:
    return InboundMovement(
        source_system=SOURCE,
        kind=MovementKind.DISPENSE,
        item=ExternalItem(kind=kind, code=code),
        location="PHARM",
        quantity=Decimal(quantity),
        unit=unit,
        occurred_at=datetime(2026, 11, 21, tzinfo=UTC),
        **more,  # type: ignore[arg-type]
    )


def resolve(mb: MedBridge, *drafts: InboundMovement) -> tuple[list[StockMovement], list[Unmapped]]:
    return InboundResolver(mb.masterdata).resolve_current(list(drafts))


@pytest.fixture
def mb(medbridge: MedBridge) -> MedBridge:
    with medbridge.engine.begin() as conn:
        CrossReferences.map_location(conn, SOURCE, "PHARM", "H1-PHARM")
        CrossReferences.map_unit(conn, SOURCE, "385055001", "CAP")  # SNOMED "capsule"
        CrossReferences.map_cost_center(conn, SOURCE, "4EAST", "H1-CC-ICU")
    return medbridge


@pytest.mark.parametrize(
    "code",
    ["0069-2587-10", "00069-2587-10", "00069258710", "0069258710"],  # 4-4-2, 5-4-2, 11, 10
)
def test_every_ndc_spelling_resolves_to_the_item(mb: MedBridge, code: str) -> None:
    [movement], problems = resolve(mb, draft(ItemCodeKind.NDC, code))
    assert problems == []
    assert movement.item == "VANCO-1G"
    assert movement.unit == "VIAL"  # none given: the base unit
    assert movement.location == "H1-PHARM"


def test_an_ambiguous_10_digit_ndc_is_not_guessed(mb: MedBridge) -> None:
    with (
        mb.engine.begin() as conn
    ):  # 1234567890 reads as 12345-0678-90 (5-3-2) or 12345-6789-00 (5-4-1)
        mb.masterdata.link_code(
            conn, "AMPI-250", ItemCode(system=CodeSystem.NDC, code="12345-678-90")
        )
        mb.masterdata.link_code(
            conn, "AMOX-500", ItemCode(system=CodeSystem.NDC, code="12345-6789-0")
        )
    movements, [problem] = resolve(mb, draft(ItemCodeKind.NDC, "1234567890"))
    assert movements == []
    assert (problem.field, problem.reason) == (
        "item",
        "ambiguous 10-digit NDC: several items match",
    )


def test_a_pack_gtin_gives_item_and_unit(mb: MedBridge) -> None:
    [movement], _ = resolve(mb, draft(ItemCodeKind.GTIN, "30387698433527", quantity="2"))
    assert (movement.item, movement.unit, movement.quantity) == ("DRAPE-SM", "BX", Decimal(2))
    _, [problem] = resolve(mb, draft(ItemCodeKind.GTIN, "50387698433528"))
    assert "check digit" in problem.reason


def test_local_codes_resolve_in_their_issuers_namespace(mb: MedBridge) -> None:
    rxnorm = InboundMovement.model_validate(
        draft(ItemCodeKind.LOCAL, "308191").model_dump()
        | {"item": {"kind": "local", "code": "308191", "issuer": "RXNORM"}}
    )
    [movement], _ = resolve(mb, rxnorm)
    assert movement.item == "AMOX-500"
    _, [problem] = resolve(mb, draft(ItemCodeKind.LOCAL, "308191"))  # the sender's own namespace
    assert problem.reason == f"no item for {SOURCE} code 308191"


def test_units_map_and_strengths_convert(mb: MedBridge) -> None:
    [capsules, bags_by_volume, bags_by_mass], problems = resolve(
        mb,
        draft(ItemCodeKind.NDC, "00047040230", unit="385055001", quantity="4"),
        draft(ItemCodeKind.NDC, "0143963401", unit="mL", quantity="400"),
        draft(ItemCodeKind.NDC, "0143963401", unit="mg", quantity="20"),
    )
    assert problems == []
    assert (capsules.item, capsules.unit) == ("AMPI-250", "CAP")
    with mb.engine.connect() as conn:
        nicardipine = mb.masterdata.items(conn, ["NICAR-40"])["NICAR-40"]
    assert to_base_quantity(nicardipine, bags_by_volume.quantity, bags_by_volume.unit) == Decimal(2)
    assert to_base_quantity(nicardipine, bags_by_mass.quantity, bags_by_mass.unit) == Decimal("0.5")
    _, [problem] = resolve(mb, draft(ItemCodeKind.NDC, "00047040230", unit="TUBE"))
    assert problem.field == "unit"
    assert "no unit cross-reference" in problem.reason


def test_patient_location_gives_the_cost_center(mb: MedBridge) -> None:
    [movement], _ = resolve(mb, draft(ItemCodeKind.NDC, "0069-2587-10", patient_location="4EAST"))
    assert movement.cost_center == "H1-CC-ICU"
    _, [problem] = resolve(mb, draft(ItemCodeKind.NDC, "0069-2587-10", patient_location="9WEST"))
    assert (problem.field, problem.value) == ("patient_location", "9WEST")


def test_every_problem_of_a_message_is_reported_at_once(mb: MedBridge) -> None:
    unknown = draft(ItemCodeKind.NDC, "99999-9999-99", unit="XX", patient_location="NOWHERE")
    unknown = InboundMovement.model_validate(unknown.model_dump() | {"location": "ROOF"})
    _, problems = resolve(mb, unknown)
    assert {p.field for p in problems} == {"item", "location", "patient_location"}


def test_codes_that_resolve_into_an_impossible_movement_are_reported_not_raised(
    mb: MedBridge,
) -> None:
    with mb.engine.begin() as conn:
        CrossReferences.map_location(conn, SOURCE, "CENTRAL", "H1-PHARM")  # both ends: one store
    transfer = InboundMovement.model_validate(
        draft(ItemCodeKind.NDC, "0069-2587-10").model_dump()
        | {"kind": "transfer", "location": "PHARM", "to_location": "CENTRAL"}
    )
    movements, [problem] = resolve(mb, transfer)
    assert movements == []
    assert problem.field == "to_location"
    assert "another location" in problem.reason
    parked = mb.inbound.receive([transfer], source="t", idempotency_key="t:1")
    assert parked.outcome.value == "exception"
