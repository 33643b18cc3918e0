"""Summarised GL posting into a REAL Tryton ERP (trytond 7.0 over JSON-RPC): an hour of many
dispenses at one facility becomes ONE ``account.move``, whose lines equal the sums of the
journal entries behind it, posted once even when the summarizer runs twice (and when a
second summarizer, or a lost answer's repeat, posts the same summary again)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.erp import ErpRef
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.domain.gl_summary import GlPostingMode, net_lines, summary_entry
from medbridge.flows.gl_summary import GlPostingPolicy, GlSummarizer
from medbridge.flows.intake import Submission
from medbridge.settings import Settings
from medbridge.store import erp_postings, gl_summaries
from medbridge.store import ledger as ledger_store
from medbridge.store.erp_postings import PostingStatus
from peers.tryton import TrytonPeer

pytestmark = pytest.mark.peer

HOUR = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SUMMARY = "SUM-H1-2026-11-20T10"
DISPENSES = 30


@pytest.fixture
def summarised(engine: Engine, settings: Settings) -> Iterator[MedBridge]:
    mb = MedBridge.build(settings.model_copy(update={"erp_gl_posting": "summarised"}))
    mb.seed_demo()
    yield mb
    mb.stop_workers()


@pytest.fixture
def erp(tryton: TrytonPeer) -> Iterator[TrytonErp]:
    adapter = TrytonErp(tryton.config())
    yield adapter
    adapter.close()


def stock_movement(n: int) -> Submission:
    receipt = n == 0
    m = StockMovement(
        kind=MovementKind.RECEIPT if receipt else MovementKind.DISPENSE,
        item="VANCO-1G",
        location="H1-PHARM",
        quantity=Decimal(100 if receipt else 1 + n % 3),
        unit="VIAL",
        lot="V2611A",
        expiry=date(2028, 3, 31),
        unit_cost=Money(amount=Decimal("6.85")) if receipt else None,
        occurred_at=HOUR + (timedelta(minutes=-30) if receipt else timedelta(seconds=100 * n)),
        encounter_ref=None if receipt else f"enc-{n:04d}",
    )
    return Submission(m, f"summary-{n}")


def moves_by_description(erp: TrytonErp) -> Counter[str]:
    journal = erp.client.search_read("account.journal", [("code", "=", "MB")], ["id"], limit=1)
    moves = erp.client.search_read(
        "account.move", [("journal", "=", journal[0]["id"])], ["id", "description", "state"]
    )
    assert {m["state"] for m in moves} <= {"posted"}
    return Counter(str(m["description"]) for m in moves)


def test_an_hour_of_dispenses_is_one_move_in_tryton_posted_once(
    summarised: MedBridge, erp: TrytonErp
) -> None:
    mb = summarised
    mb.intake.submit([stock_movement(n) for n in range(DISPENSES + 1)], source="summary-test")
    mb.consumers["ledger"].drain()
    with mb.engine.connect() as conn:
        waiting = [
            p.entry_id for p in erp_postings.postings(conn, status=PostingStatus.SUMMARISING)
        ]
    assert len(waiting) == DISPENSES

    at = HOUR + timedelta(hours=1, minutes=10)
    policy = GlPostingPolicy(mode=GlPostingMode.SUMMARISED)
    assert GlSummarizer(mb.engine, erp, policy, now=lambda: at).run_once() == (1, 1)
    assert GlSummarizer(mb.engine, erp, policy, now=lambda: at).run_once() == (0, 0)

    with mb.engine.connect() as conn:
        summary = gl_summaries.get(conn, SUMMARY)
        entries = ledger_store.journal(conn, entry_ids=waiting, limit=len(waiting))
        net, count, _ = gl_summaries.net_lines(conn, SUMMARY)
        posted = erp_postings.postings(conn, entry_ids=waiting)
    assert summary is not None
    assert summary.erp_id is not None
    assert count == DISPENSES
    assert {(p.status, p.erp_id) for p in posted} == {(PostingStatus.POSTED, summary.erp_id)}

    # a repeat (a second summarizer, a lost answer) finds the move and creates none
    again = summary_entry(
        net, entries=count, facility="H1", start=HOUR, period=policy.period, currency="USD"
    )
    assert again is not None
    [ref] = erp.post_journal_entries([again])
    assert isinstance(ref, ErpRef)
    assert (ref.erp_id, ref.created) == (summary.erp_id, False)
    assert moves_by_description(erp)[SUMMARY] == 1

    # ONE move in Tryton, its lines the sums of the 30 entries behind it
    lines = [
        ln
        for ln in erp.ledger_lines(date(2026, 11, 1), date(2026, 11, 30))
        if ln.reference == SUMMARY
    ]
    assert {ln.move_id for ln in lines} == {summary.erp_id}
    expected = {(a, cc): n for (a, cc, _, _), n in net_lines(entries).items()}
    got: dict[tuple[str, str | None], Decimal] = {}
    for ln in lines:
        got[(ln.account, ln.cost_center)] = (
            got.get((ln.account, ln.cost_center), Decimal(0)) + ln.debit - ln.credit
        )
    assert got == expected
    assert sum(ln.debit for ln in lines) == Decimal("6.85") * sum(1 + n % 3 for n in range(1, 31))
