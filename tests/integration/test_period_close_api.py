"""The period close through the API, the console's Close page and ``medbridge close``: who
may read and close, the report as JSON, CSV and HTML, a second close refused."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.close_support import november
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.cli import app as cli
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.governance.clients import Role
from medbridge.settings import Settings
from medbridge.store import periods as periods_store

pytestmark = pytest.mark.db

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def api(medbridge: MedBridge) -> Iterator[tuple[TestClient, FakeErp]]:
    fake = FakeErp()
    november(medbridge, fake)
    app: FastAPI = medbridge.api()
    app.state.services = dataclasses.replace(app.state.services, erp=fake)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, fake


def test_finance_closes_november_through_the_api(
    medbridge: MedBridge, api: tuple[TestClient, FakeErp]
) -> None:
    client, _ = api
    finance = {"X-API-Key": medbridge.clients.register("controller", Role.FINANCE)}
    reader = {"X-API-Key": medbridge.clients.register("analyst", Role.READER)}
    pharmacy = {"X-API-Key": medbridge.clients.register("pharmacist", Role.PHARMACY)}
    bound = {
        "X-API-Key": medbridge.clients.register(
            "h1-controller", Role.FINANCE, facilities=frozenset({"H1"})
        )
    }

    listed = client.get("/v1/periods", headers=reader).json()["items"]
    november_row = next(p for p in listed if p["period"] == "2026-11")
    assert november_row["state"] == "open"
    assert november_row["entries"] > 0
    assert client.get("/v1/periods", headers=pharmacy).status_code == 403
    assert client.post("/v1/periods/2026-11/close", json={}, headers=reader).status_code == 403
    assert client.post("/v1/periods/2026-11/close", json={}, headers=bound).status_code == 403

    dry = client.post("/v1/periods/2026-11/close", json={"dry_run": True}, headers=finance)
    assert dry.status_code == 200, dry.text
    assert (dry.json()["state"], dry.json()["differences"]) == ("open", [])
    forced = client.post("/v1/periods/2026-11/close", json={"force": True}, headers=finance)
    assert forced.status_code == 422
    assert forced.json()["detail"][0]["loc"] == ["body", "reason"]
    bad = client.post(
        "/v1/periods/2026-11/close", json={"cutoff": "2026-12-03T00:00:00Z"}, headers=finance
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "cutoff"]
    assert client.post("/v1/periods/2026-13/close", json={}, headers=finance).status_code == 422
    assert client.get("/v1/periods/9999-12/report", headers=finance).status_code == 422

    closed = client.post("/v1/periods/2026-11/close", json={}, headers=finance)
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["state"], body["balanced"], body["cutoff"]) == (
        "closed",
        True,
        "2026-12-01T00:00:00+00:00",
    )
    assert [g["amount"] for g in body["grni"] if g["order"] == "PO-NOV-1"] == ["274.00"]
    again = client.post("/v1/periods/2026-11/close", json={}, headers=finance)
    assert again.status_code == 409
    assert "2026-11 is closed already" in again.json()["detail"]
    assert "by controller" in again.json()["detail"]

    report = client.get("/v1/periods/2026-11/report", headers=reader).json()
    assert report["state"] == "closed"
    assert report["generated_at"] == body["generated_at"]  # the stored report
    exported = client.get("/v1/periods/2026-11/report.csv", headers=reader).text
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["reference"] for r in rows if r["section"] == "grni"] == ["PO-NOV-1"]
    page = client.get("/v1/periods/2026-11/report.html", headers=reader)
    assert page.headers["content-type"].startswith("text/html")
    assert "Close report 2026-11 (closed)" in page.text
    listed = client.get("/v1/periods", headers=reader).json()["items"]
    november_row = next(p for p in listed if p["period"] == "2026-11")
    assert (november_row["state"], november_row["actor"]) == ("closed", "controller")


def test_the_console_close_page_lists_reports_and_closes(
    medbridge: MedBridge, api: tuple[TestClient, FakeErp]
) -> None:
    client, fake = api
    key = medbridge.clients.register("console-controller", Role.FINANCE)
    token = CSRF.search(client.get("/console/sign-in").text)
    assert token
    client.post(
        "/console/sign-in",
        data={"client": "console-controller", "key": key, "csrf_token": token.group(1)},
    )
    two, zero = Decimal("2.00"), Decimal(0)
    fake.plant_move(
        "HAND-7", date(2026, 11, 12), [("1400-H1", None, two, zero), ("5100-H1", None, zero, two)]
    )
    page = client.get("/console/periods?period=2026-11")
    assert page.status_code == 200
    assert "erp_unexpected_in_erp" in page.text
    assert "HAND-7" in page.text
    token = CSRF.search(page.text)
    assert token
    assert "Close 2026-11" in page.text
    refused = client.post(
        "/console/periods/2026-11/close", data={"csrf_token": token.group(1)}
    ).text
    assert "2026-11 not closed: 1 difference(s)" in refused
    done = client.post(
        "/console/periods/2026-11/close",
        data={"csrf_token": token.group(1), "force": "true", "reason": "hand move, ERP team"},
    ).text
    assert "2026-11 closed with 1 difference(s)" in done
    with medbridge.engine.connect() as conn:
        closed = periods_store.get(conn, "2026-11")
    assert closed is not None
    assert closed.forced_reason == "hand move, ERP team"


def test_medbridge_close_from_the_command_line(
    medbridge: MedBridge, settings: Settings, tmp_path: Path
) -> None:
    november(medbridge, FakeErp())
    env = {
        "MEDBRIDGE_DATABASE_URL": settings.database_url,
        "MEDBRIDGE_VAR_DIR": str(tmp_path / "var"),
        "MEDBRIDGE_LOG_JSON": "false",
        "COLUMNS": "250",
    }
    runner = CliRunner()
    dry = runner.invoke(cli, ["close", "2026-11", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "erp_unreachable" in dry.output  # no ERP configured: a difference, not a failure
    assert "2026-11 would close" in dry.output
    refused = runner.invoke(cli, ["close", "2026-11"], env=env)
    assert refused.exit_code == 1
    report = tmp_path / "close.csv"
    forced = runner.invoke(
        cli,
        ["close", "2026-11", "--force", "--reason", "no ERP connected yet", "--csv", str(report)],
        env=env,
    )
    assert forced.exit_code == 0, forced.output
    rows = list(csv.DictReader(io.StringIO(report.read_text())))
    [unreachable] = [r for r in rows if r["section"] == "difference"]
    assert (unreachable["kind"], unreachable["owner"]) == ("erp_unreachable", "erp:tryton")
    again = runner.invoke(cli, ["close", "2026-11"], env=env)
    assert again.exit_code == 2
    assert "2026-11 is closed already" in again.output
