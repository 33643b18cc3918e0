"""Scale-out: one ``medbridge api``, one ``medbridge listen`` and two ``medbridge worker``
processes on PostgreSQL (a fresh database) and NATS JetStream (a ``nats-server`` of the
test's own, on a free port with its own store directory), selected by settings alone.

Opening stock goes in over REST; then dispenses, half over REST to the api process and half
as HL7 RDS^O13 over MLLP to the listen process, in two halves:

- after the first half one worker is killed with SIGKILL while work is pending: the other
  takes its partitions over once the JetStream leases expire (``MEDBRIDGE_BUS_ACK_WAIT`` is
  2 s here) and finishes;
- during the second half the NATS server is killed (SIGKILL) and started again on the same
  store while the senders are sending. Meanwhile the api answers 503 and the listener
  ``MSA|AR`` once an append has waited its request timeout (a shorter outage only delays
  the acknowledgements: the NATS client holds the publishes and sends them on reconnecting);
  the senders do what a sender must, resend what was not acknowledged, and the stream's
  duplicate window makes a resent message that had been stored count once.

Then every movement is applied and journaled exactly once, the per-key order held (no stock
discrepancy: no dispense was applied before its receipt), on-hand stock is what was received
less what was dispensed, and ledger = GL.

``MOVEMENTS`` dispenses by default (10,000); issue 14 asks for 100,000: set
``MEDBRIDGE_SCALEOUT_MOVEMENTS=100000``. Nothing here asserts on elapsed time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from medbridge.app import MedBridge
from medbridge.bus.jetstream import JetStreamConfig
from medbridge.canonical.masterdata import CodeSystem
from medbridge.connectors.hl7v2.errors import FramingError
from medbridge.connectors.hl7v2.outbound import MllpClient
from medbridge.demo.network import CABINETS, ITEMS
from medbridge.flows.ledger_posting import DISCREPANCY
from medbridge.settings import Settings
from medbridge.store.db import create_db_engine, normalize_url
from medbridge.store.tables import (
    audit_log,
    consumer_dedup,
    journal_entries,
    ledger_movements,
    stock_lots,
    work_items,
)

pytestmark = [pytest.mark.slow, pytest.mark.nats]

MOVEMENTS = int(os.environ.get("MEDBRIDGE_SCALEOUT_MOVEMENTS", "10000"))
POSTGRES = os.environ.get(
    "MEDBRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ADMIN_KEY = "scale-out-admin-key-0123456789abcdef"
ITEM = "VANCO-1G"
REST_STORES = ["H1-PHARM", "H2-PHARM", "H1-ICU", "H2-ED"]
HL7_SENDERS = ["hl7:PYXIS@H1", "hl7:PYXIS@H2"]
STORES = sorted(set(REST_STORES) | {CABINETS[s][1] for s in HL7_SENDERS})
BATCH = 250
MLLP_CONNECTIONS = 4
DEADLINE = 900.0
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """One ``medbridge <command>`` subprocess, its output in a log file."""

    command: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "medbridge.cli", self.command],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_until(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.alive(), f"{self.command} exited:\n{self.tail()}"
            if ready():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.command}: {what} within 120 s:\n{self.tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then its exit code (SIGKILL if it does not stop in 30 s)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@dataclass
class NatsServer:
    """A ``nats-server`` with JetStream of the test's own: killed and restarted on purpose."""

    port: int
    store: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    NATS_SERVER,
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-js",
                    "-sd",
                    str(self.store),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not accepts_tcp(self.port):
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "nats-server did not listen within 30 s"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(free_port(), tmp_path / "jetstream", tmp_path / "nats-server.log")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()


