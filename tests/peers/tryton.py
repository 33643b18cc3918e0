"""Fixtures: a real Tryton ERP 7.0 (trytond) server on 127.0.0.1, one per test session.

trytond is GPL and lives in its own virtualenv (``.peers/tryton``, built by
``make -f peers/tryton/Makefile.inc peers-tryton``); these fixtures only start it, and
MedBridge talks to it over JSON-RPC.

* ``tryton_server`` (session): builds the peer if needed (about 50 s cold, about 1 s when
  current), starts ONE ``trytond`` on a free port, serving the databases of a session folder.
  A peer that cannot be built or started FAILS the tests: it never skips them.
* ``tryton`` (function): a fresh ERP database, copied from the seeded template (a few ms; the
  server loads it on its first request), with a ready ``TrytonConfig``.
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
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from medbridge.connectors.tryton.config import TrytonConfig

ROOT = Path(__file__).resolve().parents[2]
PEER_DIR = ROOT / "peers" / "tryton"
VENV = ROOT / ".peers" / "tryton"
TEMPLATE_DIR = VENV / "db"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class TrytonServer:
    url: str
    """Base URL, e.g. ``http://127.0.0.1:40123/``."""
    port: int
    config_file: Path
    data_dir: Path
    log_file: Path
    template: dict[str, Any]
    """``template.json``: admin login/password, account and cost-center codes, suppliers,
    products, the fiscal year."""
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class TrytonPeer:
    """One test's ERP database on the session's server."""

    server: TrytonServer
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

    def config(self, **overrides: Any) -> TrytonConfig:
        """The adapter's configuration for this database (``url`` etc. overridable)."""
        values: dict[str, Any] = {
            "url": self.url,
            "database": self.database,
            "user": self.login,
            "password": SecretStr(self.password),
            "journal": str(self.server.template["journal"]),
            "timeout": 30.0,
        }
        return TrytonConfig(**{**values, **overrides})


def _peer_env() -> dict[str, str]:
    """The environment for the peer's processes, without MedBridge's virtualenv in it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def _build_peer() -> dict[str, Any]:
    started = time.monotonic()
    try:
        built = subprocess.run(
            ["make", "--no-print-directory", "-f", str(PEER_DIR / "Makefile.inc"), "peers-tryton"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"Tryton peer: cannot run make: {exc}", pytrace=False)
    if built.returncode != 0:
        pytest.fail(
            "Tryton peer could not be built (make -f peers/tryton/Makefile.inc "
            f"peers-tryton):\n{built.stdout[-2000:]}\n{built.stderr[-4000:]}",
            pytrace=False,
        )
    meta: dict[str, Any] = json.loads((TEMPLATE_DIR / "template.json").read_text())
    meta["checked_in_seconds"] = round(time.monotonic() - started, 1)
    return meta


def free_port() -> int:
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
def tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    template = _build_peer()
    data_dir = tmp_path_factory.mktemp("tryton")
    port = free_port()
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
        yield TrytonServer(
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
def tryton(tryton_server: TrytonServer) -> Iterator[TrytonPeer]:
    """A fresh copy of the seeded ERP template, served by the session's trytond."""
    name = f"erp_{uuid.uuid4().hex[:12]}"
    target = tryton_server.data_dir / f"{name}.sqlite"
    shutil.copyfile(TEMPLATE_DIR / "template.sqlite", target)
    yield TrytonPeer(server=tryton_server, database=name)
    target.unlink(missing_ok=True)
