"""``make bench``: embedded end-to-end movements/s next to a raw SQLite batched insert.

End to end = ``MovementIntake.submit`` in batches (master-data validation + durable append to
the event log), then draining the ``ledger`` consumer (exactly-once claim, stock ledger, balanced
journal entries). The raw baseline inserts the same number of envelope-sized rows with plain
``sqlite3`` ``executemany`` in 1,000-row transactions, WAL, same ``synchronous``: the ceiling
of this disk and this SQLite, with none of our work.

A second ceiling ("every row") copies each row the timed run wrote (the event log, the
dedup claims, the applied movements, the journal entries and lines, the ERP outbox) into an
empty database of MedBridge's own schema with the same plain ``executemany``, 1,000 rows per
transaction: what storing one movement costs on this disk before any of our Python runs.

    python -m benchmarks.pipeline --movements 20000 --batch 500 --synchronous FULL --repeat 3
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from benchmarks.baselines import Row, batched_rate
from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.masterdata import ItemCategory
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.demo.network import ITEMS, STORES, UNIT_PRICES
from medbridge.flows.intake import Submission, subject_of
from medbridge.observability.logging import configure_logging
from medbridge.runtime.tuning import tune_interpreter
from medbridge.settings import Settings
from medbridge.store import ledger as ledger_store

SOURCE = "bench/cabinet"
UNITS = {i.code: i.base_unit for i in ITEMS}
DRUGS = [i.code for i in ITEMS if i.category is ItemCategory.DRUG]
SUPPLIES = [i.code for i in ITEMS if i.category is ItemCategory.SUPPLY]


def movements(n: int, seed: int, run: str) -> list[Submission]:
    """Dispenses (drugs) and clinical consumption (supplies); OR/ED stores use mostly supplies."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for k in range(n):
        store = rng.choice(list(STORES))
        supply = store.endswith(("-OR", "-ED")) != (rng.random() < 0.2)
        item = rng.choice(SUPPLIES if supply else DRUGS)
        movement = StockMovement(
            kind=MovementKind.CLINICAL_CONSUMPTION if supply else MovementKind.DISPENSE,
            item=item,
            location=store,
            quantity=Decimal(rng.choice([1, 1, 1, 2, 2, 3, 5])),
            unit=UNITS[item],
            occurred_at=start + timedelta(seconds=k * 3600 / n),
            encounter_ref=f"enc-{rng.getrandbits(48):012x}",
        )
        out.append(Submission(movement, f"{run}-{k:08d}"))
    return out


def opening_stock(subs: list[Submission], run: str) -> list[Submission]:
    """One receipt per item and store, enough for every generated issue (plus a margin)."""
    need: Counter[tuple[str, str]] = Counter()
    for s in subs:
        need[(s.movement.item, s.movement.location)] += s.movement.quantity
    return [
        Submission(
            StockMovement(
                kind=MovementKind.RECEIPT,
                item=item.code,
                location=store,
                quantity=need[(item.code, store)] + 100,
                unit=item.base_unit,
                lot=f"OPEN-{run}",
                expiry=date.today() + timedelta(days=365),
                unit_cost=Money(amount=UNIT_PRICES[item.code]),
                occurred_at=datetime.now(UTC) - timedelta(days=1),
            ),
            f"{run}-open-{item.code}-{store}",
        )
        for item in ITEMS
        for store in STORES
    ]


WRITTEN = (
    "bus_events",
    "consumer_dedup",
    "ledger_movements",
    "ledger_movement_lots",
    "journal_entries",
    "journal_lines",
    "erp_postings",
)
"""The tables a movement adds rows to (the stock balances are updated in place)."""


def high_water(url: str) -> dict[str, int]:
    db = sqlite3.connect(make_url(url).database or "")
    try:
        return {
            t: db.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0] for t in WRITTEN
        }
    finally:
        db.close()


def every_row_rate(run_url: str, marks: dict[str, int], empty: Path, synchronous: str) -> float:
    """Movements/s of plain ``executemany`` re-inserting every row of the timed run."""
    MedBridge.build(Settings(database_url=f"sqlite:///{empty}")).upgrade_database()
    source = sqlite3.connect(make_url(run_url).database or "")
    target = sqlite3.connect(empty, isolation_level=None)
    target.execute(f"PRAGMA synchronous={synchronous}")
    try:
        tables = []
        for t in WRITTEN:
            cursor = source.execute(f"SELECT * FROM {t} WHERE rowid > ?", (marks[t],))
            columns = [d[0] for d in cursor.description]
            insert = (
                f"INSERT INTO {t} ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})"
            )
            tables.append((insert, cursor.fetchall()))
        movements = len(tables[0][1])
        t0 = time.perf_counter()
        for insert, rows in tables:
            for i in range(0, len(rows), 1000):
                target.execute("BEGIN")
                target.executemany(insert, rows[i : i + 1000])
                target.execute("COMMIT")
        return movements / (time.perf_counter() - t0)
    finally:
        source.close()
        target.close()


