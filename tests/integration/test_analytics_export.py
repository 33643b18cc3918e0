"""The analytics export (issue 18, done-when 5): two days of activity (HL7 dispenses of a canary
patient with an encounter, receipts, a purchase order, a receipt of goods, two invoices), then
``medbridge analytics export``: DuckDB reads the Parquet and its daily KPIs equal
``GET /v1/kpis/daily`` for the same days; no byte of any exported file holds a canary patient
string or the encounter's pseudonym; a second export with nothing new writes no row (only the
open day's KPIs again); after new activity (a late dispense of a closed day, a new one, an
order received) a third writes only the days touched, each row once.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from hl7_support import map_hl7_sources, send
from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.cli import app as cli_app
from medbridge.connectors.analytics import AnalyticsConfig, ParquetExport
from medbridge.connectors.hl7v2.codec import parse
from medbridge.connectors.hl7v2.mapping import pseudonym, read_header
from medbridge.demo.supplier_behaviour import Faults
from medbridge.flows.analytics_export import AnalyticsExport, ExportReport
from medbridge.flows.intake import Submission
from medbridge.governance.permissions import Role
from medbridge.observability.daily_kpis import DailyKpis, day_of
from medbridge.settings import Settings
from medbridge.store import audit as audit_store
from medbridge.store import procurement as store
from medbridge.store.tables import bus_events, goods_receipts, invoice_matches, purchase_orders
from procurement_support import Harness, cycle_settings, fake_erp

pytestmark = pytest.mark.db

DAY1, DAY2 = date(2026, 11, 4), date(2026, 11, 5)
FAMILY, GIVEN, MRN, VISIT = "QZXCANARYFAMILY", "QZXCANARYGIVEN", "MRNQZX90817", "VQZX5531"
CANARIES = (FAMILY, GIVEN, MRN, VISIT, "77 QZXCANARY LANE", "555-0199")
DATASETS = (
    "events",
    "movements",
    "journal_lines",
    "purchase_orders",
    "goods_receipts",
    "invoices",
    "kpis_daily",
)


def dispense(control_id: str, day: date, hour: int) -> str:
    """One vial of vancomycin from the H1 ICU cabinet to the canary patient's encounter."""
    at = f"{day:%Y%m%d}{hour:02d}2500+0000"
    return (
        f"MSH|^~\\&|PYXIS|H1|MEDBRIDGE|NET|{at}||RDS^O13^RDS_O13|{control_id}|P|2.5.1\r"
        f"PID|1||{MRN}^^^H1^MR||{FAMILY}^{GIVEN}^Q||19800101|F|||77 QZXCANARY LANE^^SPRINGFIELD"
        "^IL^62701||555-0199\r"
        f"PV1|1|I|ICU^12^A||||||||||||||||{VISIT}\r"
        f"RXD|1|0069-2587-10^Vancomycin^NDC|{at}|1|VIAL|||||||||||||||||||||||||ICU-CAB-1\r"
    )


def drain(mb: MedBridge) -> None:
    mb.group_commit.flush()
    for consumer in list(mb.consumers.values()):
        consumer.drain()


def receive(mb: MedBridge, day: date, quantity: int) -> None:
    movement = StockMovement(
        kind=MovementKind.RECEIPT,
        item="VANCO-1G",
        location="H1-ICU",
        quantity=Decimal(quantity),
        unit="VIAL",
        unit_cost=Money(amount=Decimal("6.85")),
        occurred_at=datetime(day.year, day.month, day.day, 7, tzinfo=UTC),
    )
    mb.intake.submit([Submission(movement, f"receipt-{uuid.uuid4()}")], "test")


