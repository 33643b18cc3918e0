"""Analytics export rate (``medbridge.flows.analytics_export``): rows written to Parquet per
second, on SQLite.

Generated up front (not timed): the demo network, then N stock movements (dispenses and
receipts) and N bus events spread over D days, written straight into ``ledger_movements``
and ``bus_events`` (real serialized envelopes with an encounter pseudonym in their data).

Timed: a first export of everything (events minimised, movements, KPIs of every day), then
an incremental export after one more day of activity (N/D rows of each). The baseline is the
floor of any export of the same rows: a plain ``SELECT`` of both tables (the same engine) and
``pyarrow.Table.from_pylist`` + ``write_table`` of them as they come, with no minimisation,
no partitioning, no KPIs.

    python -m benchmarks.analytics --rows 100000 --days 30
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, insert, select

from medbridge.app import MedBridge
from medbridge.connectors.analytics import AnalyticsConfig, ParquetExport
from medbridge.flows.analytics_export import AnalyticsExport
from medbridge.settings import Settings
from medbridge.store.tables import bus_events, ledger_movements

LOCATIONS = ("H1-ICU", "H1-PHARM", "H1-OR", "H2-PHARM")


def _rows(start: datetime, days: int, n: int, offset: int) -> tuple[list[Any], list[Any]]:
    movements, events = [], []
    for i in range(n):
        at = start + timedelta(seconds=(i * days * 86400) // max(n, 1))
        event_id = str(uuid.uuid4())
        location = LOCATIONS[i % len(LOCATIONS)]
        kind = "receipt" if i % 10 == 0 else "dispense"
        movements.append(
            {
                "event_id": event_id,
                "kind": kind,
                "item": "VANCO-1G",
                "location": location,
                "to_location": None,
                "quantity": Decimal(1),
                "amount": Decimal("6.85"),
                "correlation_id": event_id,
                "occurred_at": at,
                "applied_at": datetime.now(UTC),
            }
        )
        data = {"kind": kind, "item": "VANCO-1G", "location": location, "quantity": "1"}
        data["encounter_ref"] = uuid.uuid4().hex[:32]
        envelope = {"id": event_id, "type": "inventory.dispensed.v1", "data": data}
        events.append(
            {
                "id": event_id,
                "type": "inventory.dispensed.v1",
                "source": "bench",
                "subject": f"VANCO-1G@{location}",
                "partition": 0,
                "idempotency_key": f"bench-{offset + i}",
                "correlation_id": event_id,
                "causation_id": None,
                "time": at,
                "appended_at": datetime.now(UTC),
                "payload": json.dumps(envelope),
            }
        )
    return movements, events


def _load(engine: Engine, start: datetime, days: int, n: int, offset: int) -> None:
    movements, events = _rows(start, days, n, offset)
    with engine.begin() as conn:
        for chunk in range(0, n, 5000):
            conn.execute(insert(ledger_movements), movements[chunk : chunk + 5000])
            conn.execute(insert(bus_events), events[chunk : chunk + 5000])


def _baseline(engine: Engine, out: Path) -> tuple[int, float]:
    began = time.perf_counter()
    total = 0
    with engine.connect() as conn:
        for table in (ledger_movements, bus_events):
            rows = [dict(r._mapping) for r in conn.execute(select(table))]
            pq.write_table(pa.Table.from_pylist(rows), out / f"{table.name}.parquet")
            total += len(rows)
    return total, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        settings = Settings(database_url=f"sqlite:///{root / 'bench.db'}", var_dir=root / "var")
        mb = MedBridge.build(settings)
        mb.upgrade_database()
        mb.seed_demo()
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=args.days)
        _load(mb.engine, start, args.days, args.rows, 0)

        (root / "base").mkdir()
        base_rows, base_s = _baseline(mb.engine, root / "base")
        target = ParquetExport(AnalyticsConfig(directory=root / "export"))
        export = AnalyticsExport(mb.engine, target, settle=timedelta(0))
        began = time.perf_counter()
        first = export.run(actor="bench")
        first_s = time.perf_counter() - began
        first_rows = first.of("movements").rows + first.of("events").rows
        if first_rows != base_rows:
            sys.exit(f"FAILED: exported {first_rows} rows of {base_rows}")

        more = args.rows // args.days
        _load(mb.engine, today, 1, more, args.rows)
        began = time.perf_counter()
        second = export.run(actor="bench")
        second_s = time.perf_counter() - began
        second_rows = second.of("movements").rows + second.of("events").rows
        if second_rows != 2 * more:
            sys.exit(f"FAILED: the incremental export wrote {second_rows} rows, not {2 * more}")
        mb.stop_workers()
        mb.engine.dispose()

    base_rate = base_rows / base_s
    print(f"analytics export, {args.rows} movements + {args.rows} events over {args.days} days")
    print(f"  baseline: SELECT + one Parquet file per table  {base_rate:>10,.0f} rows/s")
    rate = first_rows / first_s
    print(
        f"  first export (by day, minimised, KPIs)        {rate:>10,.0f} rows/s"
        f"  ({first_s:.1f} s, ratio {rate / base_rate:.2f})"
    )
    rate2 = second_rows / second_s
    print(
        f"  incremental export (one new day)              {rate2:>10,.0f} rows/s"
        f"  ({second_s:.2f} s for {second_rows} rows, ratio {rate2 / base_rate:.2f})"
    )


if __name__ == "__main__":
    main()
