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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from medbridge.connectors.tryton.config import TrytonConfig
from peers.trytond import TrytondPeer, TrytondServer, database_copy, serve

PEER = "tryton"


@dataclass(frozen=True)
class TrytonServer(TrytondServer):
    """The session's trytond; ``template`` (``template.json``): admin login/password, account
    and cost-center codes, suppliers, products, the fiscal year."""


@dataclass(frozen=True)
class TrytonPeer(TrytondPeer):
    """One test's ERP database on the session's server."""

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


@pytest.fixture(scope="session")
def tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    with serve(PEER, "Tryton", tmp_path_factory.mktemp(PEER), TrytonServer) as server:
        yield server


@pytest.fixture
def tryton(tryton_server: TrytonServer) -> Iterator[TrytonPeer]:
    """A fresh copy of the seeded ERP template, served by the session's trytond."""
    with database_copy(PEER, tryton_server, "erp") as name:
        yield TrytonPeer(server=tryton_server, database=name)
