"""Master data from the ERP: its products become cross-references of MedBridge's items (an ERP
code on the item, so postings and orders can name the ERP's product), its suppliers become
MedBridge suppliers.

Items are matched by code, then by GTIN (the item's or one of its packs'); an ERP product that
matches nothing is reported, never guessed. Idempotent: syncing again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from medbridge.canonical.erp import ErpPort
from medbridge.canonical.masterdata import CodeSystem, ItemCode, Supplier
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.store.tables import item_packs, items, suppliers


@dataclass
class SyncReport:
    linked: dict[str, str] = field(default_factory=dict)  # ERP product code -> item
    unmatched: list[str] = field(default_factory=list)  # ERP product codes
    suppliers_added: list[str] = field(default_factory=list)


def sync_from_erp(
    engine: Engine,
    repo: MasterDataRepository,
    erp: ErpPort,
    issuer: str,
    *,
    actor: str = "system:erp-sync",
) -> SyncReport:
    """Read the ERP's products and suppliers and record them (``issuer`` names the ERP);
    each change is audited as ``actor``'s."""
    report = SyncReport()
    products, vendors = erp.products(), erp.suppliers()
    with engine.begin() as conn:
        known = set(conn.execute(select(items.c.code)).scalars())
        by_gtin = {
            row.gtin: row.item
            for row in conn.execute(select(item_packs.c.gtin, item_packs.c.item))
            if row.gtin
        }
        for product in products:
            item = product.code if product.code in known else None
            for gtin in product.gtins:
                item = item or repo.item_by_code(conn, CodeSystem.GTIN, gtin) or by_gtin.get(gtin)
            if item is None:
                report.unmatched.append(product.code)
                continue
            repo.link_code(
                conn,
                item,
                ItemCode(system=CodeSystem.ERP, code=product.erp_id, issuer=issuer),
                actor=actor,
            )
            report.linked[product.code] = item
        existing = set(conn.execute(select(suppliers.c.code)).scalars())
        for vendor in vendors:
            if vendor.code and vendor.code not in existing:
                repo.save_supplier(conn, Supplier(code=vendor.code, name=vendor.name), actor=actor)
                report.suppliers_added.append(vendor.code)
    return report
