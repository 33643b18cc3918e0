"""What the trytond-based peers (GNU Health, Tryton ERP) share: building a peer, starting ONE
``trytond`` on a free port for a test session, and a fresh database copy per test.

Each peer is GPL and lives in its own virtualenv (``.peers/<peer>``, built by
``make -f peers/<peer>/Makefile.inc peers-<peer>``); this module only runs it in subprocesses.
A peer that cannot be built or started FAILS the tests: it never skips them.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class TrytondServer:
    url: str
    """Base URL, e.g. ``http://127.0.0.1:40123/``."""
    port: int
    config_file: Path
    data_dir: Path
    log_file: Path
    template: dict[str, Any]
    """The peer's ``template.json`` (admin login/password and what the template seeded)."""
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class TrytondPeer:
    """One test's database on the session's server."""

    server: TrytondServer
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


ServerT = TypeVar("ServerT", bound=TrytondServer)


def venv(peer: str) -> Path:
    """The peer's virtualenv; its seeded template is in ``db/``."""
    return ROOT / ".peers" / peer


def peer_env() -> dict[str, str]:
    """The environment for the peer's processes, without MedBridge's virtualenv in it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def build_peer(peer: str, label: str) -> dict[str, Any]:
    """``make`` the peer (nothing when current) and return its ``template.json``."""
    started = time.monotonic()
    makefile = f"peers/{peer}/Makefile.inc"
    try:
        built = subprocess.run(
            ["make", "--no-print-directory", "-f", str(ROOT / makefile), f"peers-{peer}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"{label} peer: cannot run make: {exc}", pytrace=False)
    if built.returncode != 0:
        pytest.fail(
            f"{label} peer could not be built (make -f {makefile} "
            f"peers-{peer}):\n{built.stdout[-2000:]}\n{built.stderr[-4000:]}",
            pytrace=False,
        )
    meta: dict[str, Any] = json.loads((venv(peer) / "db" / "template.json").read_text())
    meta["checked_in_seconds"] = round(time.monotonic() - started, 1)
    return meta


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(config_file: Path, data_dir: Path, port: int) -> None:
    """A ``trytond.conf`` serving the sqlite databases of ``data_dir`` on ``port``."""
    config_file.write_text(
        "[database]\n"
        "uri = sqlite://\n"
        f"path = {data_dir}\n"
        "[web]\n"
        f"listen = 127.0.0.1:{port}\n"
        "[session]\n"
        "timeout = 3600\n"
    )


def start(peer: str, config_file: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """Start the peer's ``trytond`` with ``config_file``, appending its output to ``log_file``."""
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            [str(venv(peer) / "bin" / "trytond"), "-c", str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=peer_env(),
            start_new_session=True,
        )


ROOT_ROUTES = ("", "rpc/")
"""Where trytond answers ``common.server.version``: ``/`` up to 7.0, ``/rpc/`` in 8.0."""


def wait_ready(url: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    body = {"id": 0, "method": "common.server.version", "params": []}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"trytond exited ({process.returncode}):\n{log_file.read_text()[-4000:]}",
                pytrace=False,
            )
        try:
            for route in ROOT_ROUTES:
                if httpx.post(url + route, json=body, timeout=2).status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"trytond not ready in {READY_TIMEOUT}s:\n{log_file.read_text()[-4000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill what does not stop within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextmanager
def serve(
    peer: str,
    label: str,
    data_dir: Path,
    server: type[ServerT],
    template: dict[str, Any] | None = None,
) -> Iterator[ServerT]:
    """Build the peer (unless its ``template.json`` is given: built already), start ONE
    trytond on a free port serving ``data_dir``; stop it after."""
    if template is None:
        template = build_peer(peer, label)
    port = free_port()
    config_file = data_dir / "trytond.conf"
    write_config(config_file, data_dir, port)
    log_file = data_dir / "trytond.log"
    process = start(peer, config_file, log_file)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, process, log_file)
        yield server(
            url=url,
            port=port,
            config_file=config_file,
            data_dir=data_dir,
            log_file=log_file,
            template=template,
            process=process,
        )
    finally:
        stop(process)


def load_database(server: TrytondServer, name: str) -> None:
    """Have ``server`` load database ``name`` before anyone logs in to it: needed on trytond
    8.0.12 (its source: also 8.2.1 and 7.8.18; not 8.0.0 nor 7.0.59), whose ``Cache.sync``
    at the start of the login's transaction registers an EMPTY pool for a database not loaded
    yet, so the login never loads it and fails with the fault ``'res.user'``, for good. A
    route behind ``with_pool`` loads it properly; unauthenticated, it answers 401 after."""
    url = f"{server.url}{name}/rest/model/res.user"
    status = httpx.get(url, timeout=60).status_code
    if status not in (401, 403):
        pytest.fail(f"trytond did not load database {name} (HTTP {status} from {url})")


@contextmanager
def database_copy(peer: str, server: TrytondServer, prefix: str) -> Iterator[str]:
    """A fresh copy of the peer's seeded template in the server's folder: its database name."""
    name = copy_template(peer, server.data_dir, prefix)
    yield name
    (server.data_dir / f"{name}.sqlite").unlink(missing_ok=True)


def copy_template(peer: str, data_dir: Path, prefix: str) -> str:
    """A fresh copy of the peer's seeded template in ``data_dir``: its database name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    shutil.copyfile(venv(peer) / "db" / "template.sqlite", data_dir / f"{name}.sqlite")
    return name
