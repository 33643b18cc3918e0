"""A ``medbridge run`` whose purchase order waits for the supplier's acknowledgement stops on
SIGTERM, exit 0, and the order's workflow resumes at the next start.

The order's workflow waits in ``DBOS.recv`` for ``ack_timeout`` (4 h by default). Before
``runtime.processes.leave_waiting_workflows`` the interpreter joined that thread at exit, so
the stopped process stayed alive until SIGKILL. The bound below only tells a hang from a
stop (a hang lasts hours); nothing here measures how fast the stop is.

The workflow must stay pending, not ended: DBOS's ``workflow_status`` still says PENDING
after the stop, and the restarted process recovers it, so that at its own stop it is waiting
again (its ``recovery_attempts`` counted up)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from medbridge.app import MedBridge
from medbridge.canonical.partners import TradingPartner
from medbridge.settings import Settings
from medbridge.store import procurement as store
from medbridge.store.db import create_db_engine
from peers.tryton import TrytonPeer
from peers.trytond import free_port
from rest_movements import movement

pytestmark = [pytest.mark.peer, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "stop-test-admin-key-0123456789"
READY = 120.0
STOPS_WITHIN = 60.0
"""A stop that takes longer is the hang this test is about (the acknowledgement wait is 4 h)."""


def _until(done: Callable[[], bool], what: Callable[[], Any]) -> None:
    deadline = time.monotonic() + READY
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    raise AssertionError(f"not done in {READY} s: {what()}")


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "medbridge.cli", "run"],
            env=env,
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{env['MEDBRIDGE_HTTP_PORT']}"

    def up() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            return httpx.get(f"{base}/health", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    _until(up, lambda: log.read_text(errors="replace")[-3000:])
    return process


def _stop(process: subprocess.Popen[bytes], log: Path) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(STOPS_WITHIN)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        raise AssertionError(
            "still running after SIGTERM: " + log.read_text(errors="replace")[-3000:]
        ) from None


def test_a_stop_leaves_a_waiting_order_pending_and_the_next_start_resumes_it(
    tmp_path: Path, tryton: TrytonPeer
) -> None:
    url = f"sqlite:///{tmp_path / 'medbridge.db'}"
    mb = MedBridge.build(Settings(database_url=url, var_dir=tmp_path / "var"))
    mb.upgrade_database()
    mb.seed_demo()
    mb.engine.dispose()
    outbound = tmp_path / "mck-out"
    outbound.mkdir()
    partner = TradingPartner(code="MCK", x12_id="MCKDEMO", outbound_folder=outbound)
    dbos_db = tmp_path / "dbos.sqlite"
    erp = tryton.config()  # the order is created in the ERP before it is sent
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDBRIDGE_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT / "src"),
            "MEDBRIDGE_DATABASE_URL": url,
            "MEDBRIDGE_WORKFLOW_DATABASE_URL": f"sqlite:///{dbos_db}",
            "MEDBRIDGE_VAR_DIR": str(tmp_path / "var"),
            "MEDBRIDGE_HTTP_HOST": "127.0.0.1",
            "MEDBRIDGE_HTTP_PORT": str(free_port()),
            "MEDBRIDGE_ADMIN_API_KEY": ADMIN_KEY,
            "MEDBRIDGE_MLLP_ENABLED": "false",
            "MEDBRIDGE_PARTNERS": json.dumps({"MCK": partner.model_dump(mode="json")}),
            "MEDBRIDGE_CONSOLIDATION_WINDOW": "0",
            "MEDBRIDGE_REPLENISHMENT_INTERVAL": "0.5",
            "MEDBRIDGE_WORKFLOW_POLL_INTERVAL": "0.05",
            "MEDBRIDGE_ERP_URL": str(erp.url),
            "MEDBRIDGE_ERP_DATABASE": erp.database,
            "MEDBRIDGE_ERP_USER": erp.user,
            "MEDBRIDGE_ERP_PASSWORD": erp.password.get_secret_value(),
            "MEDBRIDGE_ERP_POLL_INTERVAL": "0.2",
        }
    )
    log = tmp_path / "medbridge.log"
    engine = create_db_engine(url)
    headers = {"X-API-Key": ADMIN_KEY}
    base = f"http://127.0.0.1:{env['MEDBRIDGE_HTTP_PORT']}"

    def orders() -> list[tuple[str, str]]:
        with engine.connect() as conn:
            return [(o["reference"], o["status"]) for o in store.orders(conn)]

    def workflow(reference: str) -> tuple[str, int]:
        dbos = create_engine(f"sqlite:///{dbos_db}")
        try:
            with dbos.connect() as conn:
                row = conn.execute(
                    text(
                        "SELECT status, recovery_attempts FROM workflow_status"
                        " WHERE workflow_uuid = :id"
                    ),
                    {"id": reference},
                ).one()
        finally:
            dbos.dispose()
        return str(row[0]), int(row[1])

    process = _start(env, log)
    try:
        for kind, quantity, key in (
            ("receipt", 200, "stop-stock"),
            ("dispense", 55, "stop-dispense"),
        ):
            answer = httpx.post(
                f"{base}/v1/stock-movements",
                json=movement(key, kind, quantity=quantity),
                headers=headers,
                timeout=30.0,
            )
            assert answer.status_code == 202, answer.text
        _until(lambda: [s for _, s in orders()] == ["sent"], orders)  # waiting for its 855
        ((reference, _),) = orders()
        assert list(outbound.iterdir()), "the 850 was written for the supplier"

        assert _stop(process, log) == 0
        first = log.read_text(errors="replace")
        assert "process.left_waiting" in first
        status, attempts = workflow(reference)
        assert status == "PENDING"  # not ended: no timeout or error was recorded

        process = _start(env, log)
        _until(lambda: workflow(reference)[1] > attempts, lambda: workflow(reference))
        assert orders() == [(reference, "sent")]  # nothing sent or decided twice
        assert _stop(process, log) == 0
        again = log.read_text(errors="replace")[len(first) :]
        assert "process.left_waiting" in again  # the recovered workflow waits again
        assert workflow(reference)[0] == "PENDING"
        assert len(list(outbound.iterdir())) == 1  # the 850 not sent again
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        engine.dispose()