def procure(mb: MedBridge) -> str:
    """A purchase order of DAY1 for H1, a shipment noticed on DAY1, two invoices on DAY2 (one
    clean, one with a price variance)."""
    with mb.engine.begin() as conn:
        order = store.create_order(
            conn,
            supplier="MCK",
            facility="H1",
            urgency="routine",
            lines=[
                {
                    "line": 1,
                    "item": "VANCO-1G",
                    "location": "H1-ICU",
                    "unit": "EA",
                    "quantity": "4",
                },
                {
                    "line": 2,
                    "item": "AMPI-250",
                    "location": "H1-ICU",
                    "unit": "EA",
                    "quantity": "2",
                },
            ],
            correlation_id=str(uuid.uuid4()),
            line_ids=[],
        )
        store.notice(
            conn,
            reference=f"{order}:S1",
            order_reference=order,
            shipment_id="S1",
            lines=[{"line": 1, "item": "VANCO-1G", "quantity": "4", "lot": "L1"}],
            correlation_id=str(uuid.uuid4()),
        )
        for n, exceptions in enumerate(([], [{"kind": "price_variance"}]), 1):
            store.record_invoice(
                conn,
                reference=f"mck:INV-{n}",
                supplier="MCK",
                number=f"INV-{n}",
                total=Decimal("27.40"),
                order_reference=order,
                status="matched",
                result={"exceptions": exceptions},
                erp_id=None,
                correlation_id=str(uuid.uuid4()),
            )
        at = {1: noon(DAY1), 2: noon(DAY2)}
        conn.execute(update(purchase_orders).values(created_at=at[1]))
        conn.execute(update(goods_receipts).values(received_at=at[1]))
        conn.execute(update(invoice_matches).values(created_at=at[2]))
    return order


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


@pytest.fixture
def active(medbridge: MedBridge) -> MedBridge:
    mb = medbridge
    map_hl7_sources(mb)
    receive(mb, DAY1, 50)
    receive(mb, DAY2, 20)
    drain(mb)
    acks = send(mb, dispense("AX-1", DAY1, 8), dispense("AX-2", DAY1, 9), dispense("AX-3", DAY2, 8))
    assert all(b"|AA|" in a for a in acks), acks
    drain(mb)
    procure(mb)
    return mb


def the_pseudonym(mb: MedBridge, control_id: str = "AX-1", day: date = DAY1) -> str:
    """The encounter's pseudonym as the connector derives it, found in the event log (so the
    export had it to leak)."""
    secret = mb.pseudonym_secret().get_secret_value().encode()
    expected = pseudonym(secret, read_header(parse(dispense(control_id, day, 8))), VISIT)
    assert expected
    with mb.engine.connect() as conn:
        payloads = conn.execute(select(bus_events.c.payload)).scalars().all()
    assert any(expected in p for p in payloads), "the dispense events carry the encounter"
    return expected


def export(mb: MedBridge, to: Path, **config: Any) -> ExportReport:
    target = ParquetExport(AnalyticsConfig(directory=to, **config))
    return AnalyticsExport(mb.engine, target, settle=timedelta(0)).run(actor="test:analytics")


def query(to: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(to / "medbridge.duckdb"), read_only=True) as db:
        return db.execute(sql, list(params)).fetchall()


def count(to: Path, dataset: str) -> int:
    ((n,),) = query(to, f"SELECT count(*) FROM {dataset}")
    return int(n)


