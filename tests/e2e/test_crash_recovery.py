"""SIGKILL a real `medbridge run` while it applies a stream of movements, restart it, and
find every accepted movement applied and posted exactly once.

The client behaves as a real integration engine does: a batch not answered 202 is sent again
(same idempotency keys) until it is, across the crash.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from medbridge.app import MedBridge
from medbridge.bus.sql import SqlBus
from medbridge.store.tables import consumer_dedup, journal_entries, ledger_movements, stock_lots

pytestmark = [pytest.mark.db, pytest.mark.slow]

ADMIN_KEY = "crash-test-admin-key-0123456789abcdef"
BATCHES, BATCH_SIZE = 24, 250
STORES = ["H1-PHARM", "H1-ICU", "H2-PHARM", "H2-ED"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A `medbridge run` subprocess."""

    def __init__(self, database_url: str, var_dir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "MEDBRIDGE_DATABASE_URL": database_url,
            "MEDBRIDGE_VAR_DIR": str(var_dir),
            "MEDBRIDGE_HTTP_PORT": str(port),
            "MEDBRIDGE_ADMIN_API_KEY": ADMIN_KEY,
            "MEDBRIDGE_CONSUMER_BATCH_SIZE": "100",
        }
        self.log = var_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "medbridge.cli", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError("medbridge run did not answer /health within 60 s")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def movements(batch: int) -> list[dict[str, Any]]:
    return [
        {
            "idempotency_key": f"crash-{batch}-{n}",
            "kind": "dispense",
            "item": "VANCO-1G",
            "location": STORES[n % len(STORES)],
            "quantity": "1",
            "unit": "VIAL",
            "occurred_at": "2026-11-22T06:00:00+00:00",
        }
        for n in range(BATCH_SIZE)
    ]


def opening_stock() -> list[dict[str, Any]]:
    return [
        {
            "idempotency_key": f"open-{store}",
            "kind": "receipt",
            "item": "VANCO-1G",
            "location": store,
            "quantity": "10000",
            "unit": "VIAL",
            "lot": f"OPEN-{store}",
            "unit_cost": {"amount": "6.85"},
            "occurred_at": "2026-11-22T05:00:00+00:00",
        }
        for store in STORES
    ]


def send_until_accepted(server: Server, body: list[dict[str, Any]]) -> None:
    headers = {"X-API-Key": ADMIN_KEY}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(
                f"{server.url}/v1/stock-movements", json=body, headers=headers, timeout=30
            )
        except httpx.TransportError:
            if server.process is not None and server.process.poll() is not None:
                server.start()
            time.sleep(0.2)
            continue
        assert answer.status_code == 202, answer.text
        return
    raise AssertionError("batch never accepted")


def scalar(engine: Engine, stmt: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


@pytest.fixture
def server(medbridge: MedBridge, database_url: str, tmp_path: Path) -> Iterator[Server]:
    running = Server(database_url, tmp_path, free_port())
    yield running
    running.stop()


def test_sigkill_while_applying_then_restart_applies_everything_exactly_once(
    server: Server, medbridge: MedBridge
) -> None:
    bus = SqlBus(medbridge.engine, medbridge.settings.bus_partitions)
    server.start()
    send_until_accepted(server, opening_stock())
    killed_with_backlog = 0
    for batch in range(BATCHES):
        send_until_accepted(server, movements(batch))
        if batch in (8, 16):  # kill twice, while the consumer has a backlog to apply
            killed_with_backlog += bus.lag("ledger") > 0
            server.kill()
    assert killed_with_backlog >= 1, "the consumer was idle at every kill: nothing was tested"

    if server.process is None or server.process.poll() is not None:
        server.start()
    deadline = time.monotonic() + 120
    while bus.lag("ledger") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bus.lag("ledger") == 0

    accepted = BATCHES * BATCH_SIZE + len(STORES)
    assert scalar(medbridge.engine, select(func.count()).select_from(ledger_movements)) == accepted
    assert scalar(medbridge.engine, select(func.count()).select_from(journal_entries)) == accepted
    assert scalar(medbridge.engine, select(func.count()).select_from(consumer_dedup)) == accepted
    on_hand = scalar(
        medbridge.engine, select(func.sum(stock_lots.c.quantity, type_=stock_lots.c.quantity.type))
    )
    assert on_hand == Decimal(10000 * len(STORES) - BATCHES * BATCH_SIZE)
    assert medbridge.bus.dead_letter_count("ledger") == 0
    check = httpx.get(
        f"{server.url}/v1/ledger/reconciliation", headers={"X-API-Key": ADMIN_KEY}, timeout=10
    ).json()
    assert check["balanced"] is True, check
