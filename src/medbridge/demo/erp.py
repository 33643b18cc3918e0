"""The demo's real ERP: a Tryton server run from the peer environment that
``make peers-tryton`` builds (``.peers/tryton``, its own virtualenv: trytond is GPL and stays
out of MedBridge's process; MedBridge talks to it over JSON-RPC only).

``make run`` starts that build in the background so MedBridge answers at once; the demo
attaches the ERP as soon as the peer is ready: it copies the seeded template once into
``var/tryton/`` (the demo ERP keeps its books across runs), starts trytond on a free local port,
and hands back the connection settings. It also writes them to ``var/tryton/connection.json``
(owner-only), with trytond's pid, so that ``medbridge erp ...`` run beside the demo finds its
ERP; the file goes when the server stops.

trytond never outlives the demo: it is stopped when the demo stops (also while it is still
starting), it gets SIGTERM from the kernel if the process that started it dies (Linux
``PR_SET_PDEATHSIG``), and a server left by a run that was killed before that (its pid in the
connection file) is stopped before a new one starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medbridge.observability.logging import get_logger

log = get_logger(__name__)

PEER_DIR = Path(".peers/tryton")
DATABASE = "medbridge_demo_erp"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class DemoErpServer:
    url: str
    database: str
    user: str
    password: str
    process: subprocess.Popen[bytes]


class DemoErp:
    def __init__(self, var_dir: Path, peer_dir: Path = PEER_DIR) -> None:
        self.var_dir, self.peer_dir = Path(var_dir), peer_dir
        self.server: DemoErpServer | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def ready(self) -> bool:
        """Whether the peer is built: installed, and its template written (template.json is
        written after the database it describes)."""
        return all(
            (self.peer_dir / part).exists()
            for part in (".installed", "bin/trytond", "db/template.sqlite", "db/template.json")
        )

    def start(self, stop: threading.Event | None = None) -> DemoErpServer:
        meta = json.loads((self.peer_dir / "db" / "template.json").read_text())
        data = self.var_dir / "tryton"
        data.mkdir(parents=True, exist_ok=True)
        stop_stale(self.var_dir)
        database = data / f"{DATABASE}.sqlite"
        if not database.exists():
            shutil.copyfile(self.peer_dir / "db" / "template.sqlite", database)
        port = _free_port()
        config = data / "trytond.conf"
        config.write_text(
            f"[database]\nuri = sqlite://\npath = {data.resolve()}\n"
            f"[web]\nlisten = 127.0.0.1:{port}\n[session]\ntimeout = 3600\n"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
        with (data / "trytond.log").open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own peer's executable
                [str(self.peer_dir / "bin" / "trytond"), "-c", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # one libc call in the child, nothing else
            )
        self._process = process
        url = f"http://127.0.0.1:{port}/"
        _wait_ready(url, process, stop)
        self.server = DemoErpServer(
            url, DATABASE, str(meta["admin_login"]), str(meta["admin_password"]), process
        )
        _write_connection(data / CONNECTION, self.server)
        log.info("demo.erp_started", url=url, database=DATABASE)
        return self.server

    def wait_and_start(self, stop: threading.Event, poll: float = 2.0) -> DemoErpServer | None:
        """Wait for the peer build (``make run`` runs it in the background), then start."""
        announced = False
        while not self.ready:
            if not announced:
                log.info("demo.erp_waiting", hint="building the Tryton peer: var/peers-tryton.log")
                announced = True
            if stop.wait(poll):
                return None
        return self.start(stop)

    def stop(self) -> None:
        """Stop the server (also one still starting) and remove its connection file."""
        process, self._process, self.server = self._process, None, None
        (self.var_dir / "tryton" / CONNECTION).unlink(missing_ok=True)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


CONNECTION = "connection.json"


def connection(var_dir: Path) -> dict[str, str] | None:
    """The running demo ERP's connection (url, database, user, password), or None when no
    demo ERP runs beside this ``var_dir`` (no file, or its server is gone)."""
    found = _read_connection(Path(var_dir) / "tryton" / CONNECTION)
    if found is None or not _is_trytond(int(found.get("pid", 0))):
        return None
    return {k: str(found[k]) for k in ("url", "database", "user", "password")}


def stop_stale(var_dir: Path) -> None:
    """Stop a demo trytond a killed run left behind (its pid in the connection file)."""
    path = Path(var_dir) / "tryton" / CONNECTION
    found = _read_connection(path)
    pid = int(found.get("pid", 0)) if found else 0
    if pid and _is_trytond(pid):
        log.warning("demo.erp_stale_server_stopped", pid=pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # its own session: it and its workers
        deadline = time.monotonic() + 10
        while _is_trytond(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    path.unlink(missing_ok=True)


def _read_connection(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _write_connection(path: Path, server: DemoErpServer) -> None:
    fields = {
        "url": server.url,
        "database": server.database,
        "user": server.user,
        "password": server.password,
        "pid": server.process.pid,
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(fields, out)


def _is_trytond(pid: int) -> bool:
    """Whether ``pid`` is a live trytond (not a recycled pid of something else)."""
    if pid <= 0:
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return b"trytond" in command and bool(state) and state[0] != "Z"


def _die_with_parent() -> Callable[[], None] | None:
    """For Popen's ``preexec_fn``: the child gets SIGTERM when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    set_parent_death_signal = 1  # PR_SET_PDEATHSIG

    def arm() -> None:
        prctl(set_parent_death_signal, signal.SIGTERM)

    return arm


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], stop: threading.Event | None = None
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    body = {"id": 0, "method": "common.server.version", "params": []}
    stop = stop or threading.Event()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the demo ERP (trytond) exited with {process.returncode}")
        try:
            if httpx.post(url, json=body, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if stop.wait(0.2):
            raise RuntimeError("stopped while the demo ERP (trytond) was starting")
    raise RuntimeError(f"the demo ERP (trytond) did not answer within {READY_TIMEOUT:.0f} s")