def api_kpis(mb: MedBridge, day: date) -> list[dict[str, Any]]:
    key = mb.ensure_admin_key()[0]
    answer = TestClient(mb.api()).get(
        "/v1/kpis/daily", params={"day": day.isoformat()}, headers={"X-API-Key": key}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["day"] == day.isoformat()
    return list(body["facilities"])


def duckdb_kpis(to: Path, day: date) -> dict[str, dict[str, Any]]:
    with duckdb.connect(str(to / "medbridge.duckdb"), read_only=True) as db:
        cursor = db.execute("SELECT * FROM kpis_daily WHERE day = ? ORDER BY facility", [day])
        names = [d[0] for d in cursor.description]
        return {
            row[names.index("facility")]: dict(zip(names, row, strict=True))
            for row in cursor.fetchall()
        }


def assert_kpis_equal(mb: MedBridge, to: Path, day: date) -> list[dict[str, Any]]:
    from_api = api_kpis(mb, day)
    from_duckdb = duckdb_kpis(to, day)
    assert sorted(from_duckdb) == sorted(k["facility"] for k in from_api)
    for kpis in from_api:
        row = from_duckdb[kpis["facility"]]
        for name, value in kpis.items():
            if name == "day":
                assert row["day"] == day
                continue
            expected = Decimal(value) if isinstance(value, str) and name != "facility" else value
            assert row[name] == expected, (day, kpis["facility"], name, row[name], value)
    return from_api


def exported_files(to: Path) -> list[Path]:
    return [p for p in to.rglob("*") if p.is_file()]


def test_duckdb_reads_the_export_and_its_kpis_equal_the_apis(active: MedBridge, tmp_path: Path):
    to = tmp_path / "analytics"
    report = export(active, to)

    assert {d.name for d in report.datasets} == set(DATASETS)
    assert report.of("movements").days == (DAY1, DAY2)
    assert count(to, "movements") == 5  # two receipts, three dispenses
    assert count(to, "purchase_orders") == 1
    assert count(to, "goods_receipts") == 1
    assert count(to, "invoices") == 2
    assert count(to, "journal_lines") > 0
    assert query(to, "SELECT count(*) FROM events WHERE type = 'inventory.dispensed.v1'") == [(3,)]
    assert query(
        to, "SELECT day, count(*) FROM movements WHERE kind = 'dispense' GROUP BY day ORDER BY day"
    ) == [(DAY1, 2), (DAY2, 1)]
    assert query(to, "SELECT exception_kinds FROM invoices ORDER BY number") == [
        ([],),
        (["price_variance"],),
    ]
    # the views are over the Parquet files, partitioned by day
    assert (to / "movements" / f"day={DAY1}" / "part-0.parquet").is_file()
    assert "read_parquet" in (to / "views.sql").read_text()

    day1 = {k["facility"]: k for k in assert_kpis_equal(active, to, DAY1)}
    day2 = {k["facility"]: k for k in assert_kpis_equal(active, to, DAY2)}
    assert (day1["H1"]["dispenses"], day2["H1"]["dispenses"]) == (2, 1)
    assert day1["H1"]["receipts"] == 1
    assert Decimal(day1["H1"]["received_value"]) == Decimal("342.50")
    assert (day1["H1"]["purchase_orders"], day1["H1"]["order_lines"]) == (1, 2)
    assert (day2["H1"]["invoices"], day2["H1"]["invoices_first_pass"]) == (2, 1)
    assert Decimal(day2["H1"]["invoice_first_pass_rate"]) == Decimal("0.5")
    assert Decimal(day2["H1"]["gl_inventory"]) > Decimal(day1["H1"]["gl_inventory"]) > 0
    assert day1["H2"]["dispenses"] == 0
    # every day up to the export's own has its row per facility (today: the open day)
    assert query(to, "SELECT max(day) FROM kpis_daily") == [(report.as_of.date(),)]

    with active.engine.connect() as conn:
        (audited,) = audit_store.entries(conn, action="analytics.export")
    assert audited.actor == "test:analytics"
    assert audited.target_id == str(to.resolve())
    assert audited.detail["datasets"]["movements"]["rows"] == 5


def test_no_patient_string_and_no_pseudonym_in_any_exported_byte(active: MedBridge, tmp_path: Path):
    encounter = the_pseudonym(active)
    to = tmp_path / "plain"
    export(active, to, compression="none")  # every value readable in the file's bytes
    files = exported_files(to)
    assert any(p.suffix == ".duckdb" for p in files)
    assert sum(p.suffix == ".parquet" for p in files) >= 10
    # the bytes can show a value: the subject of the dispenses is there in plain
    assert any(b"VANCO-1G@H1-ICU" in p.read_bytes() for p in files if "events" in p.parts)
    for path in files:
        data = path.read_bytes()
        for needle in (*CANARIES, encounter):
            assert needle.encode() not in data, (path, needle)
            assert needle.lower().encode() not in data.lower(), (path, needle)
    # and the values themselves, read back (the default, compressed files too)
    compressed = tmp_path / "compressed"
    export(active, compressed)
    for path in exported_files(compressed):
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist(), default=str)
            assert not any(n in text for n in (*CANARIES, encounter)), path
    assert query(compressed, "SELECT count(*) FROM events WHERE data LIKE '%encounter%'") == [(0,)]


