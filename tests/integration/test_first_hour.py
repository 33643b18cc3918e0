"""Issue 16, "a newcomer's first hour": what a new user met walking the README's tour.

Each test names the item it covers: the journal's order and filters, correcting a wrong
cross-reference from the CLI, mapping an undashed NDC, and the CLI's one-line errors."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hl7_support import running_listener
from medbridge.app import MedBridge
from medbridge.cli import app as cli
from medbridge.cli import main
from medbridge.connectors.hl7v2 import MllpClient
from medbridge.demo import cabinets as cabinets_module
from medbridge.demo.cabinets import DemoCabinets
from medbridge.demo.traffic import DemoTraffic
from medbridge.store import exceptions as exception_store

pytestmark = pytest.mark.db


def movement(key: str, kind: str, location: str, day: str, **extra: Any) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "kind": kind,
        "item": "VANCO-1G",
        "location": location,
        "quantity": "10" if kind == "receipt" else "1",
        "unit": "VIAL",
        "occurred_at": f"{day}T10:00:00Z",
        **extra,
    }


@pytest.fixture
def admin(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        yield client


@pytest.fixture
def journal(admin: TestClient, medbridge: MedBridge) -> list[str]:
    """Four entries, made in this order: receipts at H1-PHARM (October) and H1-ICU
    (November), then a dispense at each (November); their descriptions."""
    cost = {"unit_cost": {"amount": "6.85", "currency": "USD"}, "lot": "L1"}
    for body in (
        movement("r-pharm", "receipt", "H1-PHARM", "2026-10-30", **cost),
        movement("r-icu", "receipt", "H1-ICU", "2026-11-02", **cost),
        movement("d-pharm", "dispense", "H1-PHARM", "2026-11-03"),
        movement("d-icu", "dispense", "H1-ICU", "2026-11-04"),
    ):
        assert admin.post("/v1/stock-movements", json=body).status_code == 202
        medbridge.consumers["ledger"].drain()  # one at a time: the order they were made in
    items = admin.get("/v1/journal-entries", params={"order": "asc"}).json()["items"]
    return [e["description"] for e in items]


def descriptions(admin: TestClient, **params: Any) -> list[str]:
    answer = admin.get("/v1/journal-entries", params=params)
    assert answer.status_code == 200, answer.text
    return [e["description"] for e in answer.json()["items"]]


def test_journal_limit_gives_the_newest_entries_first(
    admin: TestClient, journal: list[str]
) -> None:
    assert len(journal) == 4
    assert descriptions(admin, limit=2) == [journal[3], journal[2]]
    assert descriptions(admin, limit=2, order="asc") == journal[:2]
    assert descriptions(admin, limit=2, offset=2) == [journal[1], journal[0]]
    refused = admin.get("/v1/journal-entries", params={"order": "newest"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "order"]


def test_journal_period_is_the_posting_month(admin: TestClient, journal: list[str]) -> None:
    november = descriptions(admin, period="2026-11", order="asc")
    assert november == journal[1:]
    assert descriptions(admin, period="2026-10") == [journal[0]]
    assert descriptions(admin, period="2026-09") == []
    for wrong in ("2026-13", "2026-00", "2026-1", "11-2026"):
        refused = admin.get("/v1/journal-entries", params={"period": wrong})
        assert refused.status_code == 422, wrong
        assert refused.json()["detail"][0]["loc"] == ["query", "period"]


def test_journal_filters_by_location_and_item(admin: TestClient, journal: list[str]) -> None:
    at_icu = descriptions(admin, location="H1-ICU", order="asc")
    assert at_icu == [journal[1], journal[3]]
    assert all("@ H1-ICU" in d for d in at_icu)
    assert descriptions(admin, item="VANCO-1G", location="H1-PHARM") == [journal[2], journal[0]]
    assert descriptions(admin, item="AMOX-500") == []


def test_ledger_show_location_filters_the_journal_lines(
    journal: list[str], database_url: str
) -> None:
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    shown = CliRunner().invoke(cli, ["ledger", "show", "--location", "H1-ICU"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "@ H1-ICU" in shown.output
    assert "@ H1-PHARM" not in shown.output
    everywhere = CliRunner().invoke(cli, ["ledger", "show"], env=env)
    assert "@ H1-PHARM" in everywhere.output


def cli_env(database_url: str) -> dict[str, str]:
    return {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}


def test_a_wrong_item_cross_reference_is_replaced_or_removed_from_the_cli(
    admin: TestClient, database_url: str
) -> None:
    runner, env = CliRunner(), cli_env(database_url)
    mapped = ["xref", "item", "AMOX-500", "--system", "ndc", "--code", "12345-6789-01"]
    assert runner.invoke(cli, mapped, env=env).exit_code == 0
    wrong_way = ["xref", "item", "VANCO-1G", "--system", "ndc", "--code", "12345-6789-01"]
    refused = runner.invoke(cli, wrong_way, env=env)
    assert refused.exit_code != 0
    assert "already maps to AMOX-500" in str(refused.exception) + refused.output
    moved = runner.invoke(cli, [*wrong_way, "--replace"], env=env)
    assert moved.exit_code == 0, moved.output
    assert "12345678901 -> VANCO-1G" in moved.output
    links = admin.get("/v1/audit", params={"action": "xref.item_code.link", "limit": 1000})
    targets = [a["target_id"] for a in links.json()["items"]]
    assert targets.count("ndc//12345678901") == 2  # mapped, then moved: both audited

    removed = runner.invoke(
        cli, ["xref", "remove", "--system", "ndc", "--code", "12345-6789-01"], env=env
    )
    assert removed.exit_code == 0, removed.output
    assert "no longer maps to VANCO-1G" in removed.output
    unlinked = admin.get("/v1/audit", params={"action": "xref.item_code.unlink"}).json()["items"]
    assert [a["target_id"] for a in unlinked] == ["ndc//12345678901"]
    answer = admin.post(
        "/v1/cross-references/items",
        json={"system": "ndc", "code": "12345-6789-01", "item": "AMOX-500"},
    )
    assert answer.status_code == 201  # free again
    taken = admin.post(
        "/v1/cross-references/items",
        json={"system": "ndc", "code": "12345-6789-01", "item": "VANCO-1G"},
    )
    assert taken.status_code == 422
    assert taken.json()["detail"][0]["loc"] == ["body", "code"]
    moved = admin.post(
        "/v1/cross-references/items",
        json={"system": "ndc", "code": "12345-6789-01", "item": "VANCO-1G", "replace": True},
    )
    assert moved.status_code == 201, moved.text
    params = {"system": "ndc", "code": "12345-6789-01"}
    removed = admin.delete("/v1/cross-references/items", params=params)
    assert removed.status_code == 200, removed.text
    assert removed.json()["removed_from"] == "VANCO-1G"
    assert admin.delete("/v1/cross-references/items", params=params).status_code == 404
    undashed = admin.delete(
        "/v1/cross-references/items", params={"system": "ndc", "code": "1234567890"}
    )
    assert undashed.status_code == 422
    assert undashed.json()["detail"][0]["loc"] == ["query", "code"]
    nul = admin.delete("/v1/cross-references/items", params={"system": "erp", "code": "\x00"})
    assert nul.status_code == 422  # PostgreSQL refuses a NUL in text: never a 500
    assert nul.json()["detail"][0]["loc"] == ["query", "code"]


def test_an_undashed_ten_digit_ndc_maps_when_its_shape_is_known(
    admin: TestClient, database_url: str
) -> None:
    runner, env = CliRunner(), cli_env(database_url)
    # VANCO-1G has 0069-2587-10 (labeler 00069): only the 4-4-2 reading keeps that labeler
    same_labeler = ["xref", "item", "VANCO-1G", "--system", "ndc", "--code", "0069258799"]
    done = runner.invoke(cli, same_labeler, env=env)
    assert done.exit_code == 0, done.output
    assert "00069258799 -> VANCO-1G" in done.output
    shaped = ["xref", "item", "VANCO-1G", "--system", "ndc", "--code", "1234567890"]
    done = runner.invoke(cli, [*shaped, "--ndc-shape", "5-3-2"], env=env)
    assert done.exit_code == 0, done.output
    assert "12345067890 -> VANCO-1G" in done.output

    answer = admin.post(
        "/v1/cross-references/items",
        json={"system": "ndc", "code": "9876543210", "item": "VANCO-1G"},
    )
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", "code"]
    assert "ambiguous" in problem["msg"]
    answer = admin.post(
        "/v1/cross-references/items",
        json={"system": "ndc", "code": "9876543210", "item": "VANCO-1G", "ndc_shape": "4-4-2"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["code"] == "09876543210"


def run_main(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["medbridge", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    return int(ended.value.code or 0), out, err


def test_cli_mistakes_are_one_line_naming_the_setting_or_argument(
    medbridge: MedBridge,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MEDBRIDGE_LOG_JSON", "false")
    monkeypatch.setenv("MEDBRIDGE_DATABASE_URL", database_url)
    broken = tmp_path / "broken.toml"
    broken.write_text("http_port =\n")
    cases: list[tuple[dict[str, str], list[str], str]] = [
        ({"MEDBRIDGE_HTTP_PORT": "eighty"}, ["dlq", "list"], "MEDBRIDGE_HTTP_PORT='eighty'"),
        (
            {"MEDBRIDGE_DATABASE_URL": "postgresql://mb:secret@127.0.0.1:1/none"},
            ["dlq", "list"],
            "cannot use the database (MEDBRIDGE_DATABASE_URL=postgresql://mb:***@127.0.0.1:1",
        ),
        (
            {"MEDBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"},
            ["exceptions", "list"],
            "medbridge db upgrade",
        ),
        ({"MEDBRIDGE_CONFIG_FILE": str(tmp_path / "nope.toml")}, ["dlq", "list"], "nope.toml"),
        ({"MEDBRIDGE_CONFIG_FILE": str(broken)}, ["dlq", "list"], "broken.toml: "),
        (
            {"MEDBRIDGE_FLATFILE_SOURCES": '{"pyxis": {}}'},
            ["snapshot", "reconcile", str(tmp_path / "missing.csv"), "--source", "pyxis"],
            "missing.csv: No such file or directory",
        ),
        ({}, ["xref", "item", "NOPE", "--system", "ndc", "--code", "0069-2587-10"], "item: "),
        ({}, ["xref", "item", "VANCO-1G", "--system", "ndc", "--code", "12-34"], "NDC '12-34'"),
        (
            {},
            [
                "xref",
                "item",
                "VANCO-1G",
                "--system",
                "ndc",
                "--code",
                "0069258799",
                "--ndc-shape",
                "3-3-4",
            ],
            "--ndc-shape '3-3-4'",
        ),
        ({}, ["xref", "remove", "--system", "ndc", "--code", "1111-2222-33"], "--code: "),
    ]
    for env, args, named in cases:
        with monkeypatch.context() as patched:
            for name, value in env.items():
                patched.setenv(name, value)
            code, out, err = run_main(args, monkeypatch, capsys)
        assert code == 2, (args, out, err)
        assert named in err, (args, err)
        assert "Traceback" not in err + out
        assert len(err.strip().splitlines()) == 1, err
        assert "secret" not in err  # the database password is never printed


def test_a_busy_port_stops_the_start_before_it_announces_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("MEDBRIDGE_LOG_JSON", "false")
    monkeypatch.setenv("MEDBRIDGE_DATABASE_URL", f"sqlite:///{tmp_path / 'mb.db'}")
    monkeypatch.setenv("MEDBRIDGE_VAR_DIR", str(tmp_path / "var"))
    with socket.create_server(("127.0.0.1", 0)) as free:
        http_port = free.getsockname()[1]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        monkeypatch.setenv("MEDBRIDGE_MLLP_PORT", str(port))
        monkeypatch.setenv("MEDBRIDGE_HTTP_PORT", str(http_port))
        code, out, err = run_main(["run"], monkeypatch, capsys)
    assert code == 2
    assert f"MEDBRIDGE_MLLP_PORT: cannot listen on 127.0.0.1:{port}" in err
    assert "admin API key" not in out
    assert "Traceback" not in err + out
    assert not (tmp_path / "var" / "admin_api_key").exists()


def test_the_demo_cabinets_unknown_ndc_replays_once_mapped_as_the_tour_says(
    medbridge: MedBridge, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README: ``xref item VANCO-1G --system ndc --code 12345-6789-01`` then
    ``exceptions replay 1`` applies the parked dispense (it failed: unit=CAP, the unknown
    code came with whatever drug the cabinet had picked)."""
    monkeypatch.setattr(cabinets_module, "UNKNOWN_NDC_SHARE", 1.0)
    DemoTraffic(medbridge.intake, rate=1, seed=5).open_stock()
    medbridge.consumers["ledger"].drain()
    cabinets = DemoCabinets(medbridge.engine, "127.0.0.1", 0, rate=1, seed=5)
    with running_listener(medbridge) as listener, MllpClient("127.0.0.1", listener.port) as client:
        for source in ("hl7:PYXIS@H1", "hl7:PYXIS@H2", "hl7:PYXIS@H1", "hl7:PYXIS@H2"):
            message = cabinets.message(source)
            assert message is not None
            assert "12345-6789-01" in message
            client.send(message)
    runner, env = CliRunner(), cli_env(database_url)
    listed = runner.invoke(cli, ["exceptions", "list"], env=env)
    assert "4 exception(s)" in listed.output, listed.output
    mapped = runner.invoke(
        cli, ["xref", "item", "VANCO-1G", "--system", "ndc", "--code", "12345-6789-01"], env=env
    )
    assert mapped.exit_code == 0, mapped.output
    with medbridge.engine.connect() as conn:
        parked = [str(e.id) for e in exception_store.listing(conn, status="open")]
    replayed = runner.invoke(cli, ["exceptions", "replay", *parked], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.count("accepted") == 4
    medbridge.consumers["ledger"].drain()
    assert medbridge.bus.dead_letter_count("ledger") == 0
