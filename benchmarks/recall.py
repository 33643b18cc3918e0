"""``make bench``: what the lot history costs the ledger consumer, and how fast a lot's trace
answers.

Two runs on fresh SQLite files, in the same process, the same generated dispenses and
clinical consumptions (``benchmarks.pipeline``'s, every one drawn first-expiry-first-out from
the opening lot): the ledger consumer as it is (each movement also writes the lots it took to
``ledger_movement_lots``), and as a baseline the same consumer with that one insert left out
(the ledger before lot history). Then ``flows.recall.trace`` of the busiest item's opening lot,
whose history holds thousands of rows, timed over ``--traces`` calls.

    python -m benchmarks.recall --movements 10000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

from rich.console import Console

from benchmarks.pipeline import SOURCE, movements, opening_stock
from medbridge.app import MedBridge
from medbridge.flows.recall import trace
from medbridge.observability.logging import configure_logging
from medbridge.runtime.tuning import tune_interpreter
from medbridge.settings import Settings
from medbridge.store import ledger as ledger_store


@contextmanager
def without_lot_history() -> Iterator[None]:
    """The baseline: the consumer without the lot-history insert."""
    kept = ledger_store._insert_lots

    def skip(conn: Any, rows: Any) -> None:
        return None

    ledger_store._insert_lots = skip  # type: ignore[assignment]
    try:
        yield
    finally:
        ledger_store._insert_lots = kept


def drain(url: str, n: int, seed: int, traces: int) -> tuple[float, list[float], int]:
    """Seconds to drain ``n`` movements; each trace's seconds and the dispenses it found."""
    app = MedBridge.build(Settings(database_url=url, sqlite_synchronous="FULL"))
    try:
        app.upgrade_database()
        app.seed_demo()
        run = uuid4().hex[:8]
        subs = movements(n, seed, run)
        app.intake.submit(opening_stock(subs, run), SOURCE)
        ledger = app.consumers["ledger"]
        ledger.drain()
        for i in range(0, n, 500):
            app.intake.submit(subs[i : i + 500], SOURCE)
        t0 = time.perf_counter()
        applied = ledger.drain()
        seconds = time.perf_counter() - t0
        if applied != n or app.bus.dead_letter_count("ledger"):
            sys.exit(f"FAILED: {n} submitted, {applied} applied")
        busiest = max(
            {s.movement.item for s in subs},
            key=lambda item: sum(s.movement.item == item for s in subs),
        )
        timings, events = [], 0
        for _ in range(traces):
            t0 = time.perf_counter()
            found = trace(app.engine, app.masterdata, busiest, f"OPEN-{run}")
            timings.append(time.perf_counter() - t0)
            events = sum(g["events"] for g in found["dispensed"])
        return seconds, timings, events
    finally:
        app.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recall", description=__doc__)
    parser.add_argument("--movements", type=int, default=10_000)
    parser.add_argument("--traces", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians shown")
    args = parser.parse_args(argv)
    if min(args.movements, args.traces, args.repeat) < 1:
        parser.error("--movements, --traces and --repeat must be positive")
    configure_logging(level="WARNING", json=False)
    tune_interpreter()
    console, n = Console(), args.movements
    with_lots, without, timings, events = [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="medbridge-bench-") as tmp:
        for r in range(args.repeat):  # alternated, so that neither always runs first
            for lots in (r % 2 == 0, r % 2 == 1):
                url = f"sqlite:///{tmp}/{r}-{lots}.db"
                if lots:
                    seconds, traced, events = drain(url, n, args.seed + r, args.traces)
                    with_lots.append(seconds)
                    timings += traced
                else:
                    with without_lot_history():
                        without.append(drain(url, n, args.seed + r, 1)[0])
    seconds, baseline = statistics.median(with_lots), statistics.median(without)
    rate, base = n / seconds, n / baseline
    console.print(
        f"ledger consumer with lot history: {rate:,.0f} movements/s; baseline without it:"
        f" {base:,.0f} movements/s; ratio {rate / base:.3f} (medians of {args.repeat})",
        highlight=False,
    )
    median = statistics.median(timings)
    console.print(
        f"trace of a lot dispensed {events:,} times (of {n:,} movements): median"
        f" {median * 1000:.1f} ms over {len(timings)} calls; the drain of one movement takes"
        f" {seconds / n * 1000:.3f} ms",
        highlight=False,
    )


if __name__ == "__main__":
    main()