def test_a_second_export_adds_only_what_is_new(active: MedBridge, tmp_path: Path):
    to = tmp_path / "analytics"
    first = export(active, to)
    counts = {name: count(to, name) for name in DATASETS}
    day1_file = to / "movements" / f"day={DAY1}" / "part-0.parquet"
    written = day1_file.stat().st_mtime_ns

    again = export(active, to)  # nothing happened
    for name in DATASETS[:-1]:
        assert (again.of(name).rows, again.of(name).days) == (0, ()), name
    # the open day again (and the next, had midnight passed in between)
    opened, now = first.as_of.date(), again.as_of.date()
    assert again.of("kpis_daily").days == tuple(
        opened + timedelta(days=n) for n in range((now - opened).days + 1)
    )
    assert {name: count(to, name) for name in DATASETS} == counts
    assert day1_file.stat().st_mtime_ns == written

    # a late dispense of DAY1, a new one of DAY2; the order received, its shipment too
    acks = send(active, dispense("AX-4", DAY1, 15), dispense("AX-5", DAY2, 16))
    assert all(b"|AA|" in a for a in acks), acks
    drain(active)
    with active.engine.begin() as conn:
        (order,) = conn.execute(select(purchase_orders.c.reference)).scalars().all()
        store.set_order(conn, order, status="received")
        store.settle_receipt(conn, f"{order}:S1", status="received", received_by="dock")
    third = export(active, to)

    assert third.of("movements").days == (DAY1, DAY2)
    assert count(to, "movements") == counts["movements"] + 2
    with active.engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(bus_events)).scalar_one()
    assert logged >= counts["events"] + 2
    assert count(to, "events") == logged
    for name, key in (
        ("events", "id"),
        ("movements", "event_id"),
        ("purchase_orders", "reference"),
        ("goods_receipts", "reference"),
        ("invoices", "reference"),
    ):
        ((rows, distinct),) = query(
            to,
            f"SELECT count(*), count(DISTINCT {key}) FROM {name}",
        )
        assert rows == distinct, name
    assert query(to, "SELECT status FROM purchase_orders") == [("received",)]
    # the receipt moved to the day it was received: gone from DAY1, once in its new day
    with active.engine.connect() as conn:
        received = day_of(conn.execute(select(goods_receipts.c.received_at)).scalar_one())
    assert query(to, "SELECT day, status FROM goods_receipts") == [(received, "received")]
    assert not (to / "goods_receipts" / f"day={DAY1}").exists()
    assert third.of("invoices").days == ()
    assert third.of("kpis_daily").days[0] == DAY1  # from the late dispense's day on
    assert count(to, "kpis_daily") == counts["kpis_daily"]
    day1 = {k["facility"]: k for k in assert_kpis_equal(active, to, DAY1)}
    assert day1["H1"]["dispenses"] == 3
    assert_kpis_equal(active, to, DAY2)

    # the watermarks lost: everything written again, whole, each row still once
    after = {name: count(to, name) for name in DATASETS}
    (to / "_export_state.json").unlink()
    export(active, to)
    assert {name: count(to, name) for name in DATASETS} == after


