"""Master data synced with an ERP destination both ways (with the fake; the real Tryton in
tests/peers/test_tryton_wiring.py and tests/peers/test_tryton_masterdata.py): the pull of its
products and suppliers, the push of MedBridge's items, suppliers and assigned GL accounts, and
the refusal of a destination that does not offer master data."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.canonical.erp import ErpAccount, ErpProduct, ErpSupplier, ErpUnavailable
from medbridge.canonical.masterdata import AccountType, CodeSystem
from medbridge.cli import UsageError
from medbridge.cli import app as cli
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.erp_routing import Capability
from medbridge.flows.erp_sync import (
    PUSH_ACTION,
    SYNC_ACTOR,
    MasterDataUnavailable,
    assigned_accounts,
    pull_from_erp,
    push_to_erp,
    sync_from_erp,
)
from medbridge.store import audit
from medbridge.store.tables import audit_log, suppliers

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


# --- per destination, both ways ------------------------------------------------------------

EVERYTHING = frozenset(Capability)
DEMO_ITEMS = ["AMOX-500", "AMPI-250", "DILUENT-10", "DRAPE-SM", "NICAR-40", "TUBE-BLUE", "VANCO-1G"]
DEMO_ACCOUNTS = sorted(
    f"{base}-{f}"
    for f in ("H1", "H2")
    for base in ("1400", "2000", "2100", "5100", "5200", "5300", "5400", "5500")
)


def pushes(engine: Engine, since: int) -> list[tuple[str, str, str, str]]:
    """(actor, target type, target, outcome) of the push audit rows after ``since``."""
    with engine.connect() as conn:
        found = audit.entries(conn, action=PUSH_ACTION, cursor=since, limit=100_000)
    return sorted(
        (e.actor, e.target_type, str(e.target_id), str(e.detail["outcome"])) for e in found
    )


def last_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(audit_log.c.seq), 0))).scalar_one())


def test_a_push_creates_every_item_supplier_and_assigned_account_once(
    medbridge: MedBridge,
) -> None:
    erp = FakeErp(accounts=(), units=("VIAL", "CAP", "BAG", "EA"))
    since = last_seq(medbridge.engine)
    report = push_to_erp(
        medbridge.engine,
        medbridge.masterdata,
        erp,
        destination="cloud",
        offers=EVERYTHING,
        actor="cli:ops",
    )
    assert report.rejected == []
    assert report.created == {
        "account": DEMO_ACCOUNTS,
        "supplier": ["MCK", "MEDSURG"],
        "item": DEMO_ITEMS,
    }
    assert report.updated == report.unchanged == {}
    assert {p.code: (p.name, p.unit) for p in erp.products()}["NICAR-40"] == (
        "Nicardipine 40 mg/200 mL premixed bag",
        "BAG",
    )
    assert erp.accounts(["2000-H1"]) == {"2000-H1": "Accounts payable H1"}
    audited = pushes(medbridge.engine, since)
    assert len(audited) == 16 + 2 + 7
    assert ("cli:ops", "erp_item", "cloud/VANCO-1G", "created") in audited
    assert ("cli:ops", "erp_account", "cloud/5500-H2", "created") in audited
    assert ("cli:ops", "erp_supplier", "cloud/MCK", "created") in audited

    since = last_seq(medbridge.engine)
    again = push_to_erp(
        medbridge.engine, medbridge.masterdata, erp, destination="cloud", offers=EVERYTHING
    )
    assert again.created == again.updated == {}
    assert again.unchanged == report.created
    assert last_seq(medbridge.engine) == since  # nothing changed, nothing audited


def test_a_push_updates_what_differs_and_reports_what_the_erp_refuses(
    medbridge: MedBridge,
) -> None:
    erp = FakeErp(
        accounts=DEMO_ACCOUNTS,
        products=[
            ErpProduct("11", "VANCO-1G", "Vancomycin", "VIAL"),
            ErpProduct("12", "AMPI-250", "Ampicillin 250 mg capsule", "CAP"),
        ],
        suppliers=[ErpSupplier("7", "MCK", "Wholesale drug distributor")],
        units=("VIAL", "CAP", "BAG"),  # no EA: the supplies are refused
    )
    since = last_seq(medbridge.engine)
    report = push_to_erp(
        medbridge.engine, medbridge.masterdata, erp, destination="legacy", offers=EVERYTHING
    )
    assert report.updated == {"account": DEMO_ACCOUNTS, "item": ["VANCO-1G"]}  # named by code
    assert report.created == {
        "supplier": ["MEDSURG"],
        "item": ["AMOX-500", "DILUENT-10", "NICAR-40"],
    }
    assert report.unchanged == {"supplier": ["MCK"], "item": ["AMPI-250"]}
    assert [(kind, code) for kind, code, _ in report.rejected] == [
        ("item", "DRAPE-SM"),
        ("item", "TUBE-BLUE"),
    ]
    assert all("unknown unit 'EA'" in reason for _, _, reason in report.rejected)
    assert {p.code: p.name for p in erp.products()}["VANCO-1G"] == "Vancomycin HCl 1 g vial"
    assert (SYNC_ACTOR, "erp_item", "legacy/VANCO-1G", "updated") in pushes(medbridge.engine, since)


def test_a_push_cut_by_a_lost_answer_is_finished_by_a_repeat_without_doubles(
    medbridge: MedBridge,
) -> None:
    erp = FakeErp(accounts=())
    erp.lose_next_answer(1)  # the accounts' call: applied, its answer lost
    since = last_seq(medbridge.engine)
    with pytest.raises(ErpUnavailable):
        push_to_erp(
            medbridge.engine, medbridge.masterdata, erp, destination="cloud", offers=EVERYTHING
        )
    assert sorted(erp.accounts(DEMO_ACCOUNTS)) == DEMO_ACCOUNTS  # in the ERP already
    assert erp.products() == []  # the push stopped there
    assert erp.suppliers() == []
    again = push_to_erp(
        medbridge.engine, medbridge.masterdata, erp, destination="cloud", offers=EVERYTHING
    )
    assert again.created == {"supplier": ["MCK", "MEDSURG"], "item": DEMO_ITEMS}
    assert again.unchanged == {"account": DEMO_ACCOUNTS}
    assert [s.code for s in erp.suppliers()] == ["MCK", "MEDSURG"]
    assert sorted(p.code for p in erp.products()) == DEMO_ITEMS
    assert len(pushes(medbridge.engine, since)) == 2 + 7  # the lost answer's accounts: none


def test_a_pushed_destination_pulls_back_the_same_items_and_suppliers(
    medbridge: MedBridge,
) -> None:
    erp = FakeErp(accounts=())
    push_to_erp(medbridge.engine, medbridge.masterdata, erp, destination="cloud", offers=EVERYTHING)
    report = pull_from_erp(
        medbridge.engine,
        medbridge.masterdata,
        erp,
        destination="cloud",
        offers=EVERYTHING,
        issuer="cloud:erp",
    )
    assert report.linked == {code: code for code in DEMO_ITEMS}
    assert report.unmatched == report.suppliers_added == []
    products = {p.code: p.erp_id for p in erp.products()}
    with medbridge.engine.connect() as conn:
        for code in DEMO_ITEMS:
            assert (
                medbridge.masterdata.item_by_code(conn, CodeSystem.ERP, products[code], "cloud:erp")
                == code
            )


def test_a_destination_without_master_data_is_refused_and_never_called(
    medbridge: MedBridge,
) -> None:
    erp = FakeErp()
    gl_only = frozenset({Capability.GENERAL_LEDGER, Capability.PAYABLES})
    since = last_seq(medbridge.engine)
    with pytest.raises(MasterDataUnavailable, match="'ledger' does not offer master_data"):
        push_to_erp(
            medbridge.engine, medbridge.masterdata, erp, destination="ledger", offers=gl_only
        )
    with pytest.raises(MasterDataUnavailable, match="general_ledger, payables"):
        pull_from_erp(
            medbridge.engine,
            medbridge.masterdata,
            erp,
            destination="ledger",
            offers=gl_only,
            issuer="ledger:erp",
        )
    assert erp.calls == []
    assert last_seq(medbridge.engine) == since


def test_assigned_accounts_are_placed_like_their_role_at_another_facility(
    medbridge: MedBridge,
) -> None:
    accounts = {a.code: a for a in assigned_accounts(medbridge.engine)}
    assert sorted(accounts) == DEMO_ACCOUNTS
    assert accounts["2000-H1"] == ErpAccount(
        "2000-H1", "Accounts payable H1", AccountType.LIABILITY, payable=True, like="2000-H2"
    )
    assert accounts["5100-H2"].like == "5100-H1"
    assert not accounts["2100-H2"].payable
    assert accounts["1400-H1"].type is AccountType.ASSET


def test_the_cli_refuses_a_destination_without_master_data(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "medbridge.toml"
    config.write_text('[erps.ledger]\ncapabilities = ["general_ledger"]\n')
    env = {
        "MEDBRIDGE_DATABASE_URL": database_url,
        "MEDBRIDGE_CONFIG_FILE": str(config),
        "MEDBRIDGE_VAR_DIR": str(tmp_path / "var"),
        "MEDBRIDGE_LOG_JSON": "false",
        "COLUMNS": "250",
    }
    for args in (["--push"], ["--pull"], []):
        result = CliRunner().invoke(cli, ["erp", "sync", "--erp", "ledger", *args], env=env)
        assert isinstance(result.exception, UsageError)  # main() tells it in one line
        assert "'ledger' does not offer master_data" in str(result.exception)
    unknown = CliRunner().invoke(cli, ["erp", "sync", "--erp", "nosuch"], env=env)
    assert isinstance(unknown.exception, UsageError)
    assert "no ERP destination 'nosuch' (known: ledger)" in str(unknown.exception)
    both = CliRunner().invoke(cli, ["erp", "sync", "--push", "--pull"], env=env)
    assert isinstance(both.exception, UsageError)
    assert "--push or --pull, not both" in str(both.exception)
