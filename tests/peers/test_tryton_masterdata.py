"""Master data both ways with a REAL Tryton 8.0 ERP (``tryton_cloud``, the ERP a hospital
migrates to): MedBridge's demo master data, grown by a third facility's GL accounts, a new item
and a new supplier (and one item renamed), is pushed into it through ``medbridge erp sync --erp
cloud --push``; pulled back, the ERP holds the same items (code, name, unit) and suppliers
(code, name); a second push changes nothing (created False everywhere, no audit row); the new
facility's accounts sit in the chart like the other facilities' and take a posting."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import (
    AccountAssignment,
    CodeSystem,
    GLAccount,
    Item,
    ItemCategory,
    Location,
    LocationKind,
    Supplier,
)
from medbridge.cli import app as cli
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.demo.network import ACCOUNTS
from medbridge.domain.erp_routing import Capability
from medbridge.flows.erp_sync import PUSH_ACTION, push_to_erp
from medbridge.store import audit
from medbridge.store.tables import audit_log
from peers.tryton import TrytonPeer

pytestmark = [pytest.mark.peer]

H3_ACCOUNTS = sorted(pattern.format(f="H3") for pattern, _, _ in ACCOUNTS.values())


@pytest.fixture
def cloud(tryton_cloud: TrytonPeer) -> Iterator[TrytonErp]:
    adapter = TrytonErp(tryton_cloud.config())
    yield adapter
    adapter.close()


def grow(medbridge: MedBridge) -> None:
    """A third facility with its accounts, a new item, a new supplier, an item renamed."""
    repo = medbridge.masterdata
    with medbridge.engine.begin() as conn:
        repo.save_location(
            conn,
            Location(code="H3", name="Lakeside Clinic", kind=LocationKind.FACILITY, parent="NET"),
        )
        for role, (pattern, name, kind) in ACCOUNTS.items():
            code = pattern.format(f="H3")
            repo.save_gl_account(conn, GLAccount(code=code, name=name.format(f="H3"), type=kind))
            repo.assign_account(conn, AccountAssignment(facility="H3", role=role, account=code))
        repo.save_item(
            conn,
            Item(
                code="HEPARIN-5K",
                name="Heparin sodium 5000 units/mL vial",
                category=ItemCategory.DRUG,
                base_unit="VIAL",
            ),
        )
        drape = repo.items(conn, ["DRAPE-SM"])["DRAPE-SM"]
        repo.save_item(conn, drape.model_copy(update={"name": "Drape, small, adhesive"}))
        repo.save_supplier(conn, Supplier(code="CARDINAL", name="Cardinal Health"))


def last_seq(medbridge: MedBridge) -> int:
    with medbridge.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(audit_log.c.seq), 0))).scalar_one())


def test_demo_master_data_pushed_into_the_cloud_erp_reads_back_the_same_and_settles(
    medbridge: MedBridge,
    tryton_cloud: TrytonPeer,
    cloud: TrytonErp,
    database_url: str,
    tmp_path: Path,
) -> None:
    assert tryton_cloud.server.series == "8.0"
    grow(medbridge)
    config = tmp_path / "medbridge.toml"
    config.write_text(
        "[erps.cloud]\n"
        f'url = "{tryton_cloud.url}"\n'
        f'database = "{tryton_cloud.database}"\n'
        f'user = "{tryton_cloud.login}"\n'
        f'password = "{tryton_cloud.password}"\n'
        'series = "8.0"\n'
    )
    env = {
        "MEDBRIDGE_DATABASE_URL": database_url,
        "MEDBRIDGE_CONFIG_FILE": str(config),
        "MEDBRIDGE_VAR_DIR": str(tmp_path / "var"),
        "MEDBRIDGE_LOG_JSON": "false",
        "COLUMNS": "250",
    }
    since = last_seq(medbridge)
    pushed = CliRunner().invoke(cli, ["erp", "sync", "--erp", "cloud", "--push"], env=env)
    assert pushed.exit_code == 0, pushed.output
    # the template holds the demo's H1/H2 accounts, MCK, MEDSURG and the demo items already
    assert "cloud: created: 8 account(s), 1 item(s), 1 supplier(s)" in pushed.output
    assert "cloud: updated: 1 item(s)" in pushed.output  # DRAPE-SM renamed
    assert "cloud: unchanged: 16 account(s), 6 item(s), 2 supplier(s)" in pushed.output
    with medbridge.engine.connect() as conn:
        audited = audit.entries(conn, action=PUSH_ACTION, cursor=since, limit=1000)
    assert sorted((e.target_id, e.detail["outcome"], e.actor[:4]) for e in audited) == sorted(
        [(f"cloud/{code}", "created", "cli:") for code in H3_ACCOUNTS]
        + [
            ("cloud/HEPARIN-5K", "created", "cli:"),
            ("cloud/CARDINAL", "created", "cli:"),
            ("cloud/DRAPE-SM", "updated", "cli:"),
        ]
    )

    # read back with the pull (the default, from the primary destination): the same items and
    # suppliers as MedBridge's
    pulled = CliRunner().invoke(cli, ["erp", "sync"], env=env)
    assert pulled.exit_code == 0, pulled.output
    assert "8 product(s) linked to items, 0 supplier(s) added, 0 product(s) matching no item" in (
        pulled.output
    )
    with medbridge.engine.connect() as conn:
        items = medbridge.masterdata.items(conn, [p.code for p in cloud.products()])
        vendors = medbridge.masterdata.suppliers(conn)
        products = {p.code: p for p in cloud.products()}
        issuer = f"cloud:{tryton_cloud.database}"
        for code, product in products.items():
            assert (
                medbridge.masterdata.item_by_code(conn, CodeSystem.ERP, product.erp_id, issuer)
                == code
            )
    assert {c: (i.name, i.base_unit) for c, i in items.items()} == {
        c: (p.name, p.unit) for c, p in products.items()
    }
    assert len(products) == 8
    assert {s.code: s.name for s in cloud.suppliers()} == {c: s.name for c, s in vendors.items()}

    # a second push (the flow itself) finds the ERP in step: nothing created, changed, audited
    since = last_seq(medbridge)
    again = push_to_erp(
        medbridge.engine,
        medbridge.masterdata,
        cloud,
        destination="cloud",
        offers=frozenset(Capability),
    )
    assert again.created == again.updated == {}
    assert again.rejected == []
    assert again.count(again.unchanged) == 24 + 8 + 3
    assert last_seq(medbridge) == since
    repulled = CliRunner().invoke(cli, ["erp", "sync", "--erp", "cloud", "--pull"], env=env)
    assert repulled.exit_code == 0, repulled.output
    assert "8 product(s) linked to items, 0 supplier(s) added" in repulled.output
    assert last_seq(medbridge) == since  # the pull found every link in place too

    # the new facility's accounts sit like H1's: AP keeps its party, and they take postings
    placed = cloud.client.search_read(
        "account.account",
        [("code", "in", ["2000-H1", "2000-H3", "2100-H1", "2100-H3"])],
        ["code", "type", "parent", "party_required", "reconcile"],
    )
    like = {str(a["code"]): (a["type"], a["parent"], a["party_required"]) for a in placed}
    assert like["2000-H3"] == like["2000-H1"]
    assert like["2000-H3"][2]  # party required (Tryton on SQLite answers 1)
    assert like["2100-H3"] == like["2100-H1"]
    entry = JournalEntry(
        entry_id="JE-H3-OPENING",
        posting_date=date.today(),
        description="opening stock H3",
        source_event_id="opening-h3",
        correlation_id="opening-h3",
        lines=(
            JournalLine(account="1400-H3", debit=Decimal("100.00"), facility="H3"),
            JournalLine(account="2100-H3", credit=Decimal("100.00"), facility="H3"),
        ),
    )
    assert cloud.post_journal_entry(entry).created
