"""Fixtures: two real Tryton ERP (trytond) servers on 127.0.0.1, of two Tryton series.

* the first (``tryton``): Tryton 7.0 LTS, the on-premise ERP (``legacy`` in a migration),
  virtualenv ``.peers/tryton`` built by ``make -f peers/tryton/Makefile.inc peers-tryton``;
* the second (``tryton_cloud``): Tryton 8.0 LTS, the ERP a hospital migrates to (``cloud``),
  virtualenv ``.peers/tryton-next`` built by
  ``make -f peers/tryton-next/Makefile.inc peers-tryton-next``, seeded exactly like the first
  (same accounts, cost centers, journal, suppliers, items).

trytond is GPL and lives in those virtualenvs; these fixtures only start it, and MedBridge
talks to it over JSON-RPC. A test may hold both at once: two processes, two ports.

* ``tryton_server`` (session): builds the peer if needed (about 50 s cold, about 1 s when
  current), starts ONE ``trytond`` on a free port, serving the databases of a session folder.
  A peer that cannot be built or started FAILS the tests: it never skips them.
* ``tryton`` (function): a fresh ERP database, copied from the seeded template (a few ms; the
  server loads it on its first request), with a ready ``TrytonConfig``.
* ``tryton_cloud_template`` (session) / ``tryton_cloud`` (function): the second peer, built
  once (about 40 s cold, 0.1 s when current), and for each test that asks for it its own
  ``trytond`` on a free port serving a fresh database copy (see ``tryton_cloud`` for why).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from medbridge.connectors.tryton.config import TrytonConfig, TrytonSeries
from peers.trytond import (
    TrytondPeer,
    TrytondServer,
    build_peer,
    copy_template,
    database_copy,
    load_database,
    serve,
)

PEER = "tryton"
CLOUD_PEER = "tryton-next"
CLOUD_LABEL = "Tryton (cloud)"


@dataclass(frozen=True)
class TrytonServer(TrytondServer):
    """The session's trytond; ``template`` (``template.json``): admin login/password, account
    and cost-center codes, suppliers, products, the fiscal year."""

    @property
    def series(self) -> str:
        """The Tryton series this server runs, e.g. ``"7.0"``."""
        return ".".join(str(self.template["versions"]["trytond"]).split(".")[:2])


@dataclass(frozen=True)
class TrytonPeer(TrytondPeer):
    """One test's ERP database on the session's server."""

    server: TrytonServer

    def config(self, **overrides: Any) -> TrytonConfig:
        """The adapter's configuration for this database (``url`` etc. overridable)."""
        values: dict[str, Any] = {
            "url": self.url,
            "database": self.database,
            "user": self.login,
            "password": SecretStr(self.password),
            "journal": str(self.server.template["journal"]),
            "timeout": 30.0,
            "series": TrytonSeries.of(self.server.series),
        }
        return TrytonConfig(**{**values, **overrides})


@pytest.fixture(scope="session")
def tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    with serve(PEER, "Tryton", tmp_path_factory.mktemp(PEER), TrytonServer) as server:
        yield server


@pytest.fixture
def tryton(tryton_server: TrytonServer) -> Iterator[TrytonPeer]:
    """A fresh copy of the seeded ERP template, served by the session's trytond."""
    with database_copy(PEER, tryton_server, "erp") as name:
        yield TrytonPeer(server=tryton_server, database=name)


@pytest.fixture(scope="session")
def tryton_cloud_template() -> dict[str, Any]:
    """Builds the second ERP peer once per session: its ``template.json``."""
    return build_peer(CLOUD_PEER, CLOUD_LABEL)


@pytest.fixture
def tryton_cloud(tryton_cloud_template: dict[str, Any], tmp_path: Path) -> Iterator[TrytonPeer]:
    """The second ERP (another Tryton series): its OWN trytond, started for this test on a
    free port, serving a fresh copy of its seeded template (about 1-2 s).

    One server per test, not per session: trytond 8.0 caches its list of databases for the
    session timeout (an hour), so a database copied in after its first request is unknown to
    it (HTTP 404; 7.0's login does not consult that list). The database is copied before the
    server starts, and loaded before the first login (``load_database``)."""
    data_dir = tmp_path / CLOUD_PEER
    data_dir.mkdir()
    name = copy_template(CLOUD_PEER, data_dir, "cloud")
    with serve(
        CLOUD_PEER, CLOUD_LABEL, data_dir, TrytonServer, template=tryton_cloud_template
    ) as server:
        load_database(server, name)
        yield TrytonPeer(server=server, database=name)
