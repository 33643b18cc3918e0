"""Fixtures: a real GNU Health 5.0 (trytond 7.0) server on 127.0.0.1, one per test session.

GNU Health is GPL and lives in its own virtualenv (``.peers/gnuhealth``, built by
``make -f peers/gnuhealth/Makefile.inc peers-gnuhealth``); these fixtures only start it and
run its scripts in subprocesses, and MedBridge talks to it over JSON-RPC.

* ``gnuhealth_server`` (session): builds the peer if needed (about 65 s cold, nothing when
  current), starts ONE ``trytond`` on a free port, serving the databases of a session folder.
  A peer that cannot be built or started FAILS the tests: it never skips them.
* ``gnuhealth`` (function): a fresh database, copied from the seeded template (a few ms; the
  server loads it on its first request, about 1 s), with a ``record_dispense`` helper.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PEER_DIR = ROOT / "peers" / "gnuhealth"
VENV = ROOT / ".peers" / "gnuhealth"
TEMPLATE_DIR = VENV / "db"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Dispensed:
    move: int
    prescription: int
    prescription_code: str
    patient: int


@dataclass(frozen=True)
class GnuHealthServer:
    url: str
    """Base URL, e.g. ``http://127.0.0.1:40123/``."""
    port: int
    config_file: Path
    data_dir: Path
    log_file: Path
    template: dict[str, Any]
    """``template.json``: admin login/password, products and lots, pharmacy storage code."""
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class GnuHealthPeer:
    """One test's GNU Health database on the session's server."""

    server: GnuHealthServer
    database: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def login(self) -> str:
        return str(self.server.template["admin_login"])

    @property
    def password(self) -> str:
        return str(self.server.template["admin_password"])

    @property
    def storage_code(self) -> str:
        return str(self.server.template["pharmacy"]["storage_code"])

    def lot_expiry(self, product: str, lot: str) -> date:
        return date.fromisoformat(self.server.template["products"][product]["lots"][lot])

    def record_dispense(
        self,
        *,
        patient_name: str,
        puid: str,
        dob: str,
        product: str = "VANCO-1G-GH",
        quantity: str = "1",
        lot: str | None = None,
        gender: str = "m",
    ) -> Dispensed:
        """Create a patient, a prescription and a DONE stock.move (with the lot) in GNU Health,
        as another process writing to the server's database."""
        command = [
            str(VENV / "bin" / "python"),
            str(PEER_DIR / "record_dispense.py"),
            "--db",
            self.database,
            "--config",
            str(self.server.config_file),
            "--patient-name",
            patient_name,
            "--puid",
            puid,
            "--dob",
            dob,
            "--product",
            product,
            "--quantity",
            quantity,
            "--gender",
            gender,
        ]
        if lot is not None:
            command += ["--lot", lot]
        done = subprocess.run(
            command, capture_output=True, text=True, env=_peer_env(), timeout=120, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"record_dispense.py failed:\n{done.stderr[-3000:]}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        assert answer["state"] == "done", answer
        return Dispensed(
            move=answer["move"],
            prescription=answer["prescription"],
            prescription_code=answer["prescription_code"],
            patient=answer["patient"],
        )


def _peer_env() -> dict[str, str]:
    """The environment for the peer's processes, without MedBridge's virtualenv in it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def _build_peer() -> dict[str, Any]:
    started = time.monotonic()
    try:
        built = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "-f",
                str(PEER_DIR / "Makefile.inc"),
                "peers-gnuhealth",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"GNU Health peer: cannot run make: {exc}", pytrace=False)
    if built.returncode != 0:
        pytest.fail(
            "GNU Health peer could not be built (make -f peers/gnuhealth/Makefile.inc "
            f"peers-gnuhealth):\n{built.stdout[-2000:]}\n{built.stderr[-4000:]}",
            pytrace=False,
        )
    meta: dict[str, Any] = json.loads((TEMPLATE_DIR / "template.json").read_text())
    meta["checked_in_seconds"] = round(time.monotonic() - started, 1)
    return meta


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    body = {"id": 0, "method": "common.server.version", "params": []}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"trytond exited ({process.returncode}):\n{log_file.read_text()[-4000:]}",
                pytrace=False,
            )
        try:
            if httpx.post(url, json=body, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"trytond not ready in {READY_TIMEOUT}s:\n{log_file.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def gnuhealth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GnuHealthServer]:
    template = _build_peer()
    data_dir = tmp_path_factory.mktemp("gnuhealth")
    port = _free_port()
    config_file = data_dir / "trytond.conf"
    config_file.write_text(
        "[database]\n"
        "uri = sqlite://\n"
        f"path = {data_dir}\n"
        "[web]\n"
        f"listen = 127.0.0.1:{port}\n"
        "[session]\n"
        "timeout = 3600\n"
    )
    log_file = data_dir / "trytond.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            [str(VENV / "bin" / "trytond"), "-c", str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_peer_env(),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, process, log_file)
        yield GnuHealthServer(
            url=url,
            port=port,
            config_file=config_file,
            data_dir=data_dir,
            log_file=log_file,
            template=template,
            process=process,
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def gnuhealth(gnuhealth_server: GnuHealthServer) -> Iterator[GnuHealthPeer]:
    """A fresh copy of the seeded template, served by the session's trytond."""
    name = f"mb_{uuid.uuid4().hex[:12]}"
    target = gnuhealth_server.data_dir / f"{name}.sqlite"
    shutil.copyfile(TEMPLATE_DIR / "template.sqlite", target)
    yield GnuHealthPeer(server=gnuhealth_server, database=name)
    target.unlink(missing_ok=True)
