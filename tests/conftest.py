"""Shared fixtures.

Storage runs on SQLite by default; set ``MEDBRIDGE_DATABASE_URL`` to a PostgreSQL server URL
(``postgresql://postgres@127.0.0.1:5432/postgres``) to run the same tests there: each test
session then creates its own database and drops it at the end. Nothing skips silently: an
unreachable PostgreSQL is an error.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from medbridge.app import MedBridge
from medbridge.bus.jetstream import JetStreamConfig
from medbridge.settings import Settings
from medbridge.store.db import create_db_engine, normalize_url
from medbridge.store.migrate import upgrade
from medbridge.store.tables import metadata

pytest_plugins = [
    "peers.gnuhealth",  # the GNU Health peer's fixtures (tests/peers/gnuhealth.py)
    "peers.tryton",  # the Tryton ERP peer's fixtures (tests/peers/tryton.py)
]


def _server_url() -> str | None:
    url = os.environ.get("MEDBRIDGE_DATABASE_URL")
    if url and make_url(url).get_backend_name() == "postgresql":
        return normalize_url(url)
    return None


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per test session: SQLite file, or a fresh PostgreSQL database."""
    server = _server_url()
    if server is None:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'medbridge.db'}"
        upgrade(create_db_engine(url))
        yield url
        return
    name = f"medbridge_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # an earlier test's durable workflow may still be mid-transaction on these tables
            # (a thread DBOS.destroy does not stop): end such sessions, never idle ones
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND state IN ('active', 'idle in transaction',"
                    " 'idle in transaction (aborted)')"
                )
            )
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty, migrated database."""
    engine = create_db_engine(database_url, sqlite_synchronous="NORMAL")
    _truncate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        sqlite_synchronous="NORMAL",
        retry_initial_backoff=0.001,
        retry_max_backoff=0.01,
        retry_max_attempts=3,
    )


@pytest.fixture
def medbridge(engine: Engine, settings: Settings) -> Iterator[MedBridge]:
    """A wired MedBridge on an empty database with the demo network seeded."""
    mb = MedBridge.build(settings)
    mb.seed_demo()
    yield mb
    mb.stop_workers()
    mb.engine.dispose()


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The NATS server with JetStream the ``nats`` tests use (an unreachable one fails them)."""
    return os.environ.get("MEDBRIDGE_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture
def nats_stream(nats_url: str) -> JetStreamConfig:
    """A JetStream log of the test's own: unique stream name and subject prefix."""
    tag = uuid.uuid4().hex[:12]
    return JetStreamConfig(
        url=nats_url, stream=f"MEDBRIDGE_TEST_{tag}", subject_prefix=f"medbridge-test.{tag}"
    )


@pytest.fixture
def backend(database_url: str) -> str:
    return make_url(database_url).get_backend_name()


_session_status: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _session_status
    _session_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End a PostgreSQL run once its results are reported, whatever threads are left.

    Durable workflows outlive a test by design (DBOS recovers them on the next start): a test
    that leaves an order still expecting goods leaves its workflow's thread waiting in DBOS's
    executor, which ``DBOS.destroy`` does not join and the interpreter does at exit. Once the
    session's database is dropped, DBOS retries that thread's reads forever (connection
    errors are retried), so the run never ended (CI's PostgreSQL run after the scan receiving
    tests). On SQLite the same read fails for good and the thread ends. So on PostgreSQL, with
    the summary printed, the process ends here with the session's status."""
    url = os.environ.get("MEDBRIDGE_DATABASE_URL", "")
    if _session_status is None or not url or make_url(url).get_backend_name() != "postgresql":
        return
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if any(not t.daemon for t in others):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_session_status)
