"""``post_each``: the port's batch posting in terms of the single call (for adapters without
lists): one result per entry, in order; a rejection stays with its entry; anything else is
raised after the entries before it were posted (which a repeat finds)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from medbridge.canonical.erp import ErpRef, ErpRejected, ErpUnavailable, post_each
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.connectors.tryton.fake import FakeErp


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