@dataclass
class Deployment:
    database_url: str
    stream: JetStreamConfig
    api_url: str
    mllp_port: int
    processes: dict[str, Process] = field(default_factory=dict)


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own, migrated and seeded, dropped after."""
    name = f"medbridge_scaleout_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(POSTGRES), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_url(POSTGRES)).set(database=name).render_as_string(hide_password=False)
    try:
        mb = MedBridge.build(Settings(database_url=url))  # the embedded log: seeding only
        mb.upgrade_database()
        mb.seed_demo()
        mb.close()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def deployment(
    postgres_database: str, nats_server: NatsServer, tmp_path: Path
) -> Iterator[Deployment]:
    nats_stream = JetStreamConfig(
        url=nats_server.url, stream="MEDBRIDGE_SCALEOUT", subject_prefix="medbridge-scaleout"
    )
    http, mllp = free_port(), free_port()
    env = {
        **os.environ,
        "MEDBRIDGE_DATABASE_URL": postgres_database,
        "MEDBRIDGE_BUS_URL": nats_stream.url,
        "MEDBRIDGE_BUS_STREAM": nats_stream.stream,
        "MEDBRIDGE_BUS_SUBJECT_PREFIX": nats_stream.subject_prefix,
        "MEDBRIDGE_BUS_ACK_WAIT": "2",
        "MEDBRIDGE_VAR_DIR": str(tmp_path / "var"),
        "MEDBRIDGE_ADMIN_API_KEY": ADMIN_KEY,
        "MEDBRIDGE_PSEUDONYM_SECRET": "scale-out-pseudonyms-0123456789abcdef",
        "MEDBRIDGE_HTTP_PORT": str(http),
        "MEDBRIDGE_MLLP_PORT": str(mllp),
        "MEDBRIDGE_CONSUMER_BATCH_SIZE": "200",
        "MEDBRIDGE_REPLENISHMENT_INTERVAL": "5",
    }
    env.pop("MEDBRIDGE_CONFIG_FILE", None)
    deployed = Deployment(postgres_database, nats_stream, f"http://127.0.0.1:{http}", mllp)
    roles = {
        "api": ("api", {}),
        "listen": ("listen", {}),
        # the planner on one worker only (see Settings.planner_enabled)
        "worker-a": ("worker", {"MEDBRIDGE_PLANNER_ENABLED": "true"}),
        "worker-b": ("worker", {"MEDBRIDGE_PLANNER_ENABLED": "false"}),
    }
    for name, (command, extra) in roles.items():
        deployed.processes[name] = Process(command, env | extra, tmp_path / f"{name}.log")
    try:
        yield deployed
    finally:
        for process in deployed.processes.values():
            process.stop()


def started(process: Process) -> bool:
    return "process.started" in process.log.read_text(errors="replace")


def answers_http(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Refusals:
    """What the senders were told to send again (503, ``MSA|AR``, a dropped connection)."""

    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str) -> None:
        with self.lock:
            self.seen.append(what)


def post(url: str, body: list[dict[str, Any]], refusals: Refusals | None = None) -> None:
    """POST until 202: a 503 (event log unavailable) or a lost connection is sent again."""
    deadline = time.monotonic() + 300
    while True:
        try:
            answer = httpx.post(
                f"{url}/v1/stock-movements", json=body, headers={"X-API-Key": ADMIN_KEY}, timeout=60
            )
        except httpx.TransportError as error:
            problem = f"http {type(error).__name__}"
        else:
            if answer.status_code == 202:
                return
            assert answer.status_code == 503, answer.text
            problem = "http 503"
        assert refusals is not None, problem
        assert time.monotonic() < deadline, problem
        refusals.add(problem)
        time.sleep(0.5)


def receipt(store: str, quantity: int) -> dict[str, Any]:
    return {
        "idempotency_key": f"open-{store}",
        "kind": "receipt",
        "item": ITEM,
        "location": store,
        "quantity": str(quantity),
        "unit": "VIAL",
        "lot": f"OPEN-{store}",
        "expiry": "2029-12-31",
        "unit_cost": {"amount": "6.85", "currency": "USD"},
        "occurred_at": "2026-11-22T05:00:00+00:00",
    }


def dispense(n: int) -> dict[str, Any]:
    return {
        "idempotency_key": f"rest-{n}",
        "kind": "dispense",
        "item": ITEM,
        "location": REST_STORES[n % len(REST_STORES)],
        "quantity": "1",
        "unit": "VIAL",
        "lot": f"OPEN-{REST_STORES[n % len(REST_STORES)]}",
        "occurred_at": "2026-11-22T06:00:00+00:00",
    }


def ndc() -> str:
    item = next(i for i in ITEMS if i.code == ITEM)
    code = next(c.code for c in item.codes if c.system is CodeSystem.NDC)
    return f"{code}^{item.name}^NDC"


def rds(sender: str, n: int) -> str:
    """An RDS^O13 as the demo's cabinets send it: one vial of the store's opening lot."""
    cabinet, store, wards = CABINETS[sender]
    application, facility = sender.removeprefix("hl7:").split("@")
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    ward = next(iter(wards))
    segments = [
        f"MSH|^~\\&|{application}|{facility}|MEDBRIDGE|NET|{now}||RDS^O13^RDS_O13|SCALE-{n}|P|2.5.1",
        "PID|1||DEMO-MRN-0001^^^DEMO^MR||Demo^Patient||19700101|U",
        f"PV1|1|I|{ward}^1^A||||||||||||||||V-{n}",
        f"ORC|RE|SCALE-{n}",
        f"RXD|1|{ndc()}|{now}|1|VIAL|||||||||||||OPEN-{store}|20291231|||||||||||{cabinet}",
    ]
    return "\r".join(segments) + "\r"


def send_hl7(port: int, numbers: range, failures: list[str], refusals: Refusals) -> None:
    """Each message until ``MSA|AA``: an ``MSA|AR`` (store unavailable) or a lost connection
    is sent again, as a sender must; anything else is a failure."""
    deadline = time.monotonic() + 600
    pending = list(numbers)
    while pending and time.monotonic() < deadline:
        try:
            with MllpClient("127.0.0.1", port, timeout=60) as client:
                while pending:
                    ack = client.send(rds(HL7_SENDERS[pending[0] % len(HL7_SENDERS)], pending[0]))
                    if "MSA|AA" in ack:
                        pending.pop(0)
                    elif "MSA|AR" in ack:
                        refusals.add("hl7 AR")
                        time.sleep(0.5)
                    else:
                        failures.append(ack)
                        return
        except (OSError, FramingError) as error:
            refusals.add(f"mllp {type(error).__name__}")
            time.sleep(0.5)
    if pending:
        failures.append(f"{len(pending)} messages never acknowledged")


def count(engine: Any, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_api_listen_and_two_workers_apply_every_movement_once_across_a_killed_worker_and_nats(
    deployment: Deployment, nats_server: NatsServer
) -> None:
    p = deployment.processes
    p["worker-a"].start()  # one at a time: the first creates DBOS's schema
    p["worker-a"].wait_until(lambda: started(p["worker-a"]), "no process.started")
    p["worker-b"].start()
    p["api"].start()
    p["listen"].start()
    p["worker-b"].wait_until(lambda: started(p["worker-b"]), "no process.started")
    p["api"].wait_until(lambda: answers_http(deployment.api_url), "no /health")
    p["listen"].wait_until(lambda: accepts_tcp(deployment.mllp_port), "no MLLP port")

    rest_count = MOVEMENTS // 2
    hl7_count = MOVEMENTS - rest_count
    per_store = MOVEMENTS  # more than any store can be dispensed
    post(deployment.api_url, [receipt(store, per_store) for store in STORES])

    engine = create_db_engine(deployment.database_url)
    hl7_failures: list[str] = []
    halves = [range(0, rest_count // 2), range(rest_count // 2, rest_count)]
    hl7_halves = [range(0, hl7_count // 2), range(hl7_count // 2, hl7_count)]
    refusals = Refusals()
    killed_with_backlog = False
    for half, (rest, hl7) in enumerate(zip(halves, hl7_halves, strict=True)):
        senders = [
            threading.Thread(
                target=send_hl7,
                args=(deployment.mllp_port, hl7[i::MLLP_CONNECTIONS], hl7_failures, refusals),
            )
            for i in range(MLLP_CONNECTIONS)
        ]
        for sender in senders:
            sender.start()
        batches = range(rest.start, rest.stop, BATCH)
        for k, start in enumerate(batches):
            if half == 1 and k == len(batches) // 2:  # midway through the second half
                nats_server.kill()
                time.sleep(2)  # the processes notice: appends and pulls fail meanwhile
                nats_server.start()
            post(
                deployment.api_url,
                [dispense(n) for n in range(start, min(start + BATCH, rest.stop))],
                refusals,
            )
        for sender in senders:
            sender.join(900)
        assert not hl7_failures, hl7_failures[:3]
        if half == 0:  # midway: a worker dies with work in hand
            applied = count(engine, ledger_movements)
            killed_with_backlog = applied < len(STORES) + rest.stop + hl7.stop
            assert p["worker-a"].process is not None
            p["worker-a"].process.send_signal(signal.SIGKILL)
            p["worker-a"].process.wait(10)
    assert killed_with_backlog, "the workers were idle at the kill: nothing was tested"
    for name in ("api", "listen", "worker-b"):  # each lost NATS with work in hand
        assert "bus.nats_error" in p[name].log.read_text(errors="replace"), name

    expected = len(STORES) + MOVEMENTS
    deadline = time.monotonic() + DEADLINE
    while count(engine, ledger_movements) < expected and time.monotonic() < deadline:
        assert p["worker-b"].alive(), p["worker-b"].tail()
        time.sleep(1)
    time.sleep(3)  # anything redelivered late would show now
    assert count(engine, ledger_movements) == expected, p["worker-b"].tail()
    assert count(engine, journal_entries) == expected
    assert count(engine, consumer_dedup) == expected  # one idempotency record per event
    with engine.connect() as conn:
        discrepancies = conn.execute(
            select(func.count()).select_from(work_items).where(work_items.c.kind == DISCREPANCY)
        ).scalar_one()
        on_hand = {
            location: quantity
            for location, quantity in conn.execute(
                select(stock_lots.c.location, func.sum(stock_lots.c.quantity)).group_by(
                    stock_lots.c.location
                )
            )
        }
    assert discrepancies == 0  # per-key order: no dispense before its store's receipt
    dispensed = {store: 0 for store in STORES}
    for n in range(rest_count):
        dispensed[REST_STORES[n % len(REST_STORES)]] += 1
    for n in range(hl7_count):
        dispensed[CABINETS[HL7_SENDERS[n % len(HL7_SENDERS)]][1]] += 1
    assert on_hand == {store: Decimal(per_store - dispensed[store]) for store in STORES}

    check = httpx.get(
        f"{deployment.api_url}/v1/ledger/reconciliation",
        headers={"X-API-Key": ADMIN_KEY},
        timeout=30,
    ).json()
    assert check["balanced"] is True, check
    with engine.connect() as conn:  # each process recorded its settings as it started
        starts = conn.execute(
            select(audit_log.c.actor, audit_log.c.detail).where(
                audit_log.c.action == "settings.start"
            )
        ).all()
    assert sorted(a for a, _ in starts) == [
        "system:api",
        "system:listen",
        "system:worker",
        "system:worker",
    ]
    recorded = json.dumps([detail for _, detail in starts])
    assert ADMIN_KEY not in recorded
    assert "scale-out-pseudonyms" not in recorded
    engine.dispose()

    # SIGTERM: each stops cleanly (exit code 0), the surviving worker handing back its share
    for name in ("listen", "api", "worker-b"):
        assert p[name].stop() == 0, p[name].tail()
    for name in ("listen", "api", "worker-b"):
        assert "process.stopped" in p[name].log.read_text(), p[name].tail()
