"""Several ERP destinations (issue 17) on the database: settings name them, the routing
table sends each journal entry to its system of record and shadows (one outbox row per
destination), each destination posts with its own worker and GL posting mode."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.erp_routing import Role, RoutingError
from medbridge.flows.erp_posting import ErpPosting, requeue
from medbridge.flows.gl_summary import GlSummarizer
from medbridge.flows.intake import Submission
from medbridge.governance.clients import Role as ClientRole
from medbridge.runtime import policies
from medbridge.settings import Settings
from medbridge.store import erp_postings, gl_summaries
from medbridge.store.erp_postings import PostingStatus

pytestmark = pytest.mark.db

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def two_erps(database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "var_dir": tmp_path / "var",
        "sqlite_synchronous": "NORMAL",
        "retry_max_attempts": 3,
        "workflows_enabled": False,
        "erps": {
            "legacy": {"batch_size": 20},  # summarised GL posting: the default
            "cloud": {"gl_posting": "per_event", "rate_limit": 50.0},
        },
        "erp_routes": {"gl": {"record": "legacy", "shadow": ["cloud"]}},
    }
    return Settings(**(values | extra))


@pytest.fixture
def mb(engine: Engine, database_url: str, tmp_path: Path) -> Iterator[MedBridge]:
    built = MedBridge.build(two_erps(database_url, tmp_path))
    built.seed_demo()
    yield built
    built.stop_workers()
    built.engine.dispose()


def movement(kind: MovementKind, minute: int, quantity: str, hour: int = 10) -> StockMovement:
    return StockMovement(
        kind=kind,
        item="VANCO-1G",
        location="H1-PHARM",
        quantity=Decimal(quantity),
        unit="VIAL",
        lot="V2611A",
        expiry=date(2028, 3, 31),
        unit_cost=Money(amount=Decimal("6.85")) if kind is MovementKind.RECEIPT else None,
        occurred_at=AT.replace(hour=hour, minute=minute),
    )


def submit(mb: MedBridge, *movements: StockMovement) -> None:
    mb.intake.submit(
        [Submission(m, f"dest-{m.kind.value}-{m.occurred_at:%H%M}") for m in movements],
        source="destinations-test",
    )
    mb.consumers["ledger"].drain()


def test_each_entry_is_queued_once_per_destination_with_its_role_and_mode(mb: MedBridge) -> None:
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, *(movement(MovementKind.DISPENSE, 5 * n, "2") for n in range(4)))
    with mb.engine.connect() as conn:
        rows = erp_postings.postings(conn)
    by_destination = {
        name: sorted((p.document, p.role, p.status) for p in rows if p.destination == name)
        for name in ("legacy", "cloud")
    }
    assert len(rows) == 10  # 5 entries x 2 destinations
    # legacy is the system of record and summarises the dispenses (the default)
    assert [(r, s) for _, r, s in by_destination["legacy"]] == sorted(
        [(Role.RECORD, PostingStatus.SUMMARISING)] * 4 + [(Role.RECORD, PostingStatus.PENDING)]
    )
    # cloud is the shadow, per event
    assert {(r, s) for _, r, s in by_destination["cloud"]} == {(Role.SHADOW, PostingStatus.PENDING)}
    assert {d for d, _, _ in by_destination["legacy"]} == {d for d, _, _ in by_destination["cloud"]}


def test_each_destination_posts_with_its_own_worker_exactly_once(mb: MedBridge) -> None:
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    submit(mb, *(movement(MovementKind.DISPENSE, 5 * n, "2") for n in range(4)))
    legacy, cloud = FakeErp(), FakeErp()
    cloud_worker = ErpPosting(mb.engine, cloud, mb.erp_posting_policy("cloud"))
    legacy_worker = ErpPosting(mb.engine, legacy, mb.erp_posting_policy("legacy"))
    cloud.lose_next_answer()  # a lost answer: the repeat finds the moves
    assert cloud_worker.drain() == 5
    assert cloud_worker.drain() == 0
    assert len(cloud.moves()) == 5  # one per entry, never two
    assert legacy_worker.drain() == 1  # the receipt; the dispenses wait for their slice
    summarizer = GlSummarizer(
        mb.engine,
        legacy,
        policies.gl_posting_policy(mb.settings, "legacy"),
        now=lambda: AT + timedelta(hours=2),
    )
    assert summarizer.run_once() == (1, 1)
    assert [m.reference for m in legacy.moves()].count("SUM-H1-2026-11-20T10") == 1
    assert len(legacy.moves()) == 2
    with mb.engine.connect() as conn:
        counts = {name: erp_postings.counts(conn, destination=name) for name in ("legacy", "cloud")}
        summary = gl_summaries.get(conn, "SUM-H1-2026-11-20T10", "legacy")
        assert gl_summaries.get(conn, "SUM-H1-2026-11-20T10", "cloud") is None
    assert counts["legacy"][PostingStatus.POSTED] == 5
    assert counts["cloud"][PostingStatus.POSTED] == 5
    assert summary is not None
    assert summary.destination == "legacy"


def test_a_rejection_in_one_destination_is_requeued_there_only(mb: MedBridge) -> None:
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    legacy, cloud = FakeErp(), FakeErp(accounts={"1400-H1"})  # the cloud's chart is not ready
    assert ErpPosting(mb.engine, cloud, mb.erp_posting_policy("cloud")).drain() == 1
    assert ErpPosting(mb.engine, legacy, mb.erp_posting_policy("legacy")).drain() == 1
    with mb.engine.connect() as conn:
        [failed] = erp_postings.postings(conn, status=PostingStatus.FAILED)
        [posted] = erp_postings.postings(conn, status=PostingStatus.POSTED)
    assert (failed.destination, posted.destination) == ("cloud", "legacy")
    assert requeue(mb.engine, failed.document, actor="test", destination="legacy") is False
    assert requeue(mb.engine, failed.document, actor="test") is True
    with mb.engine.connect() as conn:
        again = erp_postings.get(conn, failed.document, "cloud")
        still = erp_postings.get(conn, failed.document, "legacy")
    assert again is not None
    assert again.status is PostingStatus.PENDING
    assert still is not None
    assert still.status is PostingStatus.POSTED


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"erp_routes": {}}, "several erps need erp_routes"),
        ({"erps": {"Legacy": {}}}, "a destination name is"),
        ({"erp_url": "http://127.0.0.1:1/"}, "erp_url and erps"),
        ({"erps": {"legacy": {"url": "http://127.0.0.1:1/"}}}, "needs its database"),
    ],
)
def test_settings_that_cannot_route_are_refused_at_start(
    database_url: str, tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        two_erps(database_url, tmp_path, **extra)


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"gl": {"record": "legacy", "shadow": ["nowhere"]}}, "no ERP destination 'nowhere'"),
        ({"invoices": {"record": "cloud"}}, "does not offer payables"),
        ({"gl": {"record": "legacy", "shadow": ["legacy"]}}, "both system of record and shadow"),
    ],
)
def test_a_route_the_destinations_cannot_serve_is_refused_naming_it(
    database_url: str, tmp_path: Path, routes: dict[str, Any], message: str
) -> None:
    settings = two_erps(
        database_url,
        tmp_path,
        erps={"legacy": {}, "cloud": {"capabilities": ["general_ledger"]}},
        erp_routes=routes,
    )
    with pytest.raises(RoutingError, match=message):
        policies.erp_router(settings)


def test_the_outbox_is_read_per_destination_over_the_api(mb: MedBridge) -> None:
    submit(mb, movement(MovementKind.RECEIPT, 0, "100", hour=9))
    reader = mb.clients.register("finance-analyst", ClientRole.READER)
    with TestClient(mb.api(), headers={"X-API-Key": reader}) as client:
        cloud = client.get("/v1/erp-postings", params={"destination": "cloud"}).json()
        everything = client.get("/v1/erp-postings").json()
        bad = client.get("/v1/erp-postings", params={"destination": "Cloud!"})
    [item] = cloud["items"]
    assert (item["destination"], item["role"], item["kind"], item["domain"]) == (
        "cloud",
        "shadow",
        "journal_entry",
        "gl",
    )
    assert cloud["counts"]["pending"] == 1
    assert sorted(i["destination"] for i in everything["items"]) == ["cloud", "legacy"]
    assert bad.status_code == 422
    assert "destination" in bad.text
