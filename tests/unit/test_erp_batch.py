"""``post_each``: the port's batch posting in terms of the single call (for adapters without
lists): one result per entry, in order; a rejection stays with its entry; anything else is
raised after the entries before it were posted (which a repeat finds)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import SecretStr

from medbridge.canonical.erp import ErpRef, ErpRejected, ErpUnavailable, post_each
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.connectors.tryton.client import TrytonClient
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.connectors.tryton.moves import MovePosting


def entry(n: int, account: str = "5100-H1") -> JournalEntry:
    return JournalEntry(
        entry_id=f"JE-{n}",
        posting_date=date(2026, 11, 20),
        description="dispense",
        source_event_id=f"event-{n}",
        correlation_id=f"corr-{n}",
        lines=(
            JournalLine(account=account, debit=Decimal(5), facility="H1"),
            JournalLine(account="1300-H1", credit=Decimal(5), facility="H1"),
        ),
    )


def test_one_result_per_entry_and_a_rejection_stays_with_its_entry() -> None:
    fake = FakeErp(accounts={"5100-H1", "1300-H1"})
    results = post_each(fake, [entry(1), entry(2, account="9999-H9"), entry(3), entry(1)])
    assert [type(r) for r in results] == [ErpRef, ErpRejected, ErpRef, ErpRef]
    assert [r.created for r in results if isinstance(r, ErpRef)] == [True, True, False]
    assert [c.method for c in fake.calls] == ["post_journal_entry"] * 4
    assert {m.reference for m in fake.moves()} == {"JE-1", "JE-3"}


def test_an_outage_is_raised_and_a_repeat_finds_what_was_posted() -> None:
    fake = FakeErp()
    fake.lose_next_answer()
    with pytest.raises(ErpUnavailable):
        post_each(fake, [entry(1), entry(2)])
    results = post_each(fake, [entry(1), entry(2)])
    assert [(r.reference, r.created) for r in results if isinstance(r, ErpRef)] == [
        ("JE-1", False),
        ("JE-2", True),
    ]


# --- Tryton: a list call refused as a whole is split down to the items at fault ------------


class ListCall:
    """Stands for a Tryton list ``create``/``post``: one transaction, refused whole (and
    nothing applied) when it holds a bad item, as measured on trytond 7.0."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.calls: list[list[int]] = []
        self.applied: list[int] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        if self.bad & set(items):
            raise ErpRejected(f"UserError: item {min(self.bad & set(items))}")
        self.applied.extend(items)
        return [i * 10 for i in items]


@pytest.mark.parametrize("bad", [set(), {7}, {0, 49}, {3, 4, 5}])
def test_a_refused_list_call_is_split_down_to_each_bad_item(bad: set[int]) -> None:
    config = TrytonConfig(url="http://127.0.0.1:9/", database="none", password=SecretStr("x"))
    moves = MovePosting(TrytonClient(config), config, journal=lambda: 1)  # never connects
    call = ListCall(bad)
    try:
        outcomes = moves._in_halves([(f"JE-{i}", i) for i in range(50)], call)
    finally:
        moves.client.close()
    assert list(outcomes) == [f"JE-{i}" for i in range(50)]
    for i in range(50):
        outcome = outcomes[f"JE-{i}"]
        if i in bad:
            assert isinstance(outcome, ErpRejected)
            assert f"item {i}" in str(outcome)  # its own reason, not a neighbour's
        else:
            assert outcome == i * 10
    assert sorted(call.applied) == [i for i in range(50) if i not in bad]  # each once
    assert len(call.calls) <= 1 + 2 * len(bad) * 6  # halves: about 2 log2(50) per bad item
