"""The demo network: two hospitals, their stores, cost centers, GL accounts, and items taken
from ../shared/samples (NDCs of the HL7/FHIR/FDA samples, the HIBCC 832 drape).

Sample flaws kept out on purpose: the RDS^O13 doxycycline "NDC" 01151327 has 8 digits, and of
the HIBCC 832 GTINs only the box level (30387698433527) has a valid check digit.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Engine

from medbridge.canonical.base import Money
from medbridge.canonical.codes import normalize_ndc
from medbridge.canonical.masterdata import (
    AccountAssignment,
    AccountRole,
    AccountType,
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
from medbridge.masterdata.repository import CrossReferences, MasterDataRepository
from medbridge.store import procurement

UNITS = [
    UnitOfMeasure(code="EA", name="each"),
    UnitOfMeasure(code="BX", name="box"),
    UnitOfMeasure(code="CA", name="case"),
    UnitOfMeasure(code="VIAL", name="vial"),
    UnitOfMeasure(code="CTN", name="carton"),
    UnitOfMeasure(code="BAG", name="bag"),
    UnitOfMeasure(code="CAP", name="capsule"),
    UnitOfMeasure(code="TAB", name="tablet"),
    UnitOfMeasure(code="mL", name="millilitre"),
    UnitOfMeasure(code="mg", name="milligram"),
]


def _ndc(code: str, shape: str | None = None) -> ItemCode:
    return ItemCode(system=CodeSystem.NDC, code=normalize_ndc(code, shape))  # type: ignore[arg-type]


ITEMS = [
    Item(
        code="VANCO-1G",
        name="Vancomycin HCl 1 g vial",
        category=ItemCategory.DRUG,
        base_unit="VIAL",
        packs=(PackConversion(unit="BX", factor=Decimal(10)),),
        codes=(_ndc("0069-2587-10"),),
        strength="1 g",
    ),
    Item(
        code="AMPI-250",
        name="Ampicillin 250 mg capsule",
        category=ItemCategory.DRUG,
        base_unit="CAP",
        packs=(PackConversion(unit="BX", factor=Decimal(100)),),
        codes=(_ndc("00047040230"),),
        strength="250 mg",
    ),
    Item(
        code="NICAR-40",
        name="Nicardipine 40 mg/200 mL premixed bag",
        category=ItemCategory.DRUG,
        base_unit="BAG",
        packs=(  # 40 mg in 200 mL per bag: dispenses in mg or mL convert to bags
            PackConversion(unit="CA", factor=Decimal(10)),
            PackConversion(unit="mg", factor=Decimal("0.025")),
            PackConversion(unit="mL", factor=Decimal("0.005")),
        ),
        codes=(_ndc("0143963401", "4-4-2"),),
        strength="0.2 mg/mL",
    ),
    Item(
        code="DILUENT-10",
        name="Sterile diluent 10 mL vial",
        category=ItemCategory.DRUG,
        base_unit="VIAL",
        packs=(
            PackConversion(unit="CTN", factor=Decimal(1)),
            PackConversion(unit="mL", factor=Decimal("0.1")),
        ),
        codes=(_ndc("0002-0800-01"),),
    ),
    Item(
        code="AMOX-500",
        name="Amoxicillin 500 mg oral capsule",
        category=ItemCategory.DRUG,
        base_unit="CAP",
        packs=(PackConversion(unit="BX", factor=Decimal(30)),),
        codes=(ItemCode(system=CodeSystem.LOCAL, code="308191", issuer="RXNORM"),),
        strength="500 mg",
    ),
    Item(
        code="DRAPE-SM",
        name="Drape, small towel, clear plastic, adhesive strip",
        category=ItemCategory.SUPPLY,
        base_unit="EA",
        packs=(
            PackConversion(unit="BX", factor=Decimal(5), gtin="30387698433527"),
            PackConversion(unit="CA", factor=Decimal(20)),
        ),
        codes=(ItemCode(system=CodeSystem.SUPPLIER_SKU, code="1000", issuer="MEDSURG"),),
    ),
    Item(
        code="TUBE-BLUE",
        name="Blood collection tube, blue cap",
        category=ItemCategory.SUPPLY,
        base_unit="EA",
        packs=(PackConversion(unit="BX", factor=Decimal(100)),),
    ),
]

UNIT_PRICES = {  # per base unit, USD
    "VANCO-1G": Decimal("6.85"),
    "AMPI-250": Decimal("0.42"),
    "NICAR-40": Decimal("38.10"),
    "DILUENT-10": Decimal("1.15"),
    "AMOX-500": Decimal("0.19"),
    "DRAPE-SM": Decimal("2.94"),
    "TUBE-BLUE": Decimal("0.31"),
}

FACILITIES = {"H1": "St. Anne General Hospital", "H2": "Riverside Community Hospital"}
STORES = {  # store -> (facility, name, cost center, cost center name)
    "H1-PHARM": ("H1", "H1 main pharmacy", "H1-CC-PHARM", "H1 pharmacy"),
    "H1-ICU": ("H1", "H1 ICU dispensing cabinet", "H1-CC-ICU", "H1 intensive care"),
    "H1-OR": ("H1", "H1 operating room supply store", "H1-CC-OR", "H1 surgery"),
    "H2-PHARM": ("H2", "H2 main pharmacy", "H2-CC-PHARM", "H2 pharmacy"),
    "H2-ED": ("H2", "H2 emergency department cabinet", "H2-CC-ED", "H2 emergency"),
}

ACCOUNTS = {  # role -> (code pattern, name, type); {f} is the facility
    AccountRole.INVENTORY: ("1400-{f}", "Inventory {f}", AccountType.ASSET),
    AccountRole.GRNI: ("2100-{f}", "Goods received not invoiced {f}", AccountType.LIABILITY),
    AccountRole.ACCOUNTS_PAYABLE: ("2000-{f}", "Accounts payable {f}", AccountType.LIABILITY),
    AccountRole.DRUG_EXPENSE: ("5100-{f}", "Drug expense {f}", AccountType.EXPENSE),
    AccountRole.SUPPLY_EXPENSE: ("5200-{f}", "Medical supply expense {f}", AccountType.EXPENSE),
    AccountRole.WASTAGE_EXPENSE: ("5300-{f}", "Wastage and expiry {f}", AccountType.EXPENSE),
    AccountRole.COUNT_ADJUSTMENT: (
        "5400-{f}",
        "Inventory count adjustment {f}",
        AccountType.EXPENSE,
    ),
    AccountRole.PURCHASE_PRICE_VARIANCE: (
        "5500-{f}",
        "Purchase price variance {f}",
        AccountType.EXPENSE,
    ),
}

CABINETS = {  # HL7 sender (MSH-3@MSH-4) -> (its cabinet code, the store it is, cost centers)
    "hl7:PYXIS@H1": ("ICU-CAB-1", "H1-ICU", {"ICU": "H1-CC-ICU", "OR": "H1-CC-OR"}),
    "hl7:PYXIS@H2": ("ED-CAB-1", "H2-ED", {"ED": "H2-CC-ED"}),
}
"""The demo's dispensing cabinets and the cross-references their messages need."""

