"""The bulk import of items (issue 18, "Done when" 1, at test size: the 100,000-item run is
``benchmarks/masterdata_import.py``): idempotent re-import, all-or-nothing with every problem
named by row and column, XLSX, dry run, audit."""

from __future__ import annotations

import csv
import hashlib
import io
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from medbridge.canonical.masterdata import CodeSystem, Item, ItemCategory, ItemCode
from medbridge.cli import app as cli
from medbridge.demo.item_files import HEADER, items_csv, rows
from medbridge.demo.network import UNITS
from medbridge.masterdata.cache import current_revision
from medbridge.masterdata.importer import import_items
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.masterdata.row_import import import_rows
from medbridge.masterdata.tabular import ImportRejected
from medbridge.store import audit
from medbridge.store.tables import audit_log, item_codes, item_packs, items, locations

pytestmark = pytest.mark.db

ACTOR = "cli:onboarding"
N = 3000


@pytest.fixture
def units(engine: Engine) -> Engine:
    with engine.begin() as conn:
        MasterDataRepository(engine).save_units(conn, UNITS)
    return engine


def counts(engine: Engine) -> tuple[int, int, int, int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(items)).scalar_one(),
            conn.execute(select(func.count()).select_from(item_packs)).scalar_one(),
            conn.execute(select(func.count()).select_from(item_codes)).scalar_one(),
            conn.execute(select(func.count()).select_from(audit_log)).scalar_one(),
            current_revision(conn),
        )


