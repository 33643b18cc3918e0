"""Cutover and rollback against two REAL Tryton ERPs (issue 17, "Done when" 2): ``legacy``
(``tryton``, Tryton 7.0) and ``cloud`` (``tryton_cloud``, Tryton 8.0), each a named ERP
destination with its own ErpPosting worker, GL routed to ``legacy``.

A stream of dispenses at H1 and H2; in the middle, GL of H1 is cut over to ``cloud`` (the
old system of record kept as a shadow) while some of H1's entries are still in the outbox;
later it is rolled back. Every entry queued before the cutover is in ``legacy`` only, every
entry after it in ``cloud`` as system of record (and in ``legacy`` as shadow), every entry
after the rollback in ``legacy`` again (``cloud`` a shadow); H2 never leaves ``legacy``.
Each ERP holds each of its entries exactly once, found by its entry id, posted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.domain.erp_routing import Role, Route
from medbridge.flows.erp_cutover import cut_over
from medbridge.flows.erp_posting import ErpPosting
from medbridge.flows.intake import Submission
from medbridge.settings import Settings
from medbridge.store import audit
from medbridge.store import erp_postings as outbox
from medbridge.store.erp_postings import PostingStatus
from peers.tryton import TrytonPeer

pytestmark = [pytest.mark.peer]

DAY = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def destination(peer: TrytonPeer) -> dict[str, Any]:
    return {
        "url": peer.url,
        "database": peer.database,
        "user": peer.login,
        "password": peer.password,
        "series": peer.server.series,
        "gl_posting": "per_event",
        "batch_size": 4,
        "rate_limit": 50.0,
        "retry_initial_backoff": 0.05,
        "retry_max_backoff": 0.5,
    }


@pytest.fixture
def two_erps(
    database_url: str, engine: Engine, tmp_path: Path, tryton: TrytonPeer, tryton_cloud: TrytonPeer
) -> Iterator[MedBridge]:
    """MedBridge with the two real ERPs as ``legacy`` and ``cloud``, GL routed to legacy."""
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        sqlite_synchronous="NORMAL",
        erps={"legacy": destination(tryton), "cloud": destination(tryton_cloud)},
        erp_routes={"gl": {"record": "legacy"}},
    )
    mb = MedBridge.build(settings)
    mb.seed_demo()
    yield mb
    mb.stop_workers()
    mb.engine.dispose()


_serial = iter(range(1_000_000))


def movements(facility: str, dispenses: int, receipt: bool = False) -> list[Submission]:
    found = []
    if receipt:
        m = StockMovement(
            kind=MovementKind.RECEIPT,
            item="VANCO-1G",
            location=f"{facility}-PHARM",
            quantity=Decimal(100),
            unit="VIAL",
            lot="V2611A",
            expiry=date(2028, 3, 31),
            unit_cost=Money(amount=Decimal("6.85")),
            occurred_at=DAY,
        )
        found.append(Submission(m, f"tryton-cutover-{next(_serial)}"))
    for _ in range(dispenses):
        n = next(_serial)
        m = StockMovement(
            kind=MovementKind.DISPENSE,
            item="VANCO-1G",
            location=f"{facility}-PHARM",
            quantity=Decimal(1),
            unit="VIAL",
            occurred_at=DAY,
            encounter_ref=f"enc-{n:06d}",
        )
        found.append(Submission(m, f"tryton-cutover-{n}"))
    return found


def phase(mb: MedBridge, h1: int, h2: int, receipts: bool = False) -> dict[str, set[str]]:
    """Movements at H1 and H2 through the ledger: the new journal entries by facility."""
    with mb.engine.connect() as conn:
        before = {p.entry_id for p in outbox.postings(conn, limit=100_000)}
    mb.intake.submit(
        movements("H1", h1, receipts) + movements("H2", h2, receipts), source="tryton-cutover"
    )
    mb.consumers["ledger"].drain()
    found: dict[str, set[str]] = {"H1": set(), "H2": set()}
    with mb.engine.connect() as conn:
        for p in outbox.postings(conn, limit=100_000):
            if p.entry_id not in before:
                assert p.facility is not None
                found[p.facility].add(p.entry_id)
    assert [len(found["H1"]), len(found["H2"])] == [h1 + receipts, h2 + receipts]
    return found


def moves(erp: TrytonErp) -> Counter[tuple[str, str]]:
    """(description, state) of every move in MedBridge's journal of this ERP."""
    [journal] = erp.client.search_read("account.journal", [("code", "=", "MB")], ["id"], limit=1)
    found = erp.client.search_read(
        "account.move", [("journal", "=", journal["id"])], ["description", "state"]
    )
    return Counter((str(m["description"]), str(m["state"])) for m in found)


def test_a_cutover_and_its_rollback_between_two_real_tryton_erps(two_erps: MedBridge) -> None:
    mb = two_erps
    erps = {name: mb.erp(name) for name in ("legacy", "cloud")}
    assert all(isinstance(erp, TrytonErp) for erp in erps.values())
    workers = {
        name: ErpPosting(mb.engine, erp, mb.erp_posting_policy(name))  # type: ignore[arg-type]
        for name, erp in erps.items()
    }

    first = phase(mb, h1=5, h2=2, receipts=True)
    assert workers["legacy"].poll_once() == 4  # the rest of them in flight at the cutover
    forth = cut_over(mb.engine, mb.erp_router(), "gl", "H1", "cloud", actor="finance")
    assert forth.cutover.route == Route("cloud", ("legacy",))
    second = phase(mb, h1=5, h2=2)
    assert workers["cloud"].poll_once() == 4
    back = cut_over(mb.engine, mb.erp_router(), "gl", "H1", "legacy", actor="finance")
    assert back.cutover.route == Route("legacy", ("cloud",))
    third = phase(mb, h1=5, h2=2)
    for w in workers.values():
        w.drain(timeout=120)

    expected: dict[str, dict[str, Role]] = {}
    for entry in first["H1"] | first["H2"] | second["H2"] | third["H2"]:
        expected[entry] = {"legacy": Role.RECORD}
    for entry in second["H1"]:
        expected[entry] = {"cloud": Role.RECORD, "legacy": Role.SHADOW}
    for entry in third["H1"]:
        expected[entry] = {"legacy": Role.RECORD, "cloud": Role.SHADOW}
    found: dict[str, dict[str, Role]] = {}
    with mb.engine.connect() as conn:
        rows = outbox.postings(conn, limit=1000)
    for p in rows:
        assert p.status is PostingStatus.POSTED, (p.entry_id, p.destination, p.last_error)
        found.setdefault(p.entry_id, {})[p.destination] = p.role
    assert found == expected

    for name, erp in erps.items():
        assert isinstance(erp, TrytonErp)
        wanted = {entry for entry, where in expected.items() if name in where}
        assert moves(erp) == Counter({(entry, "posted"): 1 for entry in wanted}), name
        for p in rows:
            if p.destination == name:  # the outbox row names the ERP's own move
                ref = erp.find_journal_entry(p.entry_id)
                assert ref is not None
                assert ref.erp_id == p.erp_id
        erp.close()

    with mb.engine.connect() as conn:
        logged = audit.entries(conn, action="erp.cutover")
    assert [(e.detail["from"], e.detail["to"]) for e in logged] == [
        ("legacy", "cloud"),
        ("cloud", "legacy"),
    ]
