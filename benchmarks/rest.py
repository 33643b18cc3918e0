"""``make bench``: ``POST /v1/stock-movements`` durable requests/s, single and in batches, next
to the raw SQLite ceilings measured in the same run (``benchmarks.baselines``).

MedBridge is built as ``medbridge run`` builds it (SQLite file, synchronous FULL by default,
migrated, the demo network seeded, ``tune_interpreter``), and its API served by uvicorn in
this process; the load client runs in ANOTHER process (its CPU is not this process's GIL): a
keep-alive HTTP/1.1 client on raw asyncio streams, ``--connections`` connections each sending
one request at a time for ``--seconds``. Every answer must be 202 (durably appended); the
events stored are counted afterwards.

    python -m benchmarks.rest --connections 32 --seconds 5 --batch 100
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import orjson
import uvicorn
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from benchmarks.baselines import Row, batched_rate, one_per_commit_rate
from medbridge.app import MedBridge
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.movements import StockMovement
from medbridge.governance.clients import Role
from medbridge.observability.logging import configure_logging
from medbridge.runtime.processes import http_config
from medbridge.runtime.tuning import tune_interpreter
from medbridge.settings import Settings
from medbridge.store.tables import bus_events

HOST = "127.0.0.1"
STORES = ("H1-ICU", "H1-PHARM", "H2-ED", "H2-PHARM")


def movement(key: str, n: int) -> dict[str, object]:
    return {
        "idempotency_key": key,
        "kind": "dispense",
        "item": "VANCO-1G",
        "location": STORES[n % len(STORES)],
        "quantity": "1",
        "unit": "VIAL",
        "occurred_at": "2026-11-22T10:00:00Z",
    }


# --- the load client (its own process) --------------------------------------------------------


@dataclass
class Load:
    requests: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


async def _connection(
    port: int, api_key: str, run: str, conn: int, batch: int, deadline: float, load: Load
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    n = 0
    try:
        while time.monotonic() < deadline:
            items = [movement(f"{run}-{conn}-{n}-{i}", n + i) for i in range(batch)]
            body = orjson.dumps(items if batch > 1 else items[0])
            head = (
                f"POST /v1/stock-movements HTTP/1.1\r\nHost: {HOST}\r\n"
                f"X-API-Key: {api_key}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            sent = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            load.latencies.append(time.perf_counter() - sent)
            load.codes[int(status_line.split()[1])] += 1
            load.requests += 1
            n += batch
    finally:
        writer.close()


async def _drive(port: int, api_key: str, connections: int, seconds: float, batch: int) -> Load:
    load = Load()
    run = uuid4().hex[:8]
    t0 = time.monotonic()
    deadline = t0 + seconds
    await asyncio.gather(
        *(_connection(port, api_key, run, c, batch, deadline, load) for c in range(connections))
    )
    load.seconds = time.monotonic() - t0
    return load


def drive(port: int, api_key: str, connections: int, seconds: float, batch: int) -> Load:
    return asyncio.run(_drive(port, api_key, connections, seconds, batch))


def ready() -> bool:
    return True


# --- the server (this process) ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def serve(mb: MedBridge) -> tuple[uvicorn.Server, threading.Thread, int]:
    port = free_port()
    settings = mb.settings.model_copy(update={"http_host": HOST, "http_port": port})
    server = uvicorn.Server(http_config(settings, mb.api()))  # as medbridge run serves
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, port


def raw_rows(n: int) -> list[Row]:
    rows = []
    for i in range(n):
        fields = movement(f"raw-{i}", i)
        del fields["idempotency_key"]
        m = StockMovement.model_validate(fields)
        envelope = EventEnvelope[StockMovement](
            type=m.event_type,
            source="bench",
            subject=f"{m.item}@{m.location}",
            idempotency_key=f"raw-{i}",
            data=m,
        )
        rows.append(
            (
                str(envelope.id),
                envelope.type,
                envelope.subject,
                f"raw-{i}",
                envelope.model_dump_json(),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    tune_interpreter()  # as medbridge run does
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=100, help="movements per batch request")
    parser.add_argument("--raw-rows", type=int, default=3000, help="rows per raw baseline")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING", json=False)
    console = Console(width=150)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="medbridge-bench-rest-") as tmp,
        ProcessPoolExecutor(max_workers=1, mp_context=context) as client,
    ):
        settings = Settings(
            database_url=f"sqlite:///{tmp}/medbridge.db",
            var_dir=Path(tmp) / "var",
            # the load client is one client: its limit high enough never to refuse it, so the
            # limiter's cost is measured but not its refusals
            client_rate_limits={"default": "1000000/second"},
        )
        mb = MedBridge.build(settings)
        mb.upgrade_database()
        mb.seed_demo()
        api_key = mb.clients.register("bench", Role.INTEGRATION)
        client.submit(ready).result()
        server, thread, port = serve(mb)
        try:
            client.submit(drive, port, api_key, 4, 1.0, 1).result()  # warm-up, untimed
            single = client.submit(drive, port, api_key, args.connections, args.seconds, 1).result()
            batch = client.submit(
                drive, port, api_key, args.connections, args.seconds, args.batch
            ).result()
        finally:
            server.should_exit = True
            thread.join(10)
        with mb.engine.connect() as conn:
            stored = conn.execute(
                select(func.count())
                .select_from(bus_events)
                .where(bus_events.c.source == "api/bench")
            ).scalar_one()
        mb.engine.dispose()
        rows = raw_rows(args.raw_rows)
        synchronous = settings.sqlite_synchronous
        one = one_per_commit_rate(Path(tmp) / "raw1.db", rows, synchronous)
        batched = batched_rate(Path(tmp) / "rawb.db", rows, synchronous)

    for label, load in (("single", single), ("batch", batch)):
        if set(load.codes) != {202}:
            sys.exit(f"FAILED ({label}): answers {dict(load.codes)}")
    sent = single.requests + batch.requests * args.batch
    warm = 0  # the warm-up's movements are counted below only if stored under another run
    if stored < sent + warm:
        sys.exit(f"FAILED: {sent} movements answered 202, {stored} stored")

    table = Table(title="POST /v1/stock-movements, durable (202 after commit); latency in ms")
    for column in ("load", "requests", "req/s", "movements/s", "p50", "p99", "vs raw"):
        table.add_column(column, justify="left" if column == "load" else "right", no_wrap=True)
    for label, load, per, base, base_label in (
        (f"single x{args.connections} conns", single, 1, one, "1-row commits"),
        (f"batch of {args.batch} x{args.connections}", batch, args.batch, batched, "batched"),
    ):
        ordered = sorted(load.latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        rate = load.requests / load.seconds
        table.add_row(
            label,
            f"{load.requests:,}",
            f"{rate:,.0f}",
            f"{rate * per:,.0f}",
            f"{statistics.median(ordered) * 1000:.1f}",
            f"{p99 * 1000:.1f}",
            f"{rate * per / base:.2f}x {base_label}",
        )
    console.print(table)
    console.print(
        f"raw sqlite3 in the same run: one row per commit {one:,.0f} rows/s; 1,000-row"
        f" transactions {batched:,.0f} rows/s (synchronous={synchronous}). {stored:,} movements"
        f" stored, every answer 202. client=separate process cores={os.cpu_count()}"
        f" sqlite={sqlite3.sqlite_version} wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
