"""``make bench``: does the ERP outbox keep up with the demo at 10 dispenses/s against a REAL
Tryton? Per-event GL posting and summarised GL posting, side by side, in the same run.

For each mode, in a child process of its own (DBOS is one per process), on a fresh copy of
the Tryton peer's seeded template (``trytond`` as ``benchmarks.erp`` starts it) and a fresh
SQLite database: MedBridge is built as ``medbridge run --demo`` builds it (``demo_settings``:
the demo's minute slices, 10 s grace, 5 s summarizer interval) with that ERP configured
(``MEDBRIDGE_ERP_*``, the default rate limit of 10 calls/s and batches of 50) and
``erp_gl_posting`` set to the mode, and its loops are started as the demo starts them
(``start_workers(demo=True)``: the consumers, the ERP posting worker, the GL summarizer when
summarised, the replenishment planner and procure-to-pay workflows, the demo's simulated
suppliers and its traffic at ``--rate`` steps/s, i.e. dispenses and clinical consumption).
No HTTP or MLLP listener, so no HL7 cabinets: the traffic generator is the only source.

Every ``--every`` seconds for ``--seconds`` (``MEDBRIDGE_BENCH_DRAIN_SECONDS`` shortens a run)
the child samples the outbox: rows ``pending`` (what the posting worker has still to post:
journal entries and workflow documents), rows ``summarising`` (consumption entries waiting
for their slice's summary) and summaries not yet posted. At the end: the consumption
movements made (the rate achieved), the outbox's rows by status, and the moves MedBridge made
in Tryton's journal. The parent prints both modes' samples beside each other, with the ratio
of pending rows per-event / summarised.

"Drained" means: the pending rows at the end are about what one round of the worker takes
(a batch), not a backlog that grows with time; summarising rows wait at most a slice plus
its grace by design.

    python -m benchmarks.drain --rate 10 --seconds 180 --every 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select

from benchmarks.erp import ROOT, build_peer, fail, moves_by_description, trytond
from medbridge.app import MedBridge
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.demo.wiring import demo_settings
from medbridge.domain.gl_summary import CONSUMPTION
from medbridge.observability.logging import configure_logging
from medbridge.settings import Settings
from medbridge.store import erp_postings
from medbridge.store.erp_postings import PostingStatus
from medbridge.store.gl_summaries import SummaryStatus
from medbridge.store.tables import gl_summaries, ledger_movements

MODES = ("per_event", "summarised")
SECONDS_ENV = "MEDBRIDGE_BENCH_DRAIN_SECONDS"


def sample(engine: Engine, t: float) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = erp_postings.counts(conn)
        summaries: dict[str, int] = {
            str(row[0]): int(row[1])
            for row in conn.execute(
                select(gl_summaries.c.status, func.count()).group_by(gl_summaries.c.status)
            )
        }
        consumed = conn.execute(
            select(func.count()).where(ledger_movements.c.kind.in_([k.value for k in CONSUMPTION]))
        ).scalar_one()
    return {
        "t": round(t),
        "pending": rows[PostingStatus.PENDING],
        "summarising": rows[PostingStatus.SUMMARISING],
        "posted": rows[PostingStatus.POSTED],
        "failed": rows[PostingStatus.FAILED],
        "summaries_open": int(summaries.get(SummaryStatus.PENDING.value, 0)),
        "summaries_posted": int(summaries.get(SummaryStatus.POSTED.value, 0)),
        "consumption": int(consumed),
    }


def child(mode: str, rate: float, seconds: float, every: float, out: Path) -> None:
    """One mode: the demo against a fresh trytond for ``seconds``; its figures to ``out``."""
    configure_logging(level="ERROR", json=False)
    template = build_peer()
    with tempfile.TemporaryDirectory(prefix=f"medbridge-bench-drain-{mode}-") as tmp:
        folder = Path(tmp)
        with trytond(folder, "bench") as url:
            settings = demo_settings(
                Settings(
                    database_url=f"sqlite:///{folder / 'medbridge.db'}",
                    var_dir=folder / "var",
                    erp_url=url,
                    erp_database="bench",
                    erp_user=str(template["admin_login"]),
                    erp_password=SecretStr(str(template["admin_password"])),
                    erp_gl_posting=mode,
                    demo_dispenses_per_second=rate,
                    mllp_enabled=False,
                )
            )
            mb = MedBridge.build(settings)
            mb.upgrade_database()
            mb.seed_demo()
            samples: list[dict[str, Any]] = []
            mb.start_workers(demo=True, listen=False)
            t0 = time.monotonic()
            try:
                for k in range(1, int(seconds // every) + 1):
                    time.sleep(max(0.0, t0 + k * every - time.monotonic()))
                    samples.append(sample(mb.engine, time.monotonic() - t0))
                    print(f"  {mode}: {samples[-1]}", flush=True)
                elapsed = time.monotonic() - t0
            finally:
                mb.stop_workers(timeout=30)
            last = sample(mb.engine, elapsed)
            probe = TrytonErp(
                TrytonConfig(
                    url=url,
                    database="bench",
                    user=str(template["admin_login"]),
                    password=SecretStr(str(template["admin_password"])),
                    journal=str(template["journal"]),
                )
            )
            try:
                moves = moves_by_description(probe, str(template["journal"]))
            finally:
                probe.close()
                mb.engine.dispose()
            if any(c > 1 for c in moves.values()):
                fail(
                    f"{mode}: a move twice in Tryton: {[m for m, c in moves.items() if c > 1][:5]}"
                )
            if last["failed"]:
                fail(f"{mode}: {last['failed']} ERP postings failed")
    out.write_text(
        json.dumps(
            {
                "mode": mode,
                "samples": samples,
                "last": last,
                "elapsed": elapsed,
                "moves": sum(moves.values()),
                "trytond": template["versions"]["trytond"],
            }
        )
    )


def ratio(a: int, b: int) -> str:
    return f"{a / b:,.1f}x" if b else ("=" if a == 0 else "- (0)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.drain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seconds = float(os.environ.get(SECONDS_ENV, "180"))
    parser.add_argument("--rate", type=float, default=10.0, help="demo steps/s (10)")
    parser.add_argument(
        "--seconds", type=float, default=seconds, help=f"per mode (180; env {SECONDS_ENV})"
    )
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (30)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    every = min(args.every, args.seconds)
    if args.rate <= 0 or every <= 0:
        parser.error("--rate, --seconds and --every must be positive")
    if args.child:
        child(args.child, args.rate, args.seconds, every, args.out)
        return
    started = time.perf_counter()
    build_peer()  # once, before either mode is timed
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="medbridge-bench-drain-") as tmp:
        for mode in MODES:
            out = Path(tmp) / f"{mode}.json"
            command = [sys.executable, "-m", "benchmarks.drain", "--child", mode]
            command += ["--rate", str(args.rate), "--seconds", str(args.seconds)]
            command += ["--every", str(every), "--out", str(out)]
            print(f"{mode}: the demo at {args.rate:g}/s for {args.seconds:g} s", flush=True)
            log = Path(tmp) / f"{mode}.log"  # its stderr: DBOS's threads outlive its stop
            with log.open("wb") as errors:
                done = subprocess.run(
                    command, cwd=ROOT, stderr=errors, check=False, timeout=args.seconds + 900
                )
            if done.returncode != 0:
                fail(f"the {mode} run failed ({done.returncode}):\n{log.read_text()[-4000:]}")
            results[mode] = json.loads(out.read_text())

    per, summ = results["per_event"], results["summarised"]
    console = Console()
    table = Table(
        title=f"ERP outbox at the demo's {args.rate:g} dispenses/s against Tryton: per event vs"
        " summarised (pending rows = what the posting worker has still to post)"
    )
    for column in ("t s", "per-event pending", "summarised pending", "ratio"):
        table.add_column(column, justify="right")
    table.add_column("summarised: summarising / summaries open", justify="right")
    for a, b in zip(per["samples"], summ["samples"], strict=False):
        table.add_row(
            str(a["t"]),
            f"{a['pending']:,}",
            f"{b['pending']:,}",
            ratio(a["pending"], b["pending"]),
            f"{b['summarising']:,} / {b['summaries_open']}",
        )
    console.print(table)
    for r in (per, summ):
        last = r["last"]
        console.print(
            f"{r['mode']:>10}: {last['consumption']:,} consumption movements in"
            f" {r['elapsed']:.0f} s ({last['consumption'] / r['elapsed']:.1f}/s); outbox once"
            f" stopped: {last['pending']:,} pending, {last['summarising']:,} summarising,"
            f" {last['posted']:,} posted ({last['summaries_posted']} summaries);"
            f" {r['moves']:,} moves in Tryton's journal"
        )
    end = per["samples"][-1]["pending"], summ["samples"][-1]["pending"]
    console.print(
        f"pending at the last sample: per-event [bold]{end[0]:,}[/] vs summarised"
        f" [bold]{end[1]:,}[/] ({ratio(*end)}); moves in Tryton {per['moves']:,} vs"
        f" {summ['moves']:,} ({ratio(per['moves'], summ['moves'])} fewer summarised)"
    )
    s = demo_settings(Settings())
    console.print(
        f"rate={args.rate:g}/s seconds={args.seconds:g} every={every:g}s"
        f" erp_rate_limit={s.erp_rate_limit:g}/s batch={s.erp_batch_size}"
        f" summary={s.erp_summary_period}/grace {s.erp_summary_grace:g} s (the demo's)"
        f" trytond={per['trytond']}"
        f" storage=SQLite cores={os.cpu_count()} python={sys.version.split()[0]}"
        f" wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
