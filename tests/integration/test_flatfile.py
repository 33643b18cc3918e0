"""The flat-file connector: nightly CSV snapshots reconciled against the ledger.

Decisions the tests pin down:
- Completeness rule: a trailer ``#EOF,<rows>`` ends the file; without it (or with a wrong
  count) the file is refused as truncated and nothing is applied.
- Scope: every lot the ledger holds at a location the file names is compared; one the file
  does not list counts 0.
- Adjustment keys are source + file name + sha256 + item/location/lot: the same file again
  applies nothing twice.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.messages import MessageFilter
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.cli import app as cli
from medbridge.connectors.flatfile import (
    ColumnMapping,
    FlatFileConfig,
    Incomplete,
    SnapshotRefused,
    WatchedFolder,
)
from medbridge.flows.intake import Submission
from medbridge.flows.messages import MessageBrowser
from medbridge.flows.stock_snapshots import SnapshotReconciler
from medbridge.settings import Settings
from medbridge.store import ledger as ledger_store

pytestmark = pytest.mark.db

COLUMNS = ColumnMapping(item="ITEM", location="STORE", lot="LOT", quantity="QTY", unit="UOM")
HEADER = "ITEM,STORE,LOT,QTY,UOM"
SEEDED = {  # item, location, lot -> on hand (base unit)
    ("VANCO-1G", "H1-PHARM", "V1"): Decimal(40),
    ("VANCO-1G", "H1-PHARM", "V2"): Decimal(10),
    ("AMPI-250", "H1-PHARM", "A1"): Decimal(200),
}


def receipt(item: str, lot: str, quantity: Decimal) -> StockMovement:
    return StockMovement(
        kind=MovementKind.RECEIPT,
        item=item,
        location="H1-PHARM",
        lot=lot,
        quantity=quantity,
        unit="VIAL" if item == "VANCO-1G" else "CAP",
        unit_cost=Money(amount="1.00"),
        occurred_at=datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
    )


@pytest.fixture
def seeded(medbridge: MedBridge) -> MedBridge:
    medbridge.intake.submit(
        [Submission(receipt(i, lot, q), f"seed-{i}-{lot}") for (i, _, lot), q in SEEDED.items()],
        "test",
    )
    medbridge.consumers["ledger"].drain()
    assert on_hand(medbridge) == SEEDED
    return medbridge


def on_hand(mb: MedBridge) -> dict[tuple[str, str, str | None], Decimal]:
    with mb.engine.connect() as conn:
        rows = ledger_store.stock(conn, location="H1-PHARM")
    return {(r.item, r.location, r.lot): r.quantity for r in rows}


def snapshot(*rows: str, trailer: int | str | None = "auto") -> bytes:
    lines = [HEADER, *rows]
    if trailer == "auto":
        lines.append(f"#EOF,{len(rows)}")
    elif trailer is not None:
        lines.append(f"#EOF,{trailer}")
    return ("\n".join(lines) + "\n").encode()


PLANTED = snapshot(
    "VANCO-1G,H1-PHARM,V1,37,VIAL",  # counted 37, ledger 40: a count differing
    "AMPI-250,H1-PHARM,A1,2,BX",  # 2 boxes of 100 = 200: matches
    "AMPI-250,H1-PHARM,A9,15,CAP",  # a lot the ledger does not have
)  # VANCO-1G lot V2 (10 in the ledger) is missing from the file


def reconciler(mb: MedBridge, *, emit: bool = False) -> SnapshotReconciler:
    config = FlatFileConfig(source="legacy", columns=COLUMNS, emit_adjustments=emit)
    return SnapshotReconciler(mb.engine, mb.masterdata, config, sink=mb.intake)


def write(folder: Path, name: str, raw: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(raw)
    return path


def test_planted_variances_are_exactly_the_report(seeded: MedBridge, tmp_path: Path) -> None:
    report = reconciler(seeded).reconcile(write(tmp_path, "snap.csv", PLANTED))
    found = {(v.item, v.lot, v.expected, v.counted, v.difference) for v in report.variances}
    assert found == {
        ("VANCO-1G", "V1", Decimal(40), Decimal(37), Decimal(-3)),
        ("VANCO-1G", "V2", Decimal(10), Decimal(0), Decimal(-10)),
        ("AMPI-250", "A9", Decimal(0), Decimal(15), Decimal(15)),
    }
    assert report.rows == 3
    assert report.adjustments_emitted == 0
    seeded.consumers["ledger"].drain()
    assert on_hand(seeded) == SEEDED  # report only: nothing applied


def test_tolerance_hides_small_differences(seeded: MedBridge, tmp_path: Path) -> None:
    config = FlatFileConfig(source="legacy", columns=COLUMNS, tolerance=Decimal(5))
    rec = SnapshotReconciler(seeded.engine, seeded.masterdata, config)
    report = rec.reconcile(write(tmp_path, "snap.csv", PLANTED))
    assert {(v.item, v.lot) for v in report.variances} == {
        ("VANCO-1G", "V2"),
        ("AMPI-250", "A9"),
    }


def test_adjustments_bring_the_ledger_to_the_file_once(seeded: MedBridge, tmp_path: Path) -> None:
    path = write(tmp_path, "snap.csv", PLANTED)
    rec = reconciler(seeded, emit=True)
    first = rec.reconcile(path)
    assert (first.adjustments_emitted, first.adjustments_duplicate) == (3, 0)
    again = rec.reconcile(path)  # before the ledger applied them: same keys, all duplicates
    assert (again.adjustments_emitted, again.adjustments_duplicate) == (0, 3)
    seeded.consumers["ledger"].drain()
    assert on_hand(seeded) == {
        ("VANCO-1G", "H1-PHARM", "V1"): Decimal(37),
        ("AMPI-250", "H1-PHARM", "A1"): Decimal(200),
        ("AMPI-250", "H1-PHARM", "A9"): Decimal(15),
    }
    after = rec.reconcile(path)
    assert after.variances == ()
    assert after.adjustments_emitted == 0
    seeded.consumers["ledger"].drain()
    assert on_hand(seeded)[("VANCO-1G", "H1-PHARM", "V1")] == Decimal(37)


@pytest.mark.parametrize(
    ("raw", "line", "why"),
    [
        (snapshot("VANCO-1G,H1-PHARM,V1,37,VIAL", "AMPI-250,H1-PH", trailer=None), 4, "no trailer"),
        (snapshot("VANCO-1G,H1-PHARM,V1,37,VIAL", trailer=2), 3, "announces 2 rows"),
        (b"", 1, "empty file"),
    ],
)
def test_truncated_file_changes_nothing(
    seeded: MedBridge, tmp_path: Path, raw: bytes, line: int, why: str
) -> None:
    with pytest.raises(Incomplete) as refused:
        reconciler(seeded, emit=True).reconcile(write(tmp_path, "snap.csv", raw))
    assert refused.value.line == line
    assert why in str(refused.value)
    seeded.consumers["ledger"].drain()
    assert on_hand(seeded) == SEEDED


@pytest.mark.parametrize(
    ("rows", "line", "column", "why"),
    [
        (
            ("VANCO-1G,H1-PHARM,V1,37,VIAL", "AMPI-250,H1-PHARM,A1,2O0,CAP"),
            3,
            "QTY",
            "not a number",
        ),
        (("VANCO-1G,H1-PHARM,V1,-1,VIAL",), 2, "QTY", "negative"),
        (("VANCO-1G,H1-PHARM,V1,1,VIAL", "VANCO-1G,H1-PHARM,V1,2,VIAL"), 3, "LOT", "line 2"),
        (("VANCO-1G,,V1,1,VIAL",), 2, "STORE", "empty"),
        (("NOPE,H1-PHARM,V1,1,VIAL",), 2, "ITEM", "unknown item"),
        (("VANCO-1G,H1-PHARM,V1,1,PALLET",), 2, "UOM", "unit not defined"),
        (("VANCO-1G,H1-PHARM,V1,1",), 2, None, "4 fields"),
    ],
)
def test_malformed_file_names_line_and_column(
    seeded: MedBridge,
    tmp_path: Path,
    rows: tuple[str, ...],
    line: int,
    column: str | None,
    why: str,
) -> None:
    with pytest.raises(SnapshotRefused) as refused:
        reconciler(seeded, emit=True).reconcile(write(tmp_path, "snap.csv", snapshot(*rows)))
    assert (refused.value.line, refused.value.column) == (line, column)
    assert why in str(refused.value)
    assert f"line {line}" in str(refused.value)
    seeded.consumers["ledger"].drain()
    assert on_hand(seeded) == SEEDED


def test_missing_column_is_named(seeded: MedBridge, tmp_path: Path) -> None:
    raw = b"ITEM,STORE,LOT,COUNT,UOM\nVANCO-1G,H1-PHARM,V1,1,VIAL\n#EOF,1\n"
    with pytest.raises(SnapshotRefused) as refused:
        reconciler(seeded).reconcile(write(tmp_path, "snap.csv", raw))
    assert (refused.value.line, refused.value.column) == (1, "QTY")


def test_watched_folder_end_to_end(seeded: MedBridge, tmp_path: Path) -> None:
    root = tmp_path / "drop"
    now = [1_000_000.0]
    folder = WatchedFolder(root, {"legacy": reconciler(seeded, emit=True)}, clock=lambda: now[0])
    folder.ensure_folders()
    incoming = root / "legacy" / "incoming"
    good = write(incoming, "good.csv", PLANTED)
    bad = write(incoming, "bad.csv", snapshot("VANCO-1G,H1-PHARM,V1,x,VIAL"))
    partial = write(incoming, "partial.csv", snapshot("VANCO-1G,H1-PHARM,V1,1,VIAL", trailer=None))
    for path in (good, bad, partial):
        os.utime(path, (now[0] - 10, now[0] - 10))

    outcomes = {o.file: o.status for o in folder.scan()}
    assert outcomes == {"good.csv": "processed", "bad.csv": "rejected", "partial.csv": "waiting"}
    assert partial.exists()  # still being written: untouched
    assert sorted(p.name for p in (root / "legacy" / "processed").iterdir()) == [
        "good.csv",
        "good.csv.report.json",
    ]
    report = json.loads((root / "legacy" / "processed" / "good.csv.report.json").read_text())
    assert len(report["variances"]) == 3
    assert report["adjustments_emitted"] == 3
    reason = json.loads((root / "legacy" / "rejected" / "bad.csv.reason.json").read_text())
    assert (reason["code"], reason["line"], reason["column"]) == ("bad-value", 2, "QTY")
    assert (root / "legacy" / "rejected" / "bad.csv").exists()

    now[0] += 3600  # past the grace period: the file without trailer is truncated
    outcomes = {o.file: o.status for o in folder.scan()}
    assert outcomes == {"partial.csv": "rejected"}
    reason = json.loads((root / "legacy" / "rejected" / "partial.csv.reason.json").read_text())
    assert reason["code"] == "truncated"
    assert list(incoming.iterdir()) == []

    seeded.consumers["ledger"].drain()
    assert on_hand(seeded)[("VANCO-1G", "H1-PHARM", "V1")] == Decimal(37)
    # the same file dropped again applies nothing twice
    write(incoming, "good.csv", PLANTED)
    (again,) = folder.scan()
    assert again.status == "processed"
    assert again.report is not None
    assert again.report.variances == ()
    assert (root / "legacy" / "processed" / f"good.{again.report.sha256[:12]}.csv").exists()


SOURCE_SETTINGS = {
    "legacy": {
        "item_column": "ITEM",
        "location_column": "STORE",
        "lot_column": "LOT",
        "quantity_column": "QTY",
        "unit_column": "UOM",
    }
}


def test_the_watched_folder_is_configured_in_settings(seeded: MedBridge, tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    settings = seeded.settings.model_copy(
        update={
            "flatfile_root": root,
            "flatfile_sources": Settings.model_validate(
                {"flatfile_sources": SOURCE_SETTINGS}
            ).flatfile_sources,
        }
    )
    mb = MedBridge.build(settings)
    folder = mb.flatfile_folder()
    assert folder is not None
    write(root / "legacy" / "incoming", "nightly.csv", PLANTED)
    [outcome] = folder.scan()
    assert outcome.status == "processed"
    assert outcome.report is not None
    assert len(outcome.report.variances) == 3
    assert (root / "legacy" / "processed" / "nightly.csv.report.json").exists()


def test_cli_reconciles_a_snapshot_file(
    seeded: MedBridge, database_url: str, tmp_path: Path
) -> None:
    env = {
        "MEDBRIDGE_DATABASE_URL": database_url,
        "MEDBRIDGE_LOG_JSON": "false",
        "MEDBRIDGE_FLATFILE_SOURCES": json.dumps(SOURCE_SETTINGS),
        "COLUMNS": "200",
    }
    runner = CliRunner()
    path = write(tmp_path, "snap.csv", PLANTED)
    found = runner.invoke(cli, ["snapshot", "reconcile", str(path), "--source", "legacy"], env=env)
    assert found.exit_code == 1, found.output
    assert "3 rows, 3 variance(s), 0 adjustment(s) emitted" in found.output
    assert "V2" in found.output
    truncated = write(tmp_path, "cut.csv", snapshot("VANCO-1G,H1-PHARM,V1,37,VIAL", trailer=None))
    refused = runner.invoke(
        cli, ["snapshot", "reconcile", str(truncated), "--source", "legacy"], env=env
    )
    assert refused.exit_code == 2, refused.output
    assert "nothing applied" in refused.output
    unknown = runner.invoke(cli, ["snapshot", "reconcile", str(path), "--source", "x"], env=env)
    assert unknown.exit_code == 2
    assert "known: legacy" in unknown.output


def test_each_snapshot_file_is_a_message(seeded: MedBridge, tmp_path: Path) -> None:
    rec = reconciler(seeded, emit=True)
    path = write(tmp_path, "snap.csv", PLANTED)
    rec.reconcile(path)
    rec.reconcile(path)  # the same adjustments again: a duplicate
    with pytest.raises(SnapshotRefused):
        rec.reconcile(write(tmp_path, "bad.csv", b"ITEM,STORE\n"))
    found = MessageBrowser(seeded.engine).search(MessageFilter(protocol="flatfile")).items
    assert [(m.control_id, m.status) for m in found] == [
        ("bad.csv", "refused"),
        ("snap.csv", "duplicate"),
        ("snap.csv", "applied"),
    ]
    assert found[2].sender == "legacy"
    assert found[2].event_count == 3
    assert found[0].error
