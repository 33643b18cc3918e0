"""The demo's real ERP: a Tryton server run from the peer environment that
``make peers-tryton`` builds (``.peers/tryton``, its own virtualenv: trytond is GPL and stays
out of MedBridge's process; MedBridge talks to it over JSON-RPC only).

``make run`` starts that build in the background so MedBridge answers at once; the demo
attaches the ERP as soon as the peer is ready: it copies the seeded template once into
``var/tryton/`` (the demo ERP keeps its books across runs), starts trytond on a free local port,
and hands back the connection settings.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def ready(self) -> bool:
        """Whether the peer is built: installed, and its template written (template.json is
        written after the database it describes)."""
        return all(
            (self.peer_dir / part).exists()
            for part in (".installed", "bin/trytond", "db/template.sqlite", "db/template.json")
        )

    def start(self) -> DemoErpServer:
        meta = json.loads((self.peer_dir / "db" / "template.json").read_text())
        data = self.var_dir / "tryton"
        data.mkdir(parents=True, exist_ok=True)
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
            )
        url = f"http://127.0.0.1:{port}/"
        _wait_ready(url, process)
        self.server = DemoErpServer(
            url, DATABASE, str(meta["admin_login"]), str(meta["admin_password"]), process
        )
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
        return self.start()

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.process.terminate()
        try:
            self.server.process.wait(10)
        except subprocess.TimeoutExpired:
            self.server.process.kill()
        self.server = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    body = {"id": 0, "method": "common.server.version", "params": []}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the demo ERP (trytond) exited with {process.returncode}")
        try:
            if httpx.post(url, json=body, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the demo ERP (trytond) did not answer within {READY_TIMEOUT:.0f} s")
