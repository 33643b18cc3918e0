"""A failing consumer retries with backoff, dead-letters with the error, and `medbridge dlq
replay` applies the message exactly once after the cause is fixed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.bus.port import DeadLetterFilter
from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import AccountAssignment, AccountRole
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.cli import app as cli
from medbridge.flows.intake import Submission
from medbridge.store import ledger as ledger_store
from medbridge.store.tables import account_assignments, journal_entries

pytestmark = pytest.mark.db


def movement(kind: MovementKind, quantity: str, **extra: object) -> StockMovement:
    return StockMovement(
        kind=kind,
        item="AMPI-250",
        location="H2-ED",
        quantity=Decimal(quantity),
        unit="CAP",
        occurred_at=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
        **extra,  # type: ignore[arg-type]
    )


def on_hand(mb: MedBridge) -> Decimal:
    with mb.engine.connect() as conn:
        rows = ledger_store.stock(conn, item="AMPI-250", location="H2-ED")
    return sum((r.quantity for r in rows), Decimal(0))


def entries(mb: MedBridge) -> int:
    with mb.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(journal_entries)).scalar_one())


@pytest.fixture
def cli_env(database_url: str, medbridge: MedBridge) -> dict[str, str]:
    return {
        "MEDBRIDGE_DATABASE_URL": database_url,
        "MEDBRIDGE_LOG_JSON": "false",
        "COLUMNS": "250",  # rich wraps tables to the terminal width
    }


def test_retry_then_dead_letter_then_replay_after_the_fix(
    medbridge: MedBridge, cli_env: dict[str, str]
) -> None:
    # the cause: H2 has no wastage expense account assigned
    with medbridge.engine.begin() as conn:
        conn.execute(
            delete(account_assignments).where(
                account_assignments.c.facility == "H2",
                account_assignments.c.role == AccountRole.WASTAGE_EXPENSE.value,
            )
        )
    delays: list[float] = []
    consumer = medbridge.consumers["ledger"]
    consumer._sleep = delays.append  # record the backoff instead of waiting
    medbridge.intake.submit(
        [
            Submission(movement(MovementKind.RECEIPT, "100", unit_cost=Money(amount="0.40")), "r1"),
            Submission(movement(MovementKind.WASTAGE, "7", reason="dropped"), "w1"),
            Submission(movement(MovementKind.DISPENSE, "3"), "d1"),
        ],
        "test",
    )
    consumer.drain()

    # retried with growing backoff, then dead-lettered with the error; the others applied
    settings = medbridge.settings
    assert len(delays) == settings.retry_max_attempts - 1
    assert delays == sorted(delays)  # exponential: each wait at least the one before
    [dead] = medbridge.bus.dead_letters(DeadLetterFilter(group="ledger"))
    assert dead.error_type == "MissingAccount"
    assert "wastage_expense" in dead.error
    assert "H2" in dead.error
    assert dead.attempts == settings.retry_max_attempts
    assert dead.event_type == "inventory.wasted.v1"
    assert medbridge.bus.lag("ledger") == 0
    assert on_hand(medbridge) == Decimal(97)
    assert entries(medbridge) == 2

    runner = CliRunner()
    listed = runner.invoke(cli, ["dlq", "list"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    assert "MissingAccount" in listed.output
    assert "1 dead letter" in listed.output

    # replaying before the fix fails again and keeps it dead
    still = runner.invoke(cli, ["dlq", "replay", str(dead.id)], env=cli_env)
    assert still.exit_code == 1
    assert "0 applied, 1 failed" in still.output
    assert medbridge.bus.dead_letter_count("ledger") == 1

    # the fix, then the replay: applied once
    with medbridge.engine.begin() as conn:
        medbridge.masterdata.assign_account(
            conn,
            AccountAssignment(facility="H2", role=AccountRole.WASTAGE_EXPENSE, account="5300-H2"),
        )
    replay = runner.invoke(cli, ["dlq", "replay", str(dead.id)], env=cli_env)
    assert replay.exit_code == 0, replay.output
    assert "1 applied, 0 failed" in replay.output
    assert on_hand(medbridge) == Decimal(90)
    assert entries(medbridge) == 3
    assert medbridge.bus.dead_letter_count("ledger") == 0

    # replaying again (all, by filter) does nothing more
    again = runner.invoke(
        cli, ["dlq", "replay", "--event-type", "inventory.wasted.v1"], env=cli_env
    )
    assert again.exit_code == 0
    assert "0 applied" in again.output
    consumer.handler([medbridge.bus.get(dead.event_seq)])  # type: ignore[list-item]
    assert on_hand(medbridge) == Decimal(90)
    assert entries(medbridge) == 3


def test_a_request_beyond_the_stock_is_dead_lettered_at_once_and_replayed_after_a_receipt(
    medbridge: MedBridge,
) -> None:
    """Wastage is a request: refused beyond the stock (a dispense is a fact and is applied,
    see test_stock_discrepancy.py)."""
    delays: list[float] = []
    consumer = medbridge.consumers["ledger"]
    consumer._sleep = delays.append
    medbridge.intake.submit(
        [Submission(movement(MovementKind.WASTAGE, "5", reason="expired"), "w1")], "test"
    )
    consumer.drain()
    [dead] = medbridge.bus.dead_letters(DeadLetterFilter(group="ledger"))
    assert dead.error_type == "InsufficientStock"
    assert dead.attempts == 1
    assert delays == []  # permanent: no retry can help
    assert dead.context["permanent"] is True

    medbridge.intake.submit(
        [Submission(movement(MovementKind.RECEIPT, "20", unit_cost=Money(amount="0.40")), "r1")],
        "test",
    )
    consumer.drain()
    report = consumer.replay(DeadLetterFilter(subject="AMPI-250@H2-ED"), actor="test")
    assert report.applied == [dead.id]
    assert not report.failed
    assert on_hand(medbridge) == Decimal(15)


def test_a_database_outage_pauses_the_consumer_and_blames_no_message(medbridge: MedBridge) -> None:
    consumer = medbridge.consumers["ledger"]
    real_handler = consumer.handler
    outage = {"left": 3}

    class FlakyDatabase:
        name = real_handler.name

        def __call__(self, messages: object) -> None:
            if outage["left"]:
                outage["left"] -= 1
                raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))
            real_handler(messages)  # type: ignore[arg-type]

    consumer.handler = FlakyDatabase()
    medbridge.intake.submit(
        [Submission(movement(MovementKind.RECEIPT, "10", unit_cost=Money(amount="0.40")), "r1")],
        "test",
    )
    for _ in range(3):
        with pytest.raises(OperationalError):
            consumer.poll_once()
        assert medbridge.bus.lag("ledger") == 1
    assert medbridge.bus.dead_letter_count("ledger") == 0
    consumer.drain()
    assert on_hand(medbridge) == Decimal(10)
