"""Retention of raw message bodies: a pruned body is gone from the store and in the archive;
the message's row, its events and the exception queue stay; each connector keeps its own
age; a round is bounded in batches; the CLI does the same by hand."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from hl7_support import map_hl7_sources, rds, running_listener
from medbridge.app import MedBridge
from medbridge.canonical.messages import MessageRecord, MessageStatus
from medbridge.cli import app as cli
from medbridge.connectors.hl7v2 import MllpClient
from medbridge.flows.retention import EVERY_CONNECTOR, MessageRetention
from medbridge.store import messages as message_store
from medbridge.store.tables import bus_events, inbound_exceptions, message_bodies, messages

pytestmark = pytest.mark.db

LATER = datetime.now(UTC) + timedelta(days=40)


def count(mb: MedBridge, table: object) -> int:
    with mb.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def receive_hl7(mb: MedBridge, *control_ids: str) -> None:
    map_hl7_sources(mb)
    with running_listener(mb) as listener, MllpClient("127.0.0.1", listener.port) as client:
        for c in control_ids:
            client.send(rds(c).encode())
        unmapped = rds("PARK-1").replace("0069-2587-10", "12345-6789-01")
        client.send(unmapped.encode())


def archived(root: Path) -> dict[str, dict[str, str]]:
    found = {}
    for path in root.rglob("*.jsonl.gz"):
        with gzip.open(path, "rt") as lines:
            for line in lines:
                row = json.loads(line)
                found[row["message_id"]] = row
    return found


def test_pruned_bodies_are_archived_and_gone_rows_and_records_stay(
    medbridge: MedBridge, tmp_path: Path
) -> None:
    receive_hl7(medbridge, "K-1", "K-2", "K-3")
    with medbridge.engine.connect() as conn:
        bodies = {r.message_id: r.body for r in conn.execute(select(message_bodies))}
    assert len(bodies) == 4
    events, parked = count(medbridge, bus_events), count(medbridge, inbound_exceptions)

    retention = MessageRetention(
        medbridge.engine, {"hl7v2": timedelta(days=30)}, archive_dir=tmp_path / "archive", batch=3
    )
    assert retention.prune_once().total == 0  # nothing is 30 days old yet
    report = retention.prune_once(now=LATER)
    assert report.pruned == {"hl7v2": 4}
    assert report.batches == 2
    assert report.complete

    assert count(medbridge, message_bodies) == 0
    assert count(medbridge, messages) == 4
    assert count(medbridge, bus_events) == events == 3
    assert count(medbridge, inbound_exceptions) == parked == 1
    kept = archived(tmp_path / "archive")
    assert {k: v["body"] for k, v in kept.items()} == bodies
    assert all(v["connector"] == "hl7v2" for v in kept.values())


def test_each_connector_keeps_its_own_age_and_a_round_is_bounded(
    medbridge: MedBridge,
) -> None:
    now = datetime.now(UTC)
    records = [
        MessageRecord(
            protocol=connector,
            connector=connector,
            raw=f"body {n}",
            status=MessageStatus.APPLIED,
            received_at=now - timedelta(days=days),
        )
        for n, (connector, days) in enumerate(
            [("x12", 10)] * 5 + [("hl7v2", 10)] * 2 + [("cxml", 100)] * 2 + [("cxml", 1)]
        )
    ]
    with medbridge.engine.begin() as conn:
        message_store.write(conn, records)
    ages = {"hl7v2": timedelta(days=30), EVERY_CONNECTOR: timedelta(days=5)}
    retention = MessageRetention(medbridge.engine, ages, batch=2, max_batches=2, pause=0)

    first = retention.prune_once()
    assert first.batches == 2
    assert not first.complete
    assert first.total == 4
    second = retention.prune_once()
    assert second.complete
    with medbridge.engine.connect() as conn:
        left = sorted(r.connector for r in conn.execute(select(message_bodies.c.connector)))
    assert left == ["cxml", "hl7v2", "hl7v2"]  # hl7v2 keeps 30 days; cxml's newest is 1 day
    assert count(medbridge, messages) == 10


def test_the_cli_prunes_by_hand(medbridge: MedBridge, database_url: str, tmp_path: Path) -> None:
    old = MessageRecord(
        protocol="x12",
        connector="x12",
        raw="ISA*old~",
        status=MessageStatus.APPLIED,
        received_at=datetime.now(UTC) - timedelta(days=9),
    )
    with medbridge.engine.begin() as conn:
        message_store.write(conn, [old])
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "200"}
    runner = CliRunner()
    nothing = runner.invoke(cli, ["messages", "prune"], env=env)
    assert nothing.exit_code == 0
    assert "no retention configured" in nothing.output
    args = ["messages", "prune", "--older-than-days", "7", "--archive", str(tmp_path)]
    done = runner.invoke(cli, args, env=env)
    assert done.exit_code == 0, done.output
    assert "1 body(ies) pruned (x12 1)" in done.output
    assert list(archived(tmp_path)) == [old.id]
    assert count(medbridge, message_bodies) == 0