def end_to_end(
    url: str, args: argparse.Namespace, seed: int
) -> tuple[float, float, dict[str, int]]:
    """Seconds for (intake of all batches, draining the ledger consumer) and the high-water
    marks of the written tables before the timed run; verifies the result."""
    app = MedBridge.build(Settings(database_url=url, sqlite_synchronous=args.synchronous))
    try:
        app.upgrade_database()
        app.seed_demo()
        run = uuid4().hex[:8]
        subs = movements(args.movements, seed, run)
        app.intake.submit(opening_stock(subs, run), SOURCE)
        ledger = app.consumers["ledger"]
        ledger.drain()
        with app.engine.connect() as conn:
            before = ledger_store.counts(conn)
        dead_before = app.bus.dead_letter_count("ledger")
        marks = high_water(url)

        t0 = time.perf_counter()
        for i in range(0, len(subs), args.batch):
            app.intake.submit(subs[i : i + args.batch], SOURCE)
        t1 = time.perf_counter()
        applied = ledger.drain()
        t2 = time.perf_counter()

        with app.engine.connect() as conn:
            after = ledger_store.counts(conn)
        delta = {k: after[k] - before[k] for k in after}
        dead = app.bus.dead_letter_count("ledger") - dead_before
        if applied != args.movements or set(delta.values()) != {args.movements} or dead:
            sys.exit(f"FAILED: {args.movements} submitted, {applied} drained, {delta}, {dead} dead")
        return t1 - t0, t2 - t1, marks
    finally:
        app.engine.dispose()


def raw_rows(n: int, seed: int) -> list[Row]:
    """Rows shaped like ``bus_events``: real serialized envelopes of the same movements."""
    rows = []
    for s in movements(n, seed, "raw"):
        envelope = EventEnvelope[StockMovement](
            type=s.movement.event_type,
            source=SOURCE,
            subject=subject_of(s.movement),
            idempotency_key=f"{SOURCE}:{s.idempotency_key}",
            data=s.movement,
        )
        key, payload = envelope.idempotency_key, envelope.model_dump_json()
        rows.append((str(envelope.id), envelope.type, envelope.subject, key, payload))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--movements", type=int, default=20_000, help="N (default 20000)")
    parser.add_argument("--batch", type=int, default=500, help="movements per submit (500)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median is shown")
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    if args.movements < 1 or args.batch < 1 or args.repeat < 1:
        parser.error("--movements, --batch and --repeat must be positive")
    configure_logging(level="WARNING", json=False)
    tune_interpreter()  # as the processes that run the intake and the consumers do
    console = Console()
    n, started = args.movements, time.perf_counter()

    if args.database_url and not args.database_url.startswith("sqlite"):
        parser.error("the pipeline benchmark compares with SQLite: --database-url sqlite:///…")
    intake, consumer, raw, every = [], [], [], []
    rows = raw_rows(n, args.seed)
    with tempfile.TemporaryDirectory(prefix="medbridge-bench-") as tmp:
        for r in range(args.repeat):
            url = args.database_url or f"sqlite:///{tmp}/medbridge-{r}.db"
            a, b, marks = end_to_end(url, args, args.seed + r)
            intake.append(a)
            consumer.append(b)
            every_row = every_row_rate(url, marks, Path(tmp) / f"rows-{r}.db", args.synchronous)
            every.append(n / every_row)
            per_second = batched_rate(Path(tmp) / f"raw-{r}.db", rows, args.synchronous)
            raw.append(n / per_second)

    def rate(seconds: list[float]) -> float:
        return n / statistics.median(seconds)

    total = [a + b for a, b in zip(intake, consumer, strict=True)]
    median = "median of " + str(args.repeat) if args.repeat > 1 else "1 run"
    table = Table(title=f"medbridge embedded pipeline, {n:,} movements ({median})")
    table.add_column("figure")
    table.add_column("seconds", justify="right")
    table.add_column("per second", justify="right")
    for label, seconds in [
        ("intake: validate + durable append", intake),
        ("ledger consumer: apply + journal", consumer),
        ("end to end (first submit → last applied)", total),
        ("raw sqlite3 executemany, 1,000-row txns", raw),
        ("raw sqlite3 executemany of every row written", every),
    ]:
        table.add_row(label, f"{statistics.median(seconds):.3f}", f"{rate(seconds):,.0f}")
    console.print(table)
    ratio = rate(total) / rate(raw)
    console.print(
        f"end-to-end is [bold]{ratio:.3f}x[/] raw batched insert ({1 / ratio:.1f}x slower)"
    )
    console.print(
        f"end-to-end is {rate(total) / rate(every):.3f}x raw insert of every row it writes;"
        f" that ceiling is itself {rate(every) / rate(raw):.3f}x raw batched insert"
    )
    settings = Settings()
    console.print(
        f"N={n} batch={args.batch} synchronous={args.synchronous} repeat={args.repeat}"
        f" consumer_batch={settings.consumer_batch_size} partitions={settings.bus_partitions}"
        f" cores={os.cpu_count()} sqlite={sqlite3.sqlite_version}"
        f" python={sys.version.split()[0]} database={args.database_url or 'temp SQLite file'}"
        f" wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