FHIR_DEMO_SOURCE = "fhir:admin"
"""The FHIR source of the admin client (the README tour posts FHIR with the admin key)."""

SUPPLIERS = [
    Supplier(code="MCK", name="Wholesale drug distributor", lead_time_days=1),
    Supplier(code="MEDSURG", name="Med/surg supplies distributor", lead_time_days=3),
]


DEMO_PAR = Decimal(200)
DEMO_REORDER_POINT = Decimal(150)
"""Every store keeps every item between these (base units): the demo's dispenses cross the
reorder point within minutes, and replenishment orders back up to par."""


SEED_ACTOR = "system:demo-seed"


def seed_demo_network(
    engine: Engine, repo: MasterDataRepository, *, actor: str = SEED_ACTOR
) -> None:
    """Write the demo master data (idempotent: re-seeding updates in place; each change is
    audited as ``actor``'s, an unchanged row is not)."""
    with engine.begin() as conn:
        repo.save_units(conn, UNITS, actor=actor)
        for item in ITEMS:
            repo.save_item(conn, item, actor=actor)
        repo.save_location(
            conn,
            Location(code="NET", name="Demo health network", kind=LocationKind.NETWORK),
            actor=actor,
        )
        for code, name in FACILITIES.items():
            repo.save_location(
                conn,
                Location(code=code, name=name, kind=LocationKind.FACILITY, parent="NET"),
                actor=actor,
            )
            for role, (pattern, account_name, kind) in ACCOUNTS.items():
                account = pattern.format(f=code)
                repo.save_gl_account(
                    conn,
                    GLAccount(code=account, name=account_name.format(f=code), type=kind),
                    actor=actor,
                )
                repo.assign_account(
                    conn, AccountAssignment(facility=code, role=role, account=account), actor=actor
                )
        for store, (facility, name, center, center_name) in STORES.items():
            repo.save_cost_center(
                conn, CostCenter(code=center, name=center_name, facility=facility), actor=actor
            )
            repo.save_location(
                conn,
                Location(
                    code=store,
                    name=name,
                    kind=LocationKind.STORE,
                    parent=facility,
                    cost_center=center,
                ),
                actor=actor,
            )
        for source, (cabinet, store, wards) in CABINETS.items():
            CrossReferences.map_location(conn, source, cabinet, store, actor=actor)
            for ward, center in wards.items():
                CrossReferences.map_cost_center(conn, source, ward, center, actor=actor)
            for unit in {i.base_unit for i in ITEMS}:
                CrossReferences.map_unit(conn, source, unit, unit, actor=actor)
        for store in STORES:  # an EHR posting FHIR as the admin client names stores so
            CrossReferences.map_location(
                conn, FHIR_DEMO_SOURCE, f"Location/{store}", store, actor=actor
            )
        for supplier in SUPPLIERS:
            repo.save_supplier(conn, supplier, actor=actor)
        for item in ITEMS:
            vendor = "MEDSURG" if item.category is ItemCategory.SUPPLY else "MCK"
            repo.save_contract(
                conn,
                Contract(
                    code=f"{vendor}-{item.code}",
                    supplier=vendor,
                    item=item.code,
                    unit=item.base_unit,
                    price=Money(amount=UNIT_PRICES[item.code]),
                    valid_from=date(2026, 1, 1),
                ),
                actor=actor,
            )
        procurement.save_policies(
            conn,
            [
                procurement.Policy(item.code, store, DEMO_PAR, DEMO_REORDER_POINT, None)
                for store in STORES
                for item in ITEMS
            ],
            actor=actor,
        )
