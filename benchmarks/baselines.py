"""The ceilings every ingest figure is printed beside, measured in the same run on the same
disk: plain ``sqlite3`` inserting rows shaped like ``bus_events`` (real serialized envelopes)
into a WAL database with the same ``synchronous`` setting,

- one row per commit: what durable single writes cost here (each commit an fsync);
- 1,000 rows per transaction (``executemany``): the batched-insert ceiling.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

Row = tuple[str, str, str, str, str]

SCHEMA = (
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " type TEXT NOT NULL, subject TEXT NOT NULL,"
    " idempotency_key TEXT NOT NULL UNIQUE, payload TEXT NOT NULL)"
)
INSERT = "INSERT INTO events (id, type, subject, idempotency_key, payload) VALUES (?,?,?,?,?)"


def _open(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute(SCHEMA)
    return db


def _check(db: sqlite3.Connection, expected: int) -> None:
    (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    if count != expected:
        sys.exit(f"FAILED: raw baseline stored {count} of {expected} rows")


def batched_rate(path: Path, rows: list[Row], synchronous: str, per_txn: int = 1000) -> float:
    """Rows per second, ``per_txn`` rows per transaction."""
    db = _open(path, synchronous)
    try:
        t0 = time.perf_counter()
        for i in range(0, len(rows), per_txn):
            db.execute("BEGIN")
            db.executemany(INSERT, rows[i : i + per_txn])
            db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        _check(db, len(rows))
        return len(rows) / elapsed
    finally:
        db.close()


def one_per_commit_rate(path: Path, rows: list[Row], synchronous: str) -> float:
    """Rows per second, each its own transaction."""
    db = _open(path, synchronous)
    try:
        t0 = time.perf_counter()
        for row in rows:
            db.execute(INSERT, row)
        elapsed = time.perf_counter() - t0
        _check(db, len(rows))
        return len(rows) / elapsed
    finally:
        db.close()