def test_the_command_exports_and_refuses_a_file_as_directory(
    active: MedBridge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MEDBRIDGE_DATABASE_URL", active.settings.database_url)
    monkeypatch.setenv("MEDBRIDGE_VAR_DIR", str(active.settings.var_dir))
    to = tmp_path / "out"
    result = CliRunner().invoke(cli_app, ["analytics", "export", "--to", str(to)])
    assert result.exit_code == 0, result.output
    assert "movements" in result.output
    assert "medbridge.duckdb" in result.output
    assert count(to, "movements") == 5

    since = CliRunner().invoke(
        cli_app, ["analytics", "export", "--to", str(tmp_path / "late"), "--since", str(DAY2)]
    )
    assert since.exit_code == 0, since.output
    assert query(tmp_path / "late", "SELECT DISTINCT day FROM movements") == [(DAY2,)]

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    refused = CliRunner().invoke(cli_app, ["analytics", "export", "--to", str(blocker)])
    assert refused.exit_code != 0
    bad_day = CliRunner().invoke(cli_app, ["analytics", "export", "--to", str(to), "--since", "x"])
    assert bad_day.exit_code == 2
    assert "not a day" in bad_day.output


def test_the_daily_kpis_route_refuses_a_bad_day_and_filters_by_facility(active: MedBridge):
    key = active.ensure_admin_key()[0]
    client = TestClient(active.api())
    for wrong in ("2026-13-01", "9999-12-31", "0001-01-01", ""):
        bad = client.get("/v1/kpis/daily", params={"day": wrong}, headers={"X-API-Key": key})
        assert bad.status_code == 422, (wrong, bad.text)
        assert "day" in bad.text
    only_h2 = client.get(
        "/v1/kpis/daily",
        params={"day": DAY1.isoformat(), "facility": "H2"},
        headers={"X-API-Key": key},
    )
    assert [k["facility"] for k in only_h2.json()["facilities"]] == ["H2"]
    assert set(DailyKpis.model_fields) == set(only_h2.json()["facilities"][0])


def test_a_client_bound_to_a_facility_gets_only_its_daily_kpis(active: MedBridge):
    key = active.clients.register("h2-finance", Role.FINANCE, facilities=["H2"])
    client = TestClient(active.api())
    mine = client.get("/v1/kpis/daily", params={"day": str(DAY1)}, headers={"X-API-Key": key})
    assert mine.status_code == 200, mine.text
    assert [k["facility"] for k in mine.json()["facilities"]] == ["H2"]
    other = client.get(
        "/v1/kpis/daily",
        params={"day": str(DAY1), "facility": "H1"},
        headers={"X-API-Key": key},
    )
    assert other.status_code == 403


def test_a_procure_to_pay_cycle_exported_agrees_with_the_api(
    engine: object, settings: Settings, tmp_path: Path
):
    """The real cycle (workflows, simulated supplier, fake ERP): an order received, invoiced,
    matched and posted; a canary patient's dispense beside it; the export of today agrees
    with the API and holds neither the patient nor the encounter."""
    h = Harness(cycle_settings(settings, tmp_path), Faults(), fake_erp())
    try:
        map_hl7_sources(h.mb)
        reference = h.order()
        h.cycle.run_until(lambda: [i["status"] for i in h.cycle.invoices()] == ["posted"])
        today = datetime.now(UTC).date()
        acks = send(h.mb, dispense("CY-1", today, 0))
        assert all(b"|AA|" in a for a in acks), acks
        drain(h.mb)
        encounter = the_pseudonym(h.mb, "CY-1", today)
        to = tmp_path / "cycle"
        report = export(h.mb, to, compression="none")
        (order,), (invoice,) = h.cycle.orders(), h.cycle.invoices()
        days = sorted({day_of(order["created_at"]), day_of(invoice["created_at"])})
        assert days[-1] <= report.as_of.date()
        assert query(to, "SELECT reference, status FROM purchase_orders") == [
            (reference, order["status"])
        ]
        assert query(to, "SELECT status FROM goods_receipts") == [("received",)]
        assert query(to, "SELECT status, exception_kinds FROM invoices") == [("posted", [])]
        h1 = [k for d in days for k in assert_kpis_equal(h.mb, to, d) if k["facility"] == "H1"]
        assert sum(k["invoices"] for k in h1) == 1
        assert sum(k["invoices_first_pass"] for k in h1) == 1
        assert sum(k["purchase_orders"] for k in h1) == 1
        for path in exported_files(to):
            data = path.read_bytes()
            for needle in (*CANARIES, encounter):
                assert needle.encode() not in data, (path, needle)
    finally:
        h.mb.stop_workers()
