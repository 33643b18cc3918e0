"""``make bench``: what the period lock costs the ledger posting (``flows.ledger_posting``).

Each batch of the ledger consumer reads the closed periods once (``store.periods.closed``; on
PostgreSQL under a SHARE lock of the ``periods`` table). Three runs in the same process, each
on a fresh database with the demo network seeded, posting the same ``--movements`` receipts
and dispenses through the intake and the ledger consumer (batches of the consumer's default
size); the time measured is the consumer's drain only:

- ``baseline``: the closed periods never read (``closed`` patched to answer nothing at once);
- ``lock``: 24 closed periods (2 years up to 2026-11), events in the open December;
- ``late``: the same 24 closed periods, every event of November (each entry moved to
  December, with its note, and posted per event rather than summarised).

After a warm-up run, the three are run ``--rounds`` times interleaved; the best of each
counts. Prints movements/s of each beside the baseline's, and the ratio.

    python -m benchmarks.period_lock [--movements 10000] [--rounds 2] [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.flows.intake import Submission
from medbridge.observability.logging import configure_logging
from medbridge.settings import Settings
from medbridge.store import periods
from medbridge.store.db import normalize_url
from medbridge.store.tables import periods as periods_table

CLOSED = [f"{2025 + (m // 12)}-{m % 12 + 1:02d}" for m in range(0, 23)]  # 2025-01 .. 2026-11
CLOSED_AT = datetime(2026, 12, 2, tzinfo=UTC)


def movements(n: int, month_start: datetime) -> list[Submission]:
    """Receipts and dispenses, alternating, of VANCO-1G at H1-PHARM within the month."""
    found = []
    for i in range(n):
        when = month_start + timedelta(minutes=i % 40_000)
        receipt = i % 2 == 0
        movement = StockMovement(
            kind=MovementKind.RECEIPT if receipt else MovementKind.DISPENSE,
            item="VANCO-1G",
            location="H1-PHARM",
            quantity=Decimal(2 if receipt else 1),
            unit="VIAL",
            occurred_at=when,
            unit_cost=Money(amount=Decimal("6.85")) if receipt else None,
        )
        found.append(Submission(movement, f"bench-{uuid.uuid4().hex}"))
    return found


@contextmanager
def database(pg: str | None, tmp: Path, name: str) -> Iterator[str]:
    if pg is None:
        yield f"sqlite:///{tmp / name}.db"
        return
    server = normalize_url(pg)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    db = f"medbridge_bench_{name}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    try:
        yield make_url(server).set(database=db).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def run(url: str, tmp: Path, n: int, variant: str) -> float:
    mb = MedBridge.build(Settings(database_url=url, var_dir=tmp / f"var-{uuid.uuid4().hex[:8]}"))
    mb.upgrade_database()
    mb.seed_demo()
    if variant != "baseline":
        with mb.engine.begin() as conn:
            conn.execute(
                periods_table.insert(),
                [
                    {
                        "period": p,
                        "state": "closed",
                        "cutoff": CLOSED_AT,
                        "closed_at": CLOSED_AT,
                        "actor": "bench",
                        "differences": 0,
                        "report": {},
                    }
                    for p in CLOSED
                ],
            )
    month = datetime(2026, 11 if variant == "late" else 12, 1, tzinfo=UTC)
    batch = movements(n, month)
    for start in range(0, n, 500):
        mb.intake.submit(batch[start : start + 500], source="bench")
    ledger = mb.consumers["ledger"]
    original = periods.closed
    if variant == "baseline":
        periods.closed = lambda conn, posting=False: frozenset()  # type: ignore[assignment]
    try:
        began = time.perf_counter()
        ledger.drain()
        elapsed = time.perf_counter() - began
    finally:
        periods.closed = original  # type: ignore[assignment]
        mb.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movements", type=int, default=10_000)
    parser.add_argument("--pg", default=None, help="a PostgreSQL server URL (else SQLite)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each; the best counts")
    args = parser.parse_args()
    configure_logging("WARNING", json=False)
    console = Console()
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with database(args.pg, Path(tmp), "warmup") as url:  # imports, caches: not measured
            run(url, Path(tmp), min(args.movements, 1000), "baseline")
        for round_ in range(args.rounds):  # interleaved; the best of each
            for variant in ("baseline", "lock", "late"):
                with database(args.pg, Path(tmp), f"{variant}{round_}") as url:
                    rate = run(url, Path(tmp), args.movements, variant)
                rates[variant] = max(rates.get(variant, 0.0), rate)
    engine = "PostgreSQL" if args.pg else "SQLite"
    table = Table(
        title=f"ledger posting with the period lock, {engine}, {args.movements} movements"
    )
    for column in ("run", "movements/s", "baseline movements/s", "ratio"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for variant, rate in rates.items():
        ratio = rate / rates["baseline"]
        table.add_row(variant, f"{rate:,.0f}", f"{rates['baseline']:,.0f}", f"{ratio:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
