"""ERP products and suppliers synced into master data (with the fake; the real Tryton in
tests/peers/test_tryton_wiring.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from medbridge.app import MedBridge
from medbridge.canonical.erp import ErpProduct, ErpSupplier
from medbridge.canonical.masterdata import CodeSystem
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.flows.erp_sync import sync_from_erp
from medbridge.store.tables import suppliers

pytestmark = pytest.mark.db


def test_products_link_by_code_or_gtin_and_suppliers_are_added(medbridge: MedBridge) -> None:
    erp = FakeErp(
        products=[
            ErpProduct("11", "VANCO-1G", "Vancomycin", "VIAL"),
            ErpProduct("12", "ERP-DRAPE", "Drape", "EA", gtins=("30387698433527",)),
            ErpProduct("13", "ERP-ONLY", "Something else", "EA"),
        ],
        suppliers=[
            ErpSupplier("7", "MCK", "Wholesaler"),
            ErpSupplier("8", "NEWCO", "New supplier"),
        ],
    )
    report = sync_from_erp(medbridge.engine, medbridge.masterdata, erp, "tryton:erp")
    assert report.linked == {"VANCO-1G": "VANCO-1G", "ERP-DRAPE": "DRAPE-SM"}
    assert report.unmatched == ["ERP-ONLY"]
    assert report.suppliers_added == ["NEWCO"]
    with medbridge.engine.connect() as conn:
        assert (
            medbridge.masterdata.item_by_code(conn, CodeSystem.ERP, "12", "tryton:erp")
            == "DRAPE-SM"
        )
        assert "NEWCO" in set(conn.execute(select(suppliers.c.code)).scalars())
    again = sync_from_erp(medbridge.engine, medbridge.masterdata, erp, "tryton:erp")
    assert again.suppliers_added == []
    assert again.linked == report.linked