def csv_of(table: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([HEADER, *table])
    return out.getvalue().encode()


def test_a_reimport_changes_nothing(units: Engine) -> None:
    data = items_csv(N)
    first = import_items(units, "items.csv", data, actor=ACTOR)
    assert (first.rows, first.new, first.changed, first.unchanged) == (N, N, 0, 0)
    after_first = counts(units)
    assert after_first[:3] == (N, 2 * N, first.codes_added)
    assert first.codes_added == 5 * N - N // 5  # supplies (every 5th) have no NDC

    second = import_items(units, "items.csv", data, actor=ACTOR)
    assert (second.new, second.changed, second.unchanged, second.codes_added) == (0, 0, N, 0)
    assert counts(units) == after_first  # no row, no audit row, no revision bump

    with units.connect() as conn:
        item = MasterDataRepository(units).items(conn, ["ITM0000007"])["ITM0000007"]
        codes = {
            (r.system, r.issuer, r.code)
            for r in conn.execute(select(item_codes).where(item_codes.c.item == "ITM0000007"))
        }
    assert item.base_unit == "CAP"
    assert {p.unit for p in item.packs} == {"BX", "CA"}
    assert ("supplier_sku", "MCK", "100007") in codes
    assert ("erp", "tryton", "8") in codes
    assert any(system == "ndc" for system, _, _ in codes)


def test_one_bad_row_changes_nothing_and_is_named(units: Engine) -> None:
    import_items(units, "items.csv", items_csv(N), actor=ACTOR)
    before = counts(units)
    table = list(rows(N))
    for line in table:
        line[1] += " (renamed)"  # every item would change ...
    gtin = table[1232][6]  # ... but row 1,234 (the header is row 1) has a wrong check digit
    table[1232][6] = gtin[:-1] + str((int(gtin[-1]) + 1) % 10)
    with pytest.raises(ImportRejected) as refused:
        import_items(units, "items.csv", csv_of(table), actor=ACTOR)
    assert [(p.row, p.column) for p in refused.value.problems] == [(1234, "gtin")]
    assert "check digit" in refused.value.problems[0].message
    assert counts(units) == before


def test_every_bad_row_is_reported(units: Engine) -> None:
    repo = MasterDataRepository(units)
    with units.begin() as conn:
        repo.save_item(
            conn,
            Item(
                code="VANCO-1G",
                name="Vancomycin 1 g",
                category=ItemCategory.DRUG,
                base_unit="VIAL",
                codes=(ItemCode(system=CodeSystem.NDC, code="0069-2587-10"),),
            ),
        )
    table = list(rows(200))
    table[3][2] = "food"  # row 5
    table[10][3] = "PALLET"  # row 12: unknown unit
    table[20][7] = "BX:ten"  # row 22
    table[30][5] = "0069-2587-10"  # row 32: VANCO-1G's NDC
    table[40][0] = table[39][0]  # row 42: the item of row 41 again
    table[50][6] = table[49][6]  # row 52: row 51's GTIN
    table[60][5] = "0069258710"  # row 62: undashed 10-digit NDC, shape lost
    table[70][8] = "MCK"  # row 72: no SKU
    table[80][1] = "bad\x00name"  # row 82
    before = counts(units)
    with pytest.raises(ImportRejected) as refused:
        import_items(units, "items.csv", csv_of(table), actor=ACTOR)
    found = {(p.row, p.column) for p in refused.value.problems}
    assert found == {
        (5, "category"),
        (12, "base_unit"),
        (22, "packs"),
        (32, "ndc"),
        (42, "code"),
        (52, "gtin"),
        (62, "ndc"),
        (72, "supplier_skus"),
        (82, "name"),
    }
    assert refused.value.total == 9
    assert counts(units) == before


def test_a_header_problem_names_the_column(units: Engine) -> None:
    data = b"code,name,colour,base_unit\nA,B,red,EA\n"
    with pytest.raises(ImportRejected) as refused:
        import_items(units, "items.csv", data, actor=ACTOR)
    assert {(p.row, p.column) for p in refused.value.problems} == {(1, "colour"), (1, "category")}


def test_dry_run_writes_nothing(units: Engine) -> None:
    before = counts(units)
    report = import_items(units, "items.csv", items_csv(500), actor=ACTOR, dry_run=True)
    assert (report.new, report.changed, report.unchanged, report.dry_run) == (500, 0, 0, True)
    assert counts(units) == before


def test_a_changed_row_is_written_and_audited(units: Engine) -> None:
    import_items(units, "items.csv", items_csv(100), actor=ACTOR)
    table = list(rows(100))
    table[9][1] = "Renamed item"  # ITM0000009
    table[9][7] = "BX:20"  # its packs replaced
    table[19][9] = "tryton:20;tryton-next:5"  # ITM0000019: a code added
    data = csv_of(table)
    before = counts(units)
    dry = import_items(units, "items.csv", data, actor=ACTOR, dry_run=True)
    assert (dry.new, dry.changed, dry.unchanged, dry.codes_added) == (0, 2, 98, 1)
    assert counts(units) == before
    report = import_items(units, "changes.csv", data, actor=ACTOR)
    assert (report.new, report.changed, report.unchanged, report.codes_added) == (0, 2, 98, 1)
    assert counts(units)[4] == before[4] + 1  # one revision bump for the whole file
    with units.connect() as conn:
        item = MasterDataRepository(units).items(conn, ["ITM0000009"])["ITM0000009"]
        saved = audit.entries(conn, action="masterdata.item.save", limit=1000)
        imports = audit.entries(conn, action="masterdata.import")
    assert item.name == "Renamed item"
    assert [(p.unit, p.factor, p.gtin) for p in item.packs] == [("BX", Decimal(20), None)]
    changed = saved[100:]  # the first import's 100 new items, then this one's 2 changes
    assert len(saved) == 102
    assert [e.target_id for e in changed] == ["ITM0000009", "ITM0000019"]
    assert all(e.before_digest is not None for e in changed)
    assert changed[0].detail["changes"]["after"]["name"] == "Renamed item"
    assert changed[1].detail["codes_added"] == ["erp/tryton-next/5"]
    assert [e.actor for e in imports] == [ACTOR, ACTOR]
    last = imports[-1]
    assert last.target_id == "items:changes.csv"
    assert last.detail["sha256"] == hashlib.sha256(data).hexdigest()
    assert (last.detail["new"], last.detail["changed"], last.detail["rows"]) == (0, 2, 100)
    assert audit.verify(units).intact


def test_an_xlsx_file_imports_like_its_csv(units: Engine, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append([h.upper() for h in HEADER])  # header names are case-insensitive
    for line in rows(300):
        cells: list[object] = list(line)
        cells[6] = int(line[6])  # a GTIN typed as a number, as spreadsheets do
        sheet.append(cells)
    path = tmp_path / "items.xlsx"
    book.save(path)
    report = import_items(units, path.name, path.read_bytes(), actor=ACTOR)
    assert (report.rows, report.new) == (300, 300)
    again = import_items(units, "items.csv", items_csv(300), actor=ACTOR)
    assert (again.new, again.changed, again.unchanged) == (0, 0, 300)


def test_a_semicolon_or_tab_delimited_file_imports_like_its_comma_csv(units: Engine) -> None:
    """Spreadsheets set to a decimal comma write semicolons; packs (``BX:10;CA:100``) are
    quoted in them as any cell holding the delimiter."""
    for sep, name in ((";", "items-semicolon.csv"), ("\t", "items.tsv.csv")):
        out = io.StringIO()
        csv.writer(out, delimiter=sep, lineterminator="\n").writerows([HEADER, *rows(200)])
        report = import_items(units, name, out.getvalue().encode(), actor=ACTOR)
        assert (report.rows, report.new + report.unchanged) == (200, 200), sep
    again = import_items(units, "items.csv", items_csv(200), actor=ACTOR)
    assert (again.new, again.changed, again.unchanged) == (0, 0, 200)  # the same items


def test_the_command_names_row_and_column(units: Engine, database_url: str, tmp_path: Path) -> None:
    table = list(rows(20))
    table[4][3] = "PALLET"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_of(table))
    good = tmp_path / "good.csv"
    good.write_bytes(items_csv(20))
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false"}
    env |= {"MEDBRIDGE_VAR_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    refused = runner.invoke(cli, ["import", "items", str(bad)], env=env)
    assert refused.exit_code == 1
    assert "row 6, column base_unit: unknown unit 'PALLET'" in refused.output
    assert counts(units)[0] == 0
    dry = runner.invoke(cli, ["import", "items", str(good), "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert counts(units)[0] == 0
    done = runner.invoke(cli, ["import", "items", str(good)], env=env)
    assert done.exit_code == 0, done.output
    assert counts(units)[0] == 20
    with units.connect() as conn:
        assert audit.entries(conn, action="masterdata.import")[0].actor.startswith("cli:")


def test_units_locations_cost_centers_and_suppliers_import(engine: Engine) -> None:
    def run(kind: str, text: str, dry_run: bool = False) -> tuple[int, int, int]:
        report = import_rows(
            engine, kind, f"{kind}.csv", text.encode(), actor=ACTOR, dry_run=dry_run
        )
        return report.new, report.changed, report.unchanged

    assert run("units", "code,name\nEA,each\nVIAL,vial\nBX,box\n") == (3, 0, 0)
    assert run(
        "locations", "code,name,kind,parent\nNET,Network,network,\nH9,Hospital 9,facility,NET\n"
    ) == (2, 0, 0)
    assert run("cost-centers", "code,name,facility\nH9-CC-PHARM,H9 pharmacy,H9\n") == (1, 0, 0)
    stores = (
        "code,name,kind,parent,cost_center\n"
        "H9-PHARM-B1,Bin 1,bin,H9-PHARM,\n"  # before its store: parents are written first
        "H9-PHARM,H9 pharmacy,store,H9,H9-CC-PHARM\n"
    )
    before = counts(engine)
    assert run("locations", stores, dry_run=True) == (2, 0, 0)
    assert counts(engine) == before
    assert run("locations", stores) == (2, 0, 0)
    assert run("locations", stores) == (0, 0, 2)
    assert run("locations", stores.replace("Bin 1", "Bin one")) == (0, 1, 1)
    with engine.connect() as conn:
        bin_ = conn.execute(select(locations).where(locations.c.code == "H9-PHARM-B1")).one()
        saves = audit.entries(conn, target_type="location", limit=1000)
    assert (bin_.facility, bin_.name) == ("H9", "Bin one")
    assert [e.target_id for e in saves][-1] == "H9-PHARM-B1"
    assert run("locations", "code,name,kind,parent\nH8,Hospital 8,facility,NET\n") == (1, 0, 0)
    moved = "code,name,kind,parent,cost_center\nH9-PHARM,H9 pharmacy,store,H8,H9-CC-PHARM\n"
    assert run("locations", moved) == (0, 1, 0)  # the store alone: its bin follows it
    with engine.connect() as conn:
        bin_ = conn.execute(select(locations).where(locations.c.code == "H9-PHARM-B1")).one()
    assert bin_.facility == "H8"
    assert run(
        "suppliers", "code,name,status,lead_time_days\nACME,Acme,on_hold,4\nMCK,McKesson,,\n"
    ) == (2, 0, 0)

    bad = {
        "locations": (
            "code,name,kind,parent,cost_center\n"
            "H9-OR,OR,store,H9,NO-CC\n"  # row 2
            "H9-X-B1,Bin,bin,H9,\n"  # row 3: a bin's parent is a store
            "H9-Y,Y,store,NOWHERE,\n"  # row 4
            "H9-Z,Z,store,,\n",  # row 5: a store needs a parent
            {(2, "cost_center"), (3, "parent"), (4, "parent"), (5, "parent")},
        ),
        "cost-centers": ("code,name,facility\nCC1,x,H9-PHARM\n", {(2, "facility")}),
        "suppliers": (
            "code,name,status,lead_time_days\nA,a,sleeping,1\nB,b,active,99999\nC,c,active,-1\n",
            {(2, "status"), (3, "lead_time_days"), (4, "lead_time_days")},
        ),
        "units": ("code,name\nBAD UNIT,x\n", {(2, "code")}),
    }
    before = counts(engine)
    for kind, (text, expected) in bad.items():
        with pytest.raises(ImportRejected) as refused:
            run(kind, text)
        assert {(p.row, p.column) for p in refused.value.problems} == expected, kind
    assert counts(engine) == before


def test_the_first_fifty_problems_are_listed_and_all_counted(units: Engine) -> None:
    table = list(rows(300))
    for line in table[:120]:
        line[2] = "food"
    with pytest.raises(ImportRejected) as refused:
        import_items(units, "items.csv", csv_of(table), actor=ACTOR)
    assert refused.value.total == 120
    assert [p.row for p in refused.value.problems] == list(range(2, 52))
    assert "and 70 more" in str(refused.value)
