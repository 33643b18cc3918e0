"""``make bench``: the message browser's searches with 1,000,000 messages stored (issue 16,
"Done when" 2: a filtered search under 300 ms at that volume).

A fresh database (a SQLite file with MedBridge's own engine settings, or with ``--pg URL`` a
new PostgreSQL database), migrated, is loaded untimed with N messages and their bodies
(executemany in 50,000-row transactions on SQLite, COPY on PostgreSQL): a month of traffic,
mostly HL7 dispenses, some FHIR, X12, cXML and flat files, 200 senders, five facilities,
statuses as a hospital sees them (applied, a few duplicates, parked, refused, outbound sent
and acknowledged). Then ``MessageBrowser.search`` (what ``GET /v1/messages`` calls, less
HTTP: the keyset query plus the dead-letter lookup of the page) is timed, the median of
``--repeat`` runs of each:

- by control id; by business key; by partner + status + a 3-day range; by message type;
- a facility-scoped client's parked messages; the newest page with no filter;
- a deep keyset page (the cursor of the 500,000th row), and the count a reprocess previews.

Baseline, same run, same database: one primary-key fetch of a message row on the raw
driver connection (the floor of any query here); the ratio says how many such fetches one
search costs. A full scan (``count(*)`` over an unindexed expression) shows what the
indexes save.

    python -m benchmarks.messages --messages 1000000 [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from medbridge.canonical.messages import MessageFilter
from medbridge.flows.messages import MessageBrowser, MessagePage
from medbridge.store import migrate
from medbridge.store.db import create_db_engine, normalize_url
from medbridge.store.messages import Cursor

START = datetime(2026, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
BATCH = 50_000
TARGET_MS = 300.0

PROTOCOLS = [("hl7v2", 80), ("fhir", 10), ("x12", 5), ("cxml", 3), ("flatfile", 2)]
TYPES = {
    "hl7v2": ["RDS^O13", "DFT^P03", "RDE^O11"],
    "fhir": ["MedicationDispense", "SupplyDelivery", "Procedure"],
    "x12": ["810", "855", "856", "997"],
    "cxml": ["InvoiceDetailRequest", "ShipNoticeRequest", "ConfirmationRequest"],
    "flatfile": ["snapshot"],
}
STATUSES = [
    ("applied", 88),
    ("duplicate", 5),
    ("parked", 3),
    ("refused", 2),
    ("sent", 1),
    ("acknowledged", 1),
]
FACILITIES = ["H1", "H2", "H3", "H4", "H5"]
COLUMNS = (
    "id, received_at, direction, protocol, connector, sender, message_type, control_id,"
    " business_key, facility, status, correlation_id, idempotency_key, event_count, ack, error"
)


def _weighted(pairs: list[tuple[str, int]], rng: random.Random, n: int) -> list[str]:
    return rng.choices([p for p, _ in pairs], weights=[w for _, w in pairs], k=n)


def rows(n: int, seed: int) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(message row, body row), oldest first; ids time-ordered like UUIDv7."""
    rng = random.Random(seed)
    protocols = _weighted(PROTOCOLS, rng, n)
    statuses = _weighted(STATUSES, rng, n)
    step = SPAN / n
    for i in range(n):
        at = START + step * i
        protocol, status = protocols[i], statuses[i]
        ident = f"{int(at.timestamp() * 1000):012x}{i:020x}"
        ident = f"{ident[:8]}-{ident[8:12]}-7{ident[13:16]}-8{ident[17:20]}-{ident[20:32]}"
        sender = f"{protocol}/SENDER{rng.randrange(200):03d}"
        kind = rng.choice(TYPES[protocol])
        facility = FACILITIES[rng.randrange(5)]
        key = f"ITEM{rng.randrange(500):03d}@{facility}-LOC{rng.randrange(10)}"
        direction = "out" if status in ("sent", "acknowledged") else "in"
        correlation = str(uuid.UUID(int=rng.getrandbits(128)))
        raw = f"MSH|^~\\&|APP|{facility}|MB|NET|{at:%Y%m%d%H%M%S}||{kind}|CTL{i:09d}|P|2.5.1"
        yield (
            (
                ident,
                at,
                direction,
                protocol,
                protocol,
                sender,
                kind,
                f"CTL{i:09d}",
                key,
                facility,
                status,
                correlation,
                f"{sender}:CTL{i:09d}",
                1,
                "MSA|AA",
                None,
            ),
            (ident, protocol, at, "text/plain", raw),
        )


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(engine: Engine, n: int, seed: int) -> None:
    raw = engine.raw_connection()
    try:
        db = raw.driver_connection
        assert db is not None
        db.execute("PRAGMA synchronous=OFF")  # untimed load of a throw-away database
        marks = ", ".join("?" * 16)
        messages_sql = f"INSERT INTO messages ({COLUMNS}) VALUES ({marks})"
        bodies_sql = (
            "INSERT INTO message_bodies (message_id, connector, received_at, media_type, body)"
            " VALUES (?, ?, ?, ?, ?)"
        )
        batch_m: list[tuple[Any, ...]] = []
        batch_b: list[tuple[Any, ...]] = []

        def flush() -> None:
            db.execute("BEGIN")
            db.executemany(messages_sql, batch_m)
            db.executemany(bodies_sql, batch_b)
            db.execute("COMMIT")
            batch_m.clear()
            batch_b.clear()

        for m, b in rows(n, seed):
            batch_m.append((m[0], _sqlite_time(m[1]), *m[2:]))
            batch_b.append((b[0], b[1], _sqlite_time(b[2]), b[3], b[4]))
            if len(batch_m) >= BATCH:
                flush()
        if batch_m:
            flush()
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("ANALYZE")
    finally:
        raw.close()


