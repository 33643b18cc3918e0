"""``make bench``: journal entries posted to a REAL Tryton ERP through the buffered queue, next
to the ERP's own call latency.

Builds the Tryton peer if needed (``make -f peers/tryton/Makefile.inc peers-tryton``), copies
its seeded template database and starts ``trytond`` on a free port; builds MedBridge on a temp
SQLite database with the demo network and creates N journal entries (receipts and dispenses
through intake + the ledger consumer: not timed). Then it times the ``ErpPosting`` worker
draining all N to Tryton in batches (postings/s through the outbox, the rate limiter and the
breaker: one ``post_journal_entries`` port call per claimed batch), and measures, in the same
run against the same trytond: the direct single-post rate (``post_journal_entry`` called in a
loop on fresh entries, one move per call chain: what the outbox did per entry before batching),
the ERP's own batch ceiling (``post_journal_entries`` called directly on fresh batches of the
same size, no outbox), and single ``find_journal_entry`` and ``search_read`` latencies. The
ratios say what batching buys over single posts, and what the outbox costs over the ceiling.
``MAIN_OUTBOX_RATE`` is the figure measured on main before batching (issue 17), printed for
the 10x target.

Afterwards every one of the N entries must be in Tryton exactly once (or the run fails), and
trytond is stopped.

    python -m benchmarks.erp --entries 500 --rate-limit 0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from medbridge.app import MedBridge
from medbridge.bus.port import RetryPolicy
from medbridge.canonical.base import Money
from medbridge.canonical.erp import ErpRef
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import ItemCategory
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.demo.network import ITEMS, STORES, UNIT_PRICES
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.flows.intake import Submission
from medbridge.observability.logging import configure_logging
from medbridge.settings import Settings
from medbridge.store import erp_postings
from medbridge.store.erp_postings import PostingStatus

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / ".peers" / "tryton"
TEMPLATE_DIR = PEER_VENV / "db"
SOURCE = "bench/erp"
UNLIMITED = 1e9  # calls/s: the RateLimiter needs a positive rate; this never waits
MAIN_OUTBOX_RATE = 3.3  # postings/s through the outbox on main, one call chain per entry
DRUGS = [i for i in ITEMS if i.category is ItemCategory.DRUG]


def fail(message: str) -> None:
    sys.exit(f"FAILED: {message}")


# --- the Tryton peer -----------------------------------------------------------------------


def build_peer() -> dict[str, Any]:
    built = subprocess.run(
        ["make", "--no-print-directory", "-f", "peers/tryton/Makefile.inc", "peers-tryton"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if built.returncode != 0:
        fail(f"the Tryton peer could not be built:\n{built.stdout[-2000:]}{built.stderr[-4000:]}")
    template: dict[str, Any] = json.loads((TEMPLATE_DIR / "template.json").read_text())
    return template


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def trytond(folder: Path, database: str) -> Iterator[str]:
    """A trytond serving a copy of the template as ``database``; yields its URL; stops it."""
    shutil.copyfile(TEMPLATE_DIR / "template.sqlite", folder / f"{database}.sqlite")
    port = free_port()
    config = folder / "trytond.conf"
    config.write_text(
        f"[database]\nuri = sqlite://\npath = {folder}\n"
        f"[web]\nlisten = 127.0.0.1:{port}\n[session]\ntimeout = 3600\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    log = folder / "trytond.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(PEER_VENV / "bin" / "trytond"), "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        body = {"id": 0, "method": "common.server.version", "params": []}
        while True:
            if process.poll() is not None:
                fail(f"trytond exited ({process.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.post(url, json=body, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                fail(f"trytond not ready in 60 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# --- MedBridge's side ----------------------------------------------------------------------


def movements(n: int, run: str, day: datetime) -> list[Submission]:
    """Receipts and dispenses in turns over the drugs and stores: one journal entry each."""
    pairs = [(item, store) for item in DRUGS for store in STORES]
    out = []
    for k in range(n):
        item, store = pairs[(k // 2) % len(pairs)]
        if k % 2 == 0:
            movement = StockMovement(
                kind=MovementKind.RECEIPT,
                item=item.code,
                location=store,
                quantity=Decimal(2),
                unit=item.base_unit,
                lot=f"B-{run}",
                expiry=day.date() + timedelta(days=365),
                unit_cost=Money(amount=UNIT_PRICES[item.code]),
                occurred_at=day,
            )
        else:
            movement = StockMovement(
                kind=MovementKind.DISPENSE,
                item=item.code,
                location=store,
                quantity=Decimal(1),
                unit=item.base_unit,
                occurred_at=day,
                encounter_ref=f"enc-{run}-{k:06d}",
            )
        out.append(Submission(movement, f"{run}-{k:08d}"))
    return out


def fresh_entry(n: int, run: str, day: date) -> JournalEntry:
    amount = Decimal("4.20")
    return JournalEntry(
        entry_id=f"BENCH-{run}-{n:04d}",
        posting_date=day,
        description=f"bench direct post {n}",
        source_event_id=f"bench-{run}-{n}",
        correlation_id=f"bench-{run}-{n}",
        lines=(
            JournalLine(account="5100-H1", debit=amount, cost_center="H1-CC-PHARM", facility="H1"),
            JournalLine(account="1400-H1", credit=amount, facility="H1"),
        ),
    )


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - t0)
    return seconds


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def moves_by_description(erp: TrytonErp, journal: str) -> Counter[str]:
    [found] = erp.client.search_read("account.journal", [("code", "=", journal)], ["id"], limit=1)
    moves = erp.client.search_read(
        "account.move", [("journal", "=", found["id"])], ["description", "state"]
    )
    return Counter(str(m["description"]) for m in moves if m["state"] == "posted")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.erp",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--entries", type=int, default=500, help="N journal entries (500)")
    parser.add_argument(
        "--rate-limit", type=float, default=0.0, help="ERP calls/s of the worker (0: unlimited)"
    )
    parser.add_argument("--batch", type=int, default=50, help="postings claimed per round (50)")
    parser.add_argument("--samples", type=int, default=50, help="latency samples per read (50)")
    parser.add_argument("--direct", type=int, default=10, help="direct posts timed (10)")
    parser.add_argument(
        "--direct-batches", type=int, default=3, help="direct batch calls timed (3)"
    )
    args = parser.parse_args(argv)
    if min(args.entries, args.samples, args.direct, args.direct_batches, args.batch) < 1:
        parser.error("--entries, --samples, --direct, --direct-batches, --batch must be positive")
    if args.rate_limit < 0:
        parser.error("--rate-limit must be >= 0")
    configure_logging(level="WARNING", json=False)
    console = Console()
    n, started = args.entries, time.perf_counter()
    run = uuid4().hex[:8]
    day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)

    template = build_peer()
    with tempfile.TemporaryDirectory(prefix="medbridge-bench-erp-") as tmp:
        folder = Path(tmp)
        with trytond(folder, "bench") as url:
            config = TrytonConfig(
                url=url,
                database="bench",
                user=str(template["admin_login"]),
                password=SecretStr(str(template["admin_password"])),
                journal=str(template["journal"]),
            )
            app = MedBridge.build(
                Settings(  # per event: the entries/s figure of issue 17 is one move each
                    database_url=f"sqlite:///{folder / 'medbridge.db'}",
                    var_dir=folder,
                    erp_gl_posting="per_event",
                )
            )
            erp, probe = TrytonErp(config), TrytonErp(config)
            try:
                app.upgrade_database()
                app.seed_demo()
                app.intake.submit(movements(n, run, day), SOURCE)
                app.consumers["ledger"].drain()
                with app.engine.connect() as conn:
                    pending = erp_postings.counts(conn)[PostingStatus.PENDING]
                if pending != n:
                    fail(f"{n} movements made {pending} pending postings, not {n}")
                probe.find_journal_entry("warm-up")  # log in, cache the journal
                erp.find_journal_entry("warm-up")
                # trytond's first moves load and compile what every later one reuses: pay
                # that before anything is timed (these moves are checked like the others)
                warm = [fresh_entry(k, f"{run}-warm", day.date()) for k in range(args.batch)]
                probe.post_journal_entries(warm)

                policy = ErpPostingPolicy(
                    rate_limit=args.rate_limit or UNLIMITED,
                    batch_size=args.batch,
                    retry=RetryPolicy(max_attempts=10, initial_backoff=0.05, max_backoff=1.0),
                )
                worker = ErpPosting(app.engine, erp, policy)
                t0 = time.perf_counter()
                settled = worker.drain(timeout=3600)
                drained = time.perf_counter() - t0
                with app.engine.connect() as conn:
                    after = erp_postings.counts(conn)
                    posted = {p.entry_id: p for p in erp_postings.postings(conn)}
                if settled != n or after[PostingStatus.POSTED] != n:
                    fail(f"{settled} of {n} settled; statuses {dict(after)}")

                find = timed(lambda: probe.find_journal_entry(f"BENCH-{run}-0000"), args.samples)
                read = timed(
                    lambda: probe.client.search_read("company.company", [], ["id"], limit=1),
                    args.samples,
                )
                singles = [fresh_entry(k, run, day.date()) for k in range(args.direct)]
                direct = [0.0] * len(singles)
                for k, entry in enumerate(singles):
                    t = time.perf_counter()
                    if not probe.post_journal_entry(entry).created:
                        fail(f"{entry.entry_id} was already in Tryton")
                    direct[k] = time.perf_counter() - t
                batches = [
                    [
                        fresh_entry(args.direct + b * args.batch + k, run, day.date())
                        for k in range(args.batch)
                    ]
                    for b in range(args.direct_batches)
                ]
                direct_batch = [0.0] * len(batches)  # seconds per entry, per call
                for b, batch in enumerate(batches):
                    t = time.perf_counter()
                    results = probe.post_journal_entries(batch)
                    direct_batch[b] = (time.perf_counter() - t) / len(batch)
                    if not all(isinstance(r, ErpRef) and r.created for r in results):
                        fail(f"a direct batch was not created whole: {results[:3]}")
                fresh = warm + singles + [entry for batch in batches for entry in batch]

                in_erp = moves_by_description(probe, config.journal)
                mine = {ref: c for ref, c in in_erp.items() if ref in posted}
                if set(mine) != set(posted) or set(mine.values()) != {1}:
                    missing = sorted(set(posted) - set(mine))[:5]
                    twice = sorted(ref for ref, c in mine.items() if c > 1)[:5]
                    fail(f"Tryton holds {len(mine)} of {n}; missing {missing}, twice {twice}")
                for entry in fresh:
                    if in_erp[entry.entry_id] != 1:
                        fail(f"{entry.entry_id} is in Tryton {in_erp[entry.entry_id]} times")
                if len(in_erp) != sum(in_erp.values()) or sum(in_erp.values()) != n + len(fresh):
                    fail(f"MedBridge's journal in Tryton: {sum(in_erp.values())} moves")
            finally:
                erp.close()
                probe.close()
                app.engine.dispose()

    rate = n / drained
    single = 1 / statistics.median(direct)  # direct single posts per second
    ceiling = 1 / statistics.median(direct_batch)  # entries/s of direct batch calls
    limit = f"{args.rate_limit:g}/s" if args.rate_limit else "unlimited"
    table = Table(title=f"medbridge -> Tryton ERP, {n:,} journal entries (rate limit {limit})")
    table.add_column("figure")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("entries/s", justify="right")
    table.add_row(
        f"outbox: ErpPosting drain, batches of {args.batch} (mean/entry)",
        f"{drained / n * 1000:.1f}",
        "",
        f"{rate:,.1f}",
    )
    table.add_row(
        f"direct batch: post_journal_entries x{args.batch} ({len(direct_batch)} calls, per entry)",
        f"{statistics.median(direct_batch) * 1000:.1f}",
        f"{max(direct_batch) * 1000:.1f}",
        f"{ceiling:,.1f}",
    )
    for label, seconds in [
        (f"direct single: post_journal_entry ({len(direct)} fresh)", direct),
        (f"find_journal_entry ({len(find)})", find),
        (f"search_read company.company ({len(read)})", read),
    ]:
        table.add_row(
            label,
            f"{statistics.median(seconds) * 1000:.1f}",
            f"{percentile(seconds, 99) * 1000:.1f}",
            f"{1 / statistics.median(seconds):,.1f}",
        )
    console.print(table)
    console.print(
        f"outbox [bold]{rate:,.1f}[/] entries/s in batches of {args.batch} vs direct single posts "
        f"{single:,.1f}/s in this run: [bold]{rate / single:.2f}x[/]; "
        f"{rate / ceiling:.2f}x the ERP's own batch ceiling ({ceiling:,.1f}/s)"
    )
    console.print(
        f"vs main's outbox ({MAIN_OUTBOX_RATE}/s, one call chain per entry): "
        f"[bold]{rate / MAIN_OUTBOX_RATE:.1f}x[/] (target 10x = {10 * MAIN_OUTBOX_RATE:.0f}/s); "
        "every entry in Tryton exactly once"
    )
    console.print(
        f"N={n} rate_limit={limit} batch={args.batch} trytond={template['versions']['trytond']}"
        f" storage=SQLite(both) cores={os.cpu_count()} python={sys.version.split()[0]}"
        f" wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
