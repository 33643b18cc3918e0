"""MedBridge configured with MEDBRIDGE_ERP_* posts its journal to a real Tryton from its own
worker, exactly once, and `medbridge erp reconcile` finds nothing to report."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.cli import app as cli
from medbridge.flows.intake import Submission
from medbridge.store import erp_postings as erp_store
from peers.tryton import TrytonPeer

pytestmark = [pytest.mark.peer]


def movement(kind: MovementKind, key: str, quantity: str, **more: object) -> Submission:
    return Submission(
        StockMovement(
            kind=kind,
            item="VANCO-1G",
            location="H1-PHARM",
            quantity=Decimal(quantity),
            unit="VIAL",
            occurred_at=datetime.now(UTC),
            **more,  # type: ignore[arg-type]
        ),
        key,
    )


def test_configured_medbridge_posts_to_tryton_once_and_reconciles(
    tryton: TrytonPeer, medbridge: MedBridge, database_url: str
) -> None:
    settings = medbridge.settings.model_copy(
        update={
            "erp_url": tryton.url,
            "erp_database": tryton.database,
            "erp_user": tryton.login,
            "erp_password": SecretStr(tryton.password),
            "erp_rate_limit": 50.0,
            "erp_poll_interval": 0.1,
            "erp_gl_posting": "per_event",  # the dispense's own move, not its hour's summary
        }
    )
    running = MedBridge.build(settings)
    running.intake.submit(
        [
            movement(MovementKind.RECEIPT, "r1", "40", unit_cost=Money(amount="6.85")),
            movement(MovementKind.DISPENSE, "d1", "3"),
            movement(MovementKind.DISPENSE, "d2", "2"),
        ],
        "test",
    )
    running.start_workers()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with running.engine.connect() as conn:
                if erp_store.counts(conn).get(erp_store.PostingStatus.POSTED, 0) == 3:
                    break
            time.sleep(0.2)
    finally:
        running.stop_workers()
    with running.engine.connect() as conn:
        counts = erp_store.counts(conn)
        postings = erp_store.postings(conn)
    assert counts.get(erp_store.PostingStatus.POSTED, 0) == 3, counts
    erp = running.erp()
    assert erp is not None
    for posting in postings:
        found = erp.find_journal_entry(posting.entry_id)
        assert found is not None
        assert found.erp_id == posting.erp_id

    env = {
        "MEDBRIDGE_DATABASE_URL": database_url,
        "MEDBRIDGE_ERP_URL": tryton.url,
        "MEDBRIDGE_ERP_DATABASE": tryton.database,
        "MEDBRIDGE_ERP_USER": tryton.login,
        "MEDBRIDGE_ERP_PASSWORD": tryton.password,
        "MEDBRIDGE_LOG_JSON": "false",
        "COLUMNS": "250",
    }
    period = datetime.now(UTC).strftime("%Y-%m")
    result = CliRunner().invoke(cli, ["erp", "reconcile", period], env=env)
    assert result.exit_code == 0, result.output
    assert "3 entries, 3 ERP moves, 0 difference(s)" in result.output
    status = CliRunner().invoke(cli, ["erp", "postings"], env=env)
    assert "posted: 3" in status.output


def test_sync_reads_the_real_erps_products_and_suppliers(
    tryton: TrytonPeer, medbridge: MedBridge
) -> None:
    from medbridge.connectors.tryton.outbound import TrytonErp
    from medbridge.flows.erp_sync import sync_from_erp

    report = sync_from_erp(
        medbridge.engine, medbridge.masterdata, TrytonErp(tryton.config()), "tryton:t"
    )
    assert {"VANCO-1G", "AMPI-250", "DRAPE-SM"} <= set(report.linked.values())
    assert report.unmatched == []
