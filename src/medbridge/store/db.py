"""Engine set-up for SQLite (embedded) and PostgreSQL (scale-out).

SQLite: WAL, ``synchronous`` from settings, a long busy timeout, foreign keys on, and every
writing transaction opened with ``BEGIN IMMEDIATE`` (the SQLAlchemy-documented recipe):
pysqlite's default deferred BEGIN lets two writers both hold a read lock and then deadlock on
upgrade, which busy_timeout cannot resolve. Work that only reads uses ``read_only(engine)``:
its transactions begin DEFERRED and never wait for the write lock (measured under MLLP load
on main: 32% of samples were reads waiting for it).
"""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` (psycopg 3 is the driver) and plain ``sqlite:///`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    background_checkpoints: bool = False,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url``. ``background_checkpoints`` (SQLite): no automatic WAL
    checkpoint inside a committing transaction; a ``Checkpointer`` thread does them instead."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if background_checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin_immediate(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN DEFERRED")  # a WAL snapshot; no write lock
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    if background_checkpoints:
        Checkpointer(engine).start()
    return engine


class Checkpointer:
    """WAL checkpoints on a thread of their own, every ``interval`` seconds (PASSIVE: they
    wait for no reader and no writer).

    Measured under MLLP load with SQLite's automatic checkpoint (every 1,000 pages, run by
    whichever commit crosses it): that commit, and every caller waiting on it, stalled for
    about 290 ms (the ACK p99 of a 32-connection run). The thread holds only a weak reference
    to the engine: it ends when the engine is disposed of or collected."""

    def __init__(self, engine: Engine, interval: float = 1.0) -> None:
        self._engine = weakref.ref(engine)
        self.interval = interval

    def start(self) -> None:
        threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            engine = self._engine()
            if engine is None:
                return
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the file went away or is busy: the next round tries again
                if self._engine() is None:
                    return
            finally:
                del engine


READ_ONLY = "medbridge_read_only"


def read_only(engine: Engine) -> Engine:
    """The same engine (same pool) for work that only reads: on SQLite its transactions
    begin DEFERRED, so a read never takes (or waits for) the database's one write lock; a
    write through it would fail on a busy database instead of waiting its turn."""
    return engine.execution_options(**{READ_ONLY: True})
