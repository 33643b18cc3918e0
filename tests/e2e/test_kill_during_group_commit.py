"""SIGKILL a real `medbridge run` 20 times while a group-committed stream flows in, restart it
each time on the same SQLite database, and find every movement applied and posted exactly once.

The stream is what a hospital network sends at once: eight dispensing cabinets pipelining
RDS^O13 over MLLP (up to ``WINDOW`` messages unanswered per connection), and a few integration
clients posting single movements and small batches to /v1/stock-movements. Their appends are
committed together by the group commit, and each ACK or 202 is released only after the commit.
Receipts (with unit costs) come first, so that the stock exists; dispenses follow, with a few
more receipts mixed in.

The senders behave as real ones do: an AA or a 202 is an acknowledgement; anything else (the
connection refused or broken, a missing ACK, an AR, a 503) is not, and the same message (same
MSH-10, same idempotency keys) is sent again until it is acknowledged, across the crashes.

The kills fall at random moments through the stream (after a random share of it has been
acknowledged, plus a random few milliseconds), while messages are in flight and the ledger
consumer has a backlog. At the end: every message's movements are in the log once, applied
once, posted once; the on-hand stock is exactly what was received minus what was dispensed;
the ledger value of each facility equals its GL inventory balance; nothing is dead-lettered.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
from collections import Counter, deque
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from e2e.test_crash_recovery import ADMIN_KEY, Server, free_port
from medbridge.app import MedBridge
from medbridge.bus.sql import SqlBus
from medbridge.canonical.masterdata import AccountRole, CodeSystem, Item, ItemCategory
from medbridge.connectors.hl7v2.codec import parse
from medbridge.connectors.hl7v2.mllp import END, START, MllpFramer
from medbridge.demo.network import CABINETS, ITEMS, UNIT_PRICES
from medbridge.store import ledger as ledger_store
from medbridge.store.tables import (
    bus_events,
    consumer_dedup,
    journal_entries,
    ledger_movements,
    stock_lots,
)

pytestmark = [pytest.mark.slow]

KILLS = 20
SEED = 14
MLLP_CONNECTIONS, MESSAGES_PER_CONNECTION, WINDOW = 8, 250, 16
REST_CLIENTS, RECEIPT_REQUESTS, DISPENSE_REQUESTS = 3, 24, 70
LOTS_PER_STORE, RECEIPTS_PER_LOT, RECEIPT_QUANTITY = 2, 4, 300
HOST = "127.0.0.1"
DRUGS = [i for i in ITEMS if i.category is ItemCategory.DRUG]
STORES = ["H1-PHARM", "H1-ICU", "H1-OR", "H2-PHARM", "H2-ED"]
NOW = datetime.now(UTC).replace(microsecond=0)

Lot = tuple[str, str, str]
"""item, store, lot"""


@dataclass
class Movement:
    token: str
    """What identifies it in the log: the end of its idempotency key."""
    lot: Lot
    quantity: int
    """signed: + received, - dispensed"""


Request = list[tuple[dict[str, Any], Movement]]
"""One POST: its movements as sent, and what each does."""


@dataclass
class Hl7Message:
    control_id: str
    text: str
    movement: Movement


@dataclass
class Progress:
    """What the senders have had acknowledged, and what they have in flight right now."""

    acknowledged: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    duplicates: Counter[str] = field(default_factory=Counter)
    resent: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)

    def acknowledge(self, movements: int) -> None:
        self.acknowledged += movements
        self.moved.set()

    async def reached(self, threshold: int) -> None:
        while self.acknowledged < threshold:
            self.moved.clear()
            await self.moved.wait()

    def flying(self) -> int:
        return sum(self.in_flight.values())


# --- the stream ----------------------------------------------------------------------------


def lot_of(item: str, store: str, n: int) -> tuple[str, date]:
    return f"K{item[:4]}{store[-3:]}{n}".replace("-", ""), date(2028, 1 + n, 28)


def coded(item: Item) -> str:
    """The item as a cabinet codes it in RXD-2: its NDC, else its RxNorm code."""
    for code in item.codes:
        if code.system is CodeSystem.NDC:
            return f"{code.code}^{item.name}^NDC"
    for code in item.codes:
        if code.system is CodeSystem.LOCAL and code.issuer == "RXNORM":
            return f"{code.code}^{item.name}^RXNORM"
    raise ValueError(f"{item.code}: no code a cabinet would send")


def rds(rng: random.Random, connection: int, n: int) -> Hl7Message:
    """An RDS^O13 v2.5.1 dispense from one of the demo cabinets, with lot and expiry."""
    source = list(CABINETS)[connection % len(CABINETS)]
    cabinet, store, wards = CABINETS[source]
    application, facility = source.removeprefix("hl7:").split("@")
    item = rng.choice(DRUGS)
    lot, expiry = lot_of(item.code, store, rng.randrange(LOTS_PER_STORE))
    quantity = rng.choice([1, 1, 2, 3])
    ts = NOW.strftime("%Y%m%d%H%M%S+0000")
    control = f"KILL{connection}-{n:05d}"
    segments = [
        f"MSH|^~\\&|{application}|{facility}|MEDBRIDGE|NET|{ts}||RDS^O13^RDS_O13|{control}|P|2.5.1",
        f"PID|1||KILL-MRN-{rng.randrange(10**6):06d}^^^{facility}^MR||Kill^Patient||19700101|U",
        f"PV1|1|I|{rng.choice(list(wards))}^{rng.randint(1, 30)}^A||||||||||||||||"
        f"V-{rng.randrange(10**7)}",
        f"ORC|RE|{control}^{application}",
        f"RXD|1|{coded(item)}|{ts}|{quantity}|{item.base_unit}|||||||||||||{lot}"
        f"|{expiry:%Y%m%d}|||||||||||{cabinet}^{application} cabinet^L",
    ]
    movement = Movement(f"{control}#0", (item.code, store, lot), -quantity)
    return Hl7Message(control, "\r".join(segments) + "\r", movement)


def rest_movement(
    key: str, kind: str, item: Item, store: str, n: int, quantity: int, cost: Decimal | None
) -> tuple[dict[str, Any], Movement]:
    """A movement as an integration client posts it, and what it does to its lot."""
    lot, expiry = lot_of(item.code, store, n)
    body: dict[str, Any] = {
        "idempotency_key": key,
        "kind": kind,
        "item": item.code,
        "location": store,
        "quantity": str(quantity),
        "unit": item.base_unit,
        "lot": lot,
        "expiry": expiry.isoformat(),
        "occurred_at": NOW.isoformat(),
    }
    if cost is not None:
        body["unit_cost"] = {"amount": str(cost.quantize(Decimal("0.0001")))}
    sign = 1 if kind == "receipt" else -1
    return body, Movement(key, (item.code, store, lot), sign * quantity)


def opening_receipts(rng: random.Random) -> list[tuple[dict[str, Any], Movement]]:
    """RECEIPTS_PER_LOT receipts of every lot the dispenses draw from, at costs that vary (so
    that the average cost moves)."""
    out = [
        rest_movement(
            f"kr-{item.code}-{store}-{n}-{k}",
            "receipt",
            item,
            store,
            n,
            RECEIPT_QUANTITY,
            UNIT_PRICES[item.code] * (1 + Decimal(rng.randint(-15, 15)) / 100),
        )
        for item in DRUGS
        for store in STORES
        for n in range(LOTS_PER_STORE)
        for k in range(RECEIPTS_PER_LOT)
    ]
    rng.shuffle(out)
    return out


def batches(
    rng: random.Random, movements: list[tuple[dict[str, Any], Movement]], requests: int
) -> list[Request]:
    """``movements`` cut into ``requests`` requests: about half single, the rest batches."""
    cuts = sorted(rng.sample(range(1, len(movements)), requests - 1))
    bounds = [0, *cuts, len(movements)]
    return [movements[a:b] for a, b in itertools.pairwise(bounds)]


def later_rest_movements(rng: random.Random, client: int) -> list[tuple[dict[str, Any], Movement]]:
    """Dispenses at every store, one in ten a further receipt."""
    out = []
    for n in range(DISPENSE_REQUESTS * 3):
        item, store, lot = rng.choice(DRUGS), rng.choice(STORES), rng.randrange(LOTS_PER_STORE)
        key = f"kd-{client}-{n:04d}"
        if rng.random() < 0.1:
            cost = UNIT_PRICES[item.code] * (1 + Decimal(rng.randint(-15, 15)) / 100)
            out.append(rest_movement(key, "receipt", item, store, lot, RECEIPT_QUANTITY, cost))
        else:
            quantity = rng.choice([1, 1, 2, 4])
            out.append(rest_movement(key, "dispense", item, store, lot, quantity, None))
    return out


# --- the senders -----------------------------------------------------------------------------


async def mllp_sender(name: str, port: int, messages: list[Hl7Message], progress: Progress) -> None:
    """Pipeline ``messages`` on one connection, ACKs in order; whatever is not answered AA is
    sent again, on a new connection, until it is."""
    pending = deque(messages)
    attempts: Counter[str] = Counter()
    while pending:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        framer, frames = MllpFramer(1 << 20), deque[bytes]()
        sent = 0
        try:
            while pending:
                while sent < min(WINDOW, len(pending)):
                    message = pending[sent]
                    attempts[message.control_id] += 1
                    progress.resent += attempts[message.control_id] > 1
                    writer.write(START + message.text.encode() + END)
                    sent += 1
                progress.in_flight[name] = sent
                await writer.drain()
                while not frames:
                    chunk = await asyncio.wait_for(reader.read(65536), 60)
                    if not chunk:
                        raise ConnectionResetError("closed by the server")
                    frames.extend(framer.feed(chunk))
                msa = parse(frames.popleft().decode()).first("MSA")
                assert msa is not None
                code, control, text = msa.get(1), msa.get(2), msa.get(3)
                assert control == pending[0].control_id, "ACK out of order"
                if code == "AR":  # not stored (store unavailable): send it again
                    raise ConnectionResetError(f"AR: {text}")
                assert code == "AA", f"{control}: {code} {text}"
                assert text in ("", "duplicate: already applied"), f"{control}: {text}"
                progress.duplicates["hl7"] += bool(text)
                pending.popleft()
                sent -= 1
                progress.acknowledge(1)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
        finally:
            progress.in_flight[name] = 0
            writer.close()


async def rest_sender(
    name: str,
    url: str,
    requests: list[Request],
    progress: Progress,
) -> None:
    """Post each request until it is answered 202 (same body, same keys, when resent)."""
    headers = {"X-API-Key": ADMIN_KEY}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        for request in requests:
            bodies = [body for body, _ in request]
            payload: Any = bodies[0] if len(bodies) == 1 else bodies
            tries = 0
            while True:
                tries += 1
                progress.resent += tries > 1
                progress.in_flight[name] = len(bodies)
                try:
                    answer = await client.post("/v1/stock-movements", json=payload)
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                finally:
                    progress.in_flight[name] = 0
                if answer.status_code == 503:
                    await asyncio.sleep(0.05)
                    continue
                assert answer.status_code == 202, answer.text
                progress.duplicates["rest"] += answer.json()["duplicates"]
                progress.acknowledge(len(bodies))
                break


@dataclass
class Kill:
    acknowledged: int
    in_flight: int
    ledger_backlog: int


async def killer(
    server: Server, thresholds: list[int], progress: Progress, bus: SqlBus, rng: random.Random
) -> list[Kill]:
    """SIGKILL the server once the stream has reached each threshold (plus a random few ms),
    then start it again on the same database and ports."""
    kills = []
    for threshold in thresholds:
        await progress.reached(threshold)
        await asyncio.sleep(rng.uniform(0, 0.02))
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        flying = progress.flying()
        await asyncio.to_thread(server.process.wait, 10)
        backlog = await asyncio.to_thread(bus.lag, "ledger")
        kills.append(Kill(progress.acknowledged, flying, backlog))
        await asyncio.to_thread(server.start)
    return kills


def kill_points(rng: random.Random, total: int) -> list[int]:
    """One random point in each of the first KILLS of KILLS + 1 equal shares of the stream: the
    kills are spread over it, and the last share runs to the end after the last restart."""
    share = total / (KILLS + 1)
    return [int(share * (k + rng.uniform(0.1, 0.9))) for k in range(KILLS)]


# --- the test --------------------------------------------------------------------------------


@pytest.fixture
def server(medbridge: MedBridge, database_url: str, tmp_path: Path) -> Iterator[Server]:
    running = Server(database_url, tmp_path, free_port())
    running.env["MEDBRIDGE_MLLP_PORT"] = str(free_port())
    running.env["MEDBRIDGE_DEMO"] = "false"
    yield running
    running.stop()


@dataclass
class Stream:
    """Everything the senders will send, cut into what each sender sends, in order."""

    receipts: list[list[Request]]
    """per REST client, first: the opening stock"""
    hl7: list[list[Hl7Message]]
    """per MLLP connection, then ..."""
    rest: list[list[Request]]
    """... per REST client, at the same time"""

    def movements(self) -> list[Movement]:
        requests = [r for per in self.receipts + self.rest for r in per]
        return [m for r in requests for _, m in r] + [
            message.movement for per in self.hl7 for message in per
        ]


def make_stream(rng: random.Random) -> Stream:
    receipts = opening_receipts(rng)
    share = len(receipts) // REST_CLIENTS + 1
    return Stream(
        receipts=[
            batches(rng, receipts[c * share : (c + 1) * share], RECEIPT_REQUESTS)
            for c in range(REST_CLIENTS)
        ],
        hl7=[
            [rds(rng, c, n) for n in range(MESSAGES_PER_CONNECTION)]
            for c in range(MLLP_CONNECTIONS)
        ],
        rest=[
            batches(rng, later_rest_movements(rng, c), DISPENSE_REQUESTS)
            for c in range(REST_CLIENTS)
        ],
    )


async def send_while_killing(
    server: Server,
    mllp_port: int,
    stream: Stream,
    progress: Progress,
    killing: Awaitable[list[Kill]],
) -> list[Kill]:
    """The senders and the killer at once: a failure of either ends both."""

    async def senders() -> None:
        await asyncio.gather(
            *(
                rest_sender(f"receipts-{c}", server.url, per, progress)
                for c, per in enumerate(stream.receipts)
            )
        )
        await asyncio.gather(
            *(
                mllp_sender(f"mllp-{c}", mllp_port, per, progress)
                for c, per in enumerate(stream.hl7)
            ),
            *(
                rest_sender(f"rest-{c}", server.url, per, progress)
                for c, per in enumerate(stream.rest)
            ),
        )

    _, kills = await asyncio.gather(senders(), killing)
    return kills


def test_twenty_sigkills_during_a_group_committed_stream_lose_and_double_nothing(
    server: Server, medbridge: MedBridge
) -> None:
    stream = make_stream(random.Random(SEED))
    expected = stream.movements()
    stock: Counter[Lot] = Counter()
    for m in expected:
        stock[m.lot] += m.quantity
    assert min(stock.values()) >= 0, "the stream dispenses more than it receives"

    kill_seed = random.randrange(2**32)  # the stream is fixed; where the kills fall is not
    print(f"kill seed: {kill_seed}")
    kill_rng = random.Random(kill_seed)
    bus = SqlBus(medbridge.engine, medbridge.settings.bus_partitions)
    progress = Progress()
    server.start()
    kills = asyncio.run(
        send_while_killing(
            server,
            int(server.env["MEDBRIDGE_MLLP_PORT"]),
            stream,
            progress,
            killer(server, kill_points(kill_rng, len(expected)), progress, bus, kill_rng),
        )
    )
    print(  # shown with -s: what the run went through
        f"{len(expected)} movements; kills (acknowledged, in flight, ledger backlog): "
        f"{[(k.acknowledged, k.in_flight, k.ledger_backlog) for k in kills]}; "
        f"sends repeated: {progress.resent}; answered duplicate: {dict(progress.duplicates)}"
    )
    assert progress.acknowledged == len(expected)
    assert len(kills) == KILLS
    assert sum(k.in_flight > 0 for k in kills) >= KILLS // 2, kills
    assert any(k.ledger_backlog for k in kills), "the consumer was idle at every kill"

    deadline = time.monotonic() + 120
    while any(bus.lag(group) for group in medbridge.consumers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {g: bus.lag(g) for g in medbridge.consumers} == dict.fromkeys(medbridge.consumers, 0)
    assert {g: bus.dead_letter_count(g) for g in medbridge.consumers} == dict.fromkeys(
        medbridge.consumers, 0
    )
    assert_applied_exactly_once(medbridge, expected, stock)
    reconciliation = httpx.get(
        f"{server.url}/v1/ledger/reconciliation", headers={"X-API-Key": ADMIN_KEY}, timeout=10
    ).json()
    assert reconciliation["balanced"] is True, reconciliation


def assert_applied_exactly_once(
    medbridge: MedBridge, expected: list[Movement], stock: Counter[Lot]
) -> None:
    with medbridge.engine.connect() as conn:
        events = conn.execute(
            select(bus_events.c.idempotency_key, bus_events.c.id).where(
                bus_events.c.type.like("inventory.%")
            )
        ).all()
        applied = Counter(conn.execute(select(ledger_movements.c.event_id)).scalars())
        posted = Counter(conn.execute(select(journal_entries.c.source_event_id)).scalars())
        dedup = conn.execute(
            select(func.count())
            .select_from(consumer_dedup)
            .where(consumer_dedup.c.consumer == "ledger")
        ).scalar_one()
        on_hand = {
            (r.item, r.location, r.lot): r.quantity for r in conn.execute(select(stock_lots))
        }
        accounts = medbridge.masterdata.account_map(conn)
        checks = ledger_store.facility_checks(
            conn, {f: a for (f, role), a in accounts.items() if role is AccountRole.INVENTORY}
        )

    # every acknowledged movement is in the log exactly once, and nothing else is
    logged = Counter(key.rsplit(":", 1)[1] for key, _ in events)
    missing = {m.token for m in expected} - set(logged)
    assert not missing, f"{len(missing)} acknowledged, then lost: {sorted(missing)[:10]}"
    assert set(logged) == {m.token for m in expected}
    assert len(expected) == len({m.token for m in expected})
    assert [k for k, n in logged.items() if n > 1] == []
    # ... applied once and posted once, each
    ids = {event_id for _, event_id in events}
    assert ids - set(applied) == set(), "logged, never applied"
    assert set(applied) == ids
    assert [e for e, n in applied.items() if n > 1] == [], "applied twice"
    assert ids - set(posted) == set(), "applied, never posted"
    assert set(posted) == ids
    assert [e for e, n in posted.items() if n > 1] == [], "posted twice"
    assert dedup == len(expected)
    # the stock is what was received minus what was dispensed, lot by lot
    assert {lot: Decimal(q) for lot, q in stock.items()} == {
        lot: q for lot, q in on_hand.items() if lot in stock
    }
    assert all(not q for lot, q in on_hand.items() if lot not in stock)
    # the ledger's value per facility is its GL inventory balance
    assert {c.facility for c in checks} == {"H1", "H2"}
    assert all(c.ledger_value > 0 and c.difference == 0 for c in checks), checks
