"""``make bench``: the ledger workers' scale-out on PostgreSQL + NATS JetStream.

For each worker count (1, then 2): a fresh PostgreSQL database (migrated, the demo network
seeded) and a fresh JetStream stream are loaded with the same movements through MedBridge's
own intake (opening receipts, then N dispenses and clinical consumption over the demo's
stores), untimed. Then K worker processes, each a ``MedBridge`` on those settings running
the ``ledger`` consumer (partitions shared between them through the JetStream leases), are
started and wait at a barrier; the clock runs from the barrier until the ledger holds every
movement (the last movement's ``applied_at``; the clock process polls slowly, so as not to
take CPU from the workers). Each run checks every movement applied exactly once and the
ledger = GL.

    python -m benchmarks.scaleout --movements 20000

Prints ``scale-out: 1 worker N/s, 2 workers M/s, ratio R``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import nats
from rich.console import Console
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from benchmarks.pipeline import movements, opening_stock
from medbridge.app import MedBridge
from medbridge.observability.logging import configure_logging
from medbridge.runtime.tuning import tune_interpreter
from medbridge.settings import Settings
from medbridge.store import ledger as ledger_store
from medbridge.store.db import normalize_url
from medbridge.store.tables import ledger_movements

SOURCE = "bench/scaleout"


def settings_for(pg: str, database: str, stream: str) -> Settings:
    url = make_url(normalize_url(pg)).set(database=database).render_as_string(False)
    return Settings(
        database_url=url,
        bus_url=os.environ.get("MEDBRIDGE_BENCH_NATS", "nats://127.0.0.1:4222"),
        bus_stream=stream,
        bus_subject_prefix=f"bench.{stream.lower()}",
        bus_ack_wait=10.0,
        workflows_enabled=False,
    )


def worker(settings: Settings, barrier: Any, stop: Any) -> None:
    """One worker process: the ledger consumer until ``stop``."""
    tune_interpreter()
    configure_logging(level="WARNING", json=False)
    mb = MedBridge.build(settings)
    consumer = mb.consumers["ledger"]
    barrier.wait()
    halt = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), halt.set()), daemon=True).start()
    consumer.run(halt, idle_sleep=0.01)
    mb.bus.close()


def prepare(pg: str, n: int, seed: int) -> tuple[Settings, int]:
    """A fresh database and stream, loaded; returns the settings and the movements to apply."""
    name = f"mb_scaleout_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(pg), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    settings = settings_for(pg, name, f"BENCH_{name.upper()}")
    mb = MedBridge.build(settings)
    mb.upgrade_database()
    mb.seed_demo()
    run = uuid.uuid4().hex[:8]
    subs = movements(n, seed, run)
    opening = opening_stock(subs, run)
    mb.intake.submit(opening, SOURCE)
    for i in range(0, len(subs), 500):
        mb.intake.submit(subs[i : i + 500], SOURCE)
    mb.bus.close()
    mb.engine.dispose()
    return settings, len(opening) + n


def cleanup(pg: str, settings: Settings) -> None:
    async def drop() -> None:
        nc = await nats.connect(settings.bus_url)
        try:
            await nc.jetstream().delete_stream(settings.bus_stream)
        finally:
            await nc.close()

    asyncio.run(drop())
    admin = create_engine(normalize_url(pg), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        name = make_url(settings.database_url).database
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def timed_run(pg: str, workers: int, n: int, seed: int) -> float:
    """Movements applied per second with ``workers`` processes (verified)."""
    settings, expected = prepare(pg, n, seed)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers + 1)
    stop = context.Event()
    procs = [context.Process(target=worker, args=(settings, barrier, stop)) for _ in range(workers)]
    for p in procs:
        p.start()
    engine = create_engine(settings.database_url)
    try:
        barrier.wait(timeout=120)
        t0 = datetime.now(UTC)
        while True:  # a slow poll: this process must not take CPU from the workers
            time.sleep(0.5)
            with engine.connect() as conn:
                done = conn.execute(select(func.count()).select_from(ledger_movements)).scalar_one()
            if done >= expected:
                break
            if not all(p.is_alive() for p in procs):
                sys.exit(f"FAILED: a worker died ({done} of {expected} applied)")
        with engine.connect() as conn:
            done = conn.execute(select(func.count()).select_from(ledger_movements)).scalar_one()
            last = conn.execute(select(func.max(ledger_movements.c.applied_at))).scalar_one()
            checks = ledger_store.facility_checks(conn, {"H1": "1400-H1", "H2": "1400-H2"})
        elapsed = (last - t0).total_seconds()  # the last movement's own commit time
        if done != expected or any(c.difference for c in checks):
            sys.exit(f"FAILED: {done} of {expected} applied; {checks}")
        return expected / elapsed
    finally:
        stop.set()
        for p in procs:
            p.join(30)
        engine.dispose()
        cleanup(pg, settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaleout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--movements", type=int, default=20_000)
    parser.add_argument(
        "--pg", default=os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    configure_logging(level="WARNING", json=False)
    console = Console()
    started = time.perf_counter()
    one = timed_run(args.pg, 1, args.movements, args.seed)
    two = timed_run(args.pg, 2, args.movements, args.seed)
    console.print(
        f"[bold]scale-out: 1 worker {one:,.0f}/s, 2 workers {two:,.0f}/s, ratio {two / one:.2f}[/]"
    )
    console.print(
        f"ledger consumer on PostgreSQL + NATS JetStream, {args.movements:,} movements per run,"
        f" workers=separate processes cores={os.cpu_count()}"
        f" wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