def _copy_text(values: tuple[Any, ...]) -> str:
    out = []
    for v in values:
        if v is None:
            out.append("\\N")
        elif isinstance(v, datetime):
            out.append(v.isoformat())
        else:
            out.append(str(v).replace("\\", "\\\\").replace("\t", " ").replace("\n", " "))
    return "\t".join(out) + "\n"


def load_postgresql(engine: Engine, n: int, seed: int) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur:
            generated = rows(n, seed)
            while True:
                chunk = [next(generated, None) for _ in range(BATCH)]
                found = [c for c in chunk if c is not None]
                if not found:
                    break
                m_buf = io.StringIO("".join(_copy_text(m) for m, _ in found))
                b_buf = io.StringIO("".join(_copy_text(b) for _, b in found))
                with cur.copy(f"COPY messages ({COLUMNS}) FROM STDIN") as copy:
                    copy.write(m_buf.getvalue())
                with cur.copy(
                    "COPY message_bodies (message_id, connector, received_at, media_type, body)"
                    " FROM STDIN"
                ) as copy:
                    copy.write(b_buf.getvalue())
                conn.commit()
            cur.execute("ANALYZE messages")
            cur.execute("ANALYZE message_bodies")
        conn.commit()
    finally:
        raw.close()


def median_ms(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    fn()  # warm: statement caches, pages
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def floor_ms(engine: Engine, ident: str, repeat: int) -> float:
    """One primary-key fetch on the raw driver connection."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        mark = "?" if engine.dialect.name == "sqlite" else "%s"
        sql = f"SELECT * FROM messages WHERE id = {mark}"

        def fetch() -> object:
            cur.execute(sql, (ident,))
            return cur.fetchall()

        return median_ms(fetch, repeat * 10)[0]
    finally:
        raw.close()


def measure(engine: Engine, n: int, repeat: int, seed: int) -> list[tuple[str, float, int]]:
    browser = MessageBrowser(engine)
    # the loaded rows again (same generator, same seed): values known to be stored
    sample = middle = next(rows(1, seed))[0]
    for i, (m, _) in enumerate(rows(n, seed)):
        if i == n // 3:
            sample = m
        if i == n // 2:
            middle = m
            break
    since = START + timedelta(days=12)
    cases: list[tuple[str, MessageFilter, str | None]] = [
        ("control id", MessageFilter(control_id=sample[7]), None),
        ("business key", MessageFilter(business_key=sample[8]), None),
        (
            "partner + status + 3 days",
            MessageFilter(
                sender=sample[5], status="applied", since=since, until=since + timedelta(days=3)
            ),
            None,
        ),
        ("message type", MessageFilter(message_type="DFT^P03"), None),
        (
            "facility scope + parked",
            MessageFilter(status="parked", facilities=frozenset({"H2"})),
            None,
        ),
        ("newest page, no filter", MessageFilter(), None),
        ("deep keyset page (row n/2)", MessageFilter(), Cursor(middle[1], middle[0]).encode()),
        (
            "deep page + protocol",
            MessageFilter(protocol="x12"),
            Cursor(middle[1], middle[0]).encode(),
        ),
    ]
    results = []
    for name, f, cursor in cases:
        ms, page = median_ms(partial(browser.search, f, cursor, 50), repeat)
        assert isinstance(page, MessagePage)
        results.append((name, ms, len(page.items)))
    parked_fhir = MessageFilter(status="parked", protocol="fhir")
    ms, count = median_ms(partial(browser.preview, parked_fhir), repeat)
    assert isinstance(count, int)
    results.append(("preview count (parked fhir)", ms, count))
    return results


def full_scan_ms(engine: Engine) -> float:
    with engine.connect() as conn:
        t0 = time.perf_counter()
        conn.execute(text("SELECT count(*) FROM messages WHERE lower(control_id) = 'ctl000000007'"))
        return (time.perf_counter() - t0) * 1000


def run(engine: Engine, n: int, repeat: int, seed: int, console: Console, label: str) -> None:
    t0 = time.perf_counter()
    if engine.dialect.name == "sqlite":
        load_sqlite(engine, n, seed)
    else:
        load_postgresql(engine, n, seed)
    load = time.perf_counter() - t0
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
        bodies = conn.execute(text("SELECT count(*) FROM message_bodies")).scalar_one()
    if stored != n or bodies != n:
        sys.exit(f"FAILED: {stored} messages and {bodies} bodies stored of {n}")
    results = measure(engine, n, repeat, seed)
    probe_id = next(rows(1, seed))[0][0]
    floor = floor_ms(engine, probe_id, repeat)
    scan = full_scan_ms(engine)
    table = Table(title=f"message search, {stored:,} messages stored ({label})")
    for column in ("search", "rows", "ms (median)", "x PK fetch", "of 300 ms"):
        table.add_column(column, justify="left" if column == "search" else "right")
    for name, ms, found in results:
        table.add_row(
            name, f"{found:,}", f"{ms:.2f}", f"{ms / floor:.1f}x", f"{ms / TARGET_MS:.3f}"
        )
    console.print(table)
    worst = max(ms for _, ms, _ in results[:-1])
    preview = results[-1][1]
    console.print(
        f"{label}: {stored:,} messages (+ {bodies:,} bodies) loaded untimed in {load:.0f} s;"
        f" baseline, same run: primary-key fetch {floor:.3f} ms, full scan {scan:.0f} ms."
        f" Slowest search {worst:.1f} ms = {worst / TARGET_MS:.3f}x the 300 ms target,"
        f" {worst / floor:.0f}x a PK fetch, {scan / worst:.0f}x faster than a full scan;"
        f" the reprocess preview's count {preview:.1f} ms."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--pg", default=None, help="a PostgreSQL server (a database is made)")
    args = parser.parse_args(argv)
    console = Console(width=110)
    if args.pg is None:
        with tempfile.TemporaryDirectory(prefix="bench-messages-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'messages.db'}"
            engine = create_db_engine(url, sqlite_synchronous="NORMAL")
            migrate.upgrade(engine)
            try:
                run(engine, args.messages, args.repeat, args.seed, console, "SQLite")
            finally:
                engine.dispose()
        return
    name = f"bench_messages_{os.getpid()}"
    admin = create_engine(normalize_url(args.pg), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_url(args.pg)).set(database=name).render_as_string(False)
    engine = create_db_engine(url)
    try:
        migrate.upgrade(engine)
        run(engine, args.messages, args.repeat, args.seed, console, "PostgreSQL")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
