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
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pytest

from peers.trytond import ROOT, TrytondPeer, TrytondServer, database_copy, peer_env, serve, venv

PEER = "gnuhealth"
PEER_DIR = ROOT / "peers" / PEER
VENV = venv(PEER)


@dataclass(frozen=True)
class Dispensed:
    move: int
    prescription: int
    prescription_code: str
    patient: int


@dataclass(frozen=True)
class GnuHealthServer(TrytondServer):
    """The session's trytond; ``template`` (``template.json``): admin login/password, products
    and lots, pharmacy storage code."""


@dataclass(frozen=True)
class GnuHealthPeer(TrytondPeer):
    """One test's GNU Health database on the session's server."""

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
            command, capture_output=True, text=True, env=peer_env(), timeout=120, check=False
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


@pytest.fixture(scope="session")
def gnuhealth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GnuHealthServer]:
    with serve(PEER, "GNU Health", tmp_path_factory.mktemp(PEER), GnuHealthServer) as server:
        yield server


@pytest.fixture
def gnuhealth(gnuhealth_server: GnuHealthServer) -> Iterator[GnuHealthPeer]:
    """A fresh copy of the seeded template, served by the session's trytond."""
    with database_copy(PEER, gnuhealth_server, "mb") as name:
        yield GnuHealthPeer(server=gnuhealth_server, database=name)
