"""``make bench``: HL7 v2 over MLLP end to end, ACK latency at a fixed rate, and our ER7 parser
beside python-hl7 and hl7apy, in one run.

MedBridge is built on a fresh SQLite file with the default (production) settings, migrated,
seeded with the demo network, the cabinet senders' codes mapped, and opening stock received
for every lot the messages dispense (not timed). A real ``MllpListener`` then listens on a
free port (its own event loop thread, as in ``medbridge run``), and the senders run in a
separate process (their CPU is not this process's GIL), sending RDS^O13 v2.5.1 dispenses with
lot and expiry, each with its own MSH-10:

(a) end to end (parsed, mapped, durably appended, ACKed): N messages on 1 connection, then N
    on 32 concurrent connections (``AsyncMllpClient``, one message at a time per connection);
(b) ACK latency at a fixed offered rate, open loop: messages are sent on schedule over a few
    connections whether or not earlier ones were acknowledged (pipelined), and latency counts
    from the scheduled send time, so a stall shows up instead of slowing the sender;
(c) parse rate of our parser, python-hl7 and hl7apy (fewer messages: it is slow) on the same
    messages: every sample file (../shared/samples/hl7v2) and the generated ones.

Every ACK must be AA with an empty MSA-3 (applied: not a duplicate, not parked for review), or
the run fails; afterwards the movement events are counted and the ledger consumer drained
(not timed) to check that every dispense was applied.

    python -m benchmarks.hl7 --messages 5000 --rates 500,1000,2000 --rate-seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from uuid import uuid4

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from benchmarks.baselines import batched_rate, one_per_commit_rate
from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import CodeSystem, Item, ItemCategory
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.hl7v2 import MllpListener
from medbridge.connectors.hl7v2.codec import parse
from medbridge.connectors.hl7v2.errors import Hl7ParseError
from medbridge.connectors.hl7v2.outbound import END, AsyncMllpClient, frame
from medbridge.demo.network import CABINETS, ITEMS, UNIT_PRICES
from medbridge.flows.intake import Submission
from medbridge.masterdata.repository import CrossReferences
from medbridge.observability.logging import configure_logging
from medbridge.runtime.tuning import tune_interpreter
from medbridge.settings import Settings
from medbridge.store import ledger as ledger_store
from medbridge.store.tables import bus_events

HOST = "127.0.0.1"
CABINET_SOURCE = "hl7:PYXIS@H1"
WARMUP = 50
MANY_CONNECTIONS = 32
RAW_ROWS = 3000
DRUGS = [i for i in ITEMS if i.category is ItemCategory.DRUG]
LOTS_PER_ITEM = 2


# --- set-up (not timed) -----------------------------------------------------------------------


def map_sources(mb: MedBridge) -> None:
    """The cross-references a hospital configures for its cabinets (as tests/hl7_support.py
    does for PYXIS@H1; the demo seed already maps each cabinet, its wards and base units)."""
    with mb.engine.begin() as conn:
        for code, location in (("H1", "H1-ICU"), ("ICU-CAB-1", "H1-ICU")):
            CrossReferences.map_location(conn, CABINET_SOURCE, code, location)
        CrossReferences.map_cost_center(conn, CABINET_SOURCE, "ICU", "H1-CC-ICU")
        CrossReferences.map_unit(conn, CABINET_SOURCE, "VL", "VIAL")


def coded(item: Item) -> str:
    """The item as a cabinet codes it in RXD-2: its NDC, else its RxNorm code."""
    for code in item.codes:
        if code.system is CodeSystem.NDC:
            return f"{code.code}^{item.name}^NDC"
    for code in item.codes:
        if code.system is CodeSystem.LOCAL and code.issuer == "RXNORM":
            return f"{code.code}^{item.name}^RXNORM"
    raise ValueError(f"{item.code}: no code a cabinet would send")


@dataclass(frozen=True)
class Dispense:
    text: str
    item: str
    store: str
    lot: str
    expiry: date
    quantity: int


def lot_of(run: str, item: str, store: str, n: int) -> tuple[str, date]:
    return f"{run[:4]}{item[:4]}{store[-3:]}{n}".upper(), date(2028, 1 + n, 28)


def dispenses(n: int, seed: int, run: str, phase: str) -> list[Dispense]:
    """RDS^O13 v2.5.1 from the demo cabinets (PYXIS@H1, PYXIS@H2): one RXD with lot and expiry."""
    rng = random.Random(f"{seed}-{phase}")
    now = datetime.now(UTC)
    out = []
    for k in range(n):
        source = rng.choice(list(CABINETS))
        cabinet, store, wards = CABINETS[source]
        application, facility = source.removeprefix("hl7:").split("@")
        item = rng.choice(DRUGS)
        lot, expiry = lot_of(run, item.code, store, rng.randrange(LOTS_PER_ITEM))
        quantity = rng.choice([1, 1, 1, 2, 2, 3])
        ts = (now - timedelta(seconds=n - k)).strftime("%Y%m%d%H%M%S+0000")
        control = f"BENCH-{run}-{phase}-{k:07d}"
        segments = [
            f"MSH|^~\\&|{application}|{facility}|MEDBRIDGE|NET|{ts}||RDS^O13^RDS_O13|{control}"
            "|P|2.5.1",
            f"PID|1||BENCH-MRN-{rng.randrange(10**6):06d}^^^{facility}^MR||Bench^Patient||19700101|U",
            f"PV1|1|I|{rng.choice(list(wards))}^{rng.randint(1, 30)}^A||||||||||||||||"
            f"V-{rng.randrange(10**7)}",
            f"ORC|RE|{control}^{application}",
            f"RXD|1|{coded(item)}|{ts}|{quantity}|{item.base_unit}|||||||||||||{lot}"
            f"|{expiry:%Y%m%d}|||||||||||{cabinet}^{application} cabinet^L",
        ]
        text = "\r".join(segments) + "\r"
        out.append(Dispense(text, item.code, store, lot, expiry, quantity))
    return out


def receive_opening_stock(mb: MedBridge, dispensed: Sequence[Dispense], run: str) -> None:
    """One receipt per lot, enough for every dispense of the run (plus a margin), applied."""
    need: Counter[tuple[str, str, str, date]] = Counter()
    for d in dispensed:
        need[(d.item, d.store, d.lot, d.expiry)] += d.quantity
    base = {i.code: i.base_unit for i in ITEMS}
    receipts = [
        Submission(
            StockMovement(
                kind=MovementKind.RECEIPT,
                item=item,
                location=store,
                quantity=Decimal(quantity + 100),
                unit=base[item],
                lot=lot,
                expiry=expiry,
                unit_cost=Money(amount=UNIT_PRICES[item]),
                occurred_at=datetime.now(UTC) - timedelta(days=1),
            ),
            f"{run}-open-{item}-{store}-{lot}",
        )
        for (item, store, lot, expiry), quantity in sorted(need.items())
    ]
    mb.intake.submit(receipts, "bench/opening-stock")
    mb.consumers["ledger"].drain()


@contextmanager
def listening(mb: MedBridge) -> Iterator[MllpListener]:
    """A real MLLP listener on a free port, on its own event loop thread, as in medbridge run."""
    listener = mb.mllp_listener(mb.hl7_config(port=0))
    listener.start_in_thread()
    try:
        yield listener
    finally:
        listener.stop_in_thread(60)


# --- the senders (run in a separate process) --------------------------------------------------


@dataclass
class PhaseResult:
    seconds: float
    codes: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def record(self, ack: str) -> None:
        """AA (applied), or what it was instead: AA-duplicate, AA-parked, AE, AR, ??."""
        try:
            msa = parse(ack).first("MSA")
        except Hl7ParseError:  # unreadable: reported as ??
            msa = None
        code = msa.get(1) if msa else "??"
        text = msa.get(3) if msa else ack[:120]
        if code == "AA" and text:
            code = "AA-duplicate" if "duplicate" in text else "AA-parked"
        self.codes[code] += 1
        if code != "AA" and len(self.refused) < 3:
            self.refused.append(ack.replace("\r", " / ")[:400])


async def _closed_loop(port: int, per_connection: list[list[str]]) -> PhaseResult:
    clients = [await AsyncMllpClient.connect(HOST, port) for _ in per_connection]
    acks: list[list[str]] = [[] for _ in per_connection]

    latencies: list[float] = []

    async def send_all(client: AsyncMllpClient, messages: list[str], out: list[str]) -> None:
        for message in messages:
            sent = time.perf_counter()
            out.append(await client.send(message))
            latencies.append(time.perf_counter() - sent)

    t0 = time.perf_counter()
    await asyncio.gather(
        *(send_all(c, m, a) for c, m, a in zip(clients, per_connection, acks, strict=True))
    )
    result = PhaseResult(time.perf_counter() - t0, latencies=latencies)
    for client in clients:
        await client.close()
    for ack in (a for per in acks for a in per):
        result.record(ack)
    return result


async def _open_loop(port: int, messages: list[str], rate: float, connections: int) -> PhaseResult:
    clients = [await AsyncMllpClient.connect(HOST, port) for _ in range(connections)]
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    result = PhaseResult(0.0)
    last_ack = start

    async def write(client: AsyncMllpClient, schedule: list[tuple[float, str]], due: deque[float]):
        for when, message in schedule:
            delay = when - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due.append(when)  # before the write: the ACK cannot come before it is queued
            client.writer.write(frame(message))
            await client.writer.drain()

    async def read(client: AsyncMllpClient, count: int, due: deque[float]) -> None:
        nonlocal last_ack
        for _ in range(count):
            data = await client.reader.readuntil(END)
            now = loop.time()
            result.latencies.append(now - due.popleft())
            last_ack = max(last_ack, now)
            result.record(data[data.find(b"\x0b") + 1 : -len(END)].decode("utf-8", "replace"))

    tasks = []
    for i, client in enumerate(clients):
        schedule = [(start + k / rate, messages[k]) for k in range(i, len(messages), connections)]
        due: deque[float] = deque()
        tasks += [write(client, schedule, due), read(client, len(schedule), due)]
    await asyncio.gather(*tasks)
    result.seconds = last_ack - start
    for client in clients:
        await client.close()
    return result


def closed_loop(port: int, per_connection: list[list[str]]) -> PhaseResult:
    return asyncio.run(_closed_loop(port, per_connection))


def open_loop(port: int, messages: list[str], rate: float, connections: int) -> PhaseResult:
    return asyncio.run(_open_loop(port, messages, rate, connections))


def ready() -> bool:
    return True


def check(label: str, result: PhaseResult, sent: int) -> None:
    if result.codes != Counter({"AA": sent}):
        refused = "\n  ".join(result.refused)
        sys.exit(f"FAILED ({label}): {sent} sent, ACKs {dict(result.codes)}\n  {refused}")


# --- parse rates ------------------------------------------------------------------------------


def read_every_component(text: str) -> int:
    """Parse, then read what python-hl7 builds up front: every component of every field."""
    message = parse(text)
    n = 0
    for segment in message.segments:
        for number in range(1, len(segment) + 1):
            for r in range(len(segment.repetitions(number))):
                n += len(segment.components(number, r))
    return n


def to_cr(text: str) -> str:
    """python-hl7 and hl7apy read LF as part of a segment: CR only for them (not timed)."""
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")


def hl7apy_parse(text: str) -> object:
    return parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)


def parse_rate(parser: Callable[[str], object], texts: Sequence[str], n: int, repeat: int) -> float:
    """Parses per second over ``n`` parses cycling over ``texts``: the median of ``repeat``."""
    batch = [texts[i % len(texts)] for i in range(n)]
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for text in batch:
            parser(text)
        seconds.append(time.perf_counter() - t0)
    return n / statistics.median(seconds)


def shared_samples() -> Path:
    """../shared/samples/hl7v2: ``MEDBRIDGE_SHARED_DIR``, else the nearest ``shared/`` above."""
    if os.environ.get("MEDBRIDGE_SHARED_DIR"):
        return Path(os.environ["MEDBRIDGE_SHARED_DIR"]) / "samples" / "hl7v2"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "samples" / "hl7v2").is_dir():
            return parent / "shared" / "samples" / "hl7v2"
    sys.exit("no shared/samples/hl7v2 above the checkout: set MEDBRIDGE_SHARED_DIR")


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    tune_interpreter()  # as medbridge run does
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hl7",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=5000, help="N per phase of (a) (5000)")
    parser.add_argument(
        "--rates", default="500,1000,2000", help="offered msgs/s in (b), comma-separated"
    )
    parser.add_argument("--rate-seconds", type=float, default=5, help="length of (b) (5)")
    parser.add_argument("--rate-connections", type=int, default=4, help="connections in (b) (4)")
    parser.add_argument(
        "--parse-messages",
        type=int,
        default=5000,
        help="(c) parses of generated messages per run (5000); the samples: as many characters",
    )
    parser.add_argument(
        "--hl7apy-messages", type=int, default=200, help="the same for hl7apy (200)"
    )
    parser.add_argument("--parse-repeat", type=int, default=3, help="median of R runs (3)")
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    counts = (
        args.messages,
        args.rate_connections,
        args.parse_messages,
        args.hl7apy_messages,
        args.parse_repeat,
    )
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if min(counts) < 1 or not rates or min(rates) <= 0 or args.rate_seconds <= 0:
        parser.error("counts, --rates and --rate-seconds must be positive")
    configure_logging(level="WARNING", json=False)
    console = Console()
    started = time.perf_counter()
    run = uuid4().hex[:8]
    n = args.messages
    rated = {r: max(1, round(r * args.rate_seconds)) for r in rates}
    warmup = dispenses(WARMUP, args.seed, run, "W")
    single = dispenses(n, args.seed, run, "A1")
    many = dispenses(n, args.seed, run, "A32")
    paced = {r: dispenses(rated[r], args.seed, run, f"B{r:g}") for r in rates}
    total = WARMUP + 2 * n + sum(rated.values())

    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="medbridge-bench-hl7-") as tmp,
        ProcessPoolExecutor(max_workers=1, mp_context=context) as senders,
    ):
        settings = Settings(database_url=f"sqlite:///{tmp}/medbridge.db", var_dir=Path(tmp) / "var")
        mb = MedBridge.build(settings)
        try:
            mb.upgrade_database()
            mb.seed_demo()
            map_sources(mb)
            everything = [*warmup, *single, *many, *(d for p in paced.values() for d in p)]
            receive_opening_stock(mb, everything, run)
            with mb.engine.connect() as conn:
                ledger_before = ledger_store.counts(conn)["movements"]
            senders.submit(ready).result()  # the sender process is up before anything is timed
            with listening(mb) as listener:
                port = listener.port
                check(
                    "warm-up",
                    senders.submit(closed_loop, port, [[d.text for d in warmup]]).result(),
                    WARMUP,
                )
                one = senders.submit(closed_loop, port, [[d.text for d in single]]).result()
                check("1 connection", one, n)
                texts = [d.text for d in many]
                per = [texts[i::MANY_CONNECTIONS] for i in range(MANY_CONNECTIONS)]
                thirty_two = senders.submit(closed_loop, port, [p for p in per if p]).result()
                check(f"{MANY_CONNECTIONS} connections", thirty_two, n)
                offered = {}
                for r in rates:
                    offered[r] = senders.submit(
                        open_loop, port, [d.text for d in paced[r]], r, args.rate_connections
                    ).result()
                    check(f"{r:g} msgs/s offered", offered[r], rated[r])

            with mb.engine.connect() as conn:
                stored = conn.execute(
                    select(func.count())
                    .select_from(bus_events)
                    .where(bus_events.c.source.like("hl7v2/%"))
                ).scalar_one()
            t_drain = time.perf_counter()
            applied = mb.consumers["ledger"].drain()
            drain_seconds = time.perf_counter() - t_drain
            with mb.engine.connect() as conn:
                ledger_delta = ledger_store.counts(conn)["movements"] - ledger_before
            dead = mb.bus.dead_letter_count("ledger")
            if stored != total or applied != total or ledger_delta != total or dead:
                sys.exit(
                    f"FAILED: {total} dispenses ACKed AA, {stored} stored, {applied} drained,"
                    f" {ledger_delta} in the ledger, {dead} dead letters"
                )
        finally:
            mb.stop_workers()
            mb.engine.dispose()

    mllp = Table(title="RDS^O13 over MLLP: parsed, mapped, stored, ACKed AA (latency in ms)")
    for column in ("load", "msgs", "seconds", "msg/s", "p50", "p99", "max"):
        mllp.add_column(column, justify="left" if column == "load" else "right", no_wrap=True)
    for label, result, count in (
        ("1 connection", one, n),
        (f"{MANY_CONNECTIONS} connections", thirty_two, n),
        *((f"open loop {r:g}/s x{args.rate_connections}", offered[r], rated[r]) for r in rates),
    ):
        ordered = sorted(result.latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        mllp.add_row(
            label,
            f"{count:,}",
            f"{result.seconds:.2f}",
            f"{count / result.seconds:,.0f}",
            *(f"{x * 1000:,.1f}" for x in (statistics.median(ordered), p99, ordered[-1])),
        )
    console.print(mllp)
    raw = [
        (str(uuid4()), "RDS", "x@y", f"raw-{i}", d.text)
        for i, d in enumerate([*single, *many][:RAW_ROWS])
    ]
    with tempfile.TemporaryDirectory(prefix="medbridge-bench-raw-") as tmp:
        one_commit = one_per_commit_rate(Path(tmp) / "one.db", raw, settings.sqlite_synchronous)
        batched = batched_rate(Path(tmp) / "batch.db", raw, settings.sqlite_synchronous)
    saturated = n / thirty_two.seconds
    console.print(
        f"raw sqlite3, same run, same synchronous: one row per commit {one_commit:,.0f}/s,"
        f" 1,000-row transactions {batched:,.0f}/s. MLLP x{MANY_CONNECTIONS}:"
        f" [bold]{saturated:,.0f} msgs/s[/] = {saturated / one_commit:.2f}x one-row commits,"
        f" {saturated / batched:.3f}x batched."
    )
    console.print(
        f"{total:,} ACKs, all AA ({WARMUP} of them warm-up, untimed); {stored:,} movement events"
        f" stored; then the ledger consumer applied {applied:,} ({applied / drain_seconds:,.0f}/s,"
        " untimed), 0 dead letters. Open loop (x connections, pipelined): msg/s is the achieved"
        " rate, its latency counts"
        " from each message's scheduled send time, ACK latency in the others from its send."
    )

    # (c) parse rates: the same messages for every parser
    samples = [p.read_bytes().decode("utf-8") for p in sorted(shared_samples().glob("*.hl7"))]
    corpora = {f"samples ({len(samples)})": samples, "generated": [d.text for d in single]}
    hl7_version, hl7apy_version = version("hl7"), version("hl7apy")
    parsers: list[tuple[str, Callable[[str], object], bool, int]] = [
        ("ours, parse", parse, False, args.parse_messages),
        ("ours, parse + read", read_every_component, False, args.parse_messages),
        (f"python-hl7 {hl7_version}", hl7.parse, True, args.parse_messages),
        (f"hl7apy {hl7apy_version}", hl7apy_parse, True, args.hl7apy_messages),
    ]
    table = Table(title="ER7 parse rate, the same messages for each (vs hl7: python-hl7 = 1)")
    for column in ("parser", "messages", "avg size", "parses", "msg/s", "vs hl7"):
        left = column in ("parser", "messages")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    generated = corpora["generated"]
    for corpus, texts in corpora.items():
        cr = [to_cr(t) for t in texts]
        size = statistics.mean(len(t) for t in texts)
        scale = statistics.mean(len(t) for t in generated) / size
        # as many characters from the samples as from the generated messages: fewer parses
        # of the larger sample files (but at least one of each)
        counts = {
            label: count if texts is generated else max(len(texts), round(count * scale))
            for label, _, _, count in parsers
        }
        rates = {
            label: parse_rate(fn, cr if needs_cr else texts, counts[label], args.parse_repeat)
            for label, fn, needs_cr, _ in parsers
        }
        reference = rates[f"python-hl7 {hl7_version}"]
        for label, *_ in parsers:
            table.add_row(
                label,
                corpus,
                f"{size:,.0f} B",
                f"{counts[label]:,}",
                f"{rates[label]:,.0f}",
                f"{rates[label] / reference:.2f}x",
            )
        table.add_section()
    console.print(table)
    console.print(
        "ours, parse: segments and fields split, components on demand (what the receiver"
        " does); ours, parse + read: every component of every field read and unescaped, the"
        " like-for-like figure against python-hl7, which builds its whole tree up front."
        " python-hl7 and hl7apy get the same texts CR-separated (normalised untimed);"
        f" hl7apy: parse_message(find_groups=False, TOLERANT). Median of {args.parse_repeat} runs."
    )
    console.print(
        f"N={n} rates={args.rates}/s for {args.rate_seconds:g}s each"
        f" synchronous={settings.sqlite_synchronous} (default)"
        f" partitions={settings.bus_partitions} senders=separate process"
        f" cores={os.cpu_count()} sqlite={sqlite3.sqlite_version}"
        f" python={sys.version.split()[0]} wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
