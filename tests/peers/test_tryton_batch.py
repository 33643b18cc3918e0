"""Journal entries posted to a REAL Tryton ERP (trytond 7.0) in batches: many moves per
JSON-RPC ``create`` and ``post`` (``TrytonErp.post_journal_entries``).

* a batch of N lands once each, in one search, one create and one post (counted at trytond's
  door by a proxy), and a repeat creates nothing;
* a lost answer (the proxy lets trytond apply the batch's ``create`` or ``post``, then drops
  the answer): the repeat finds every move and creates none twice;
* one bad entry in a batch: one Tryton alone can refuse (a party on an expense account: the
  list create fails as a whole, measured) and one the adapter refuses before calling (an
  unknown account): each is rejected alone with its reason, every other entry is posted; and
  through the outbox worker, the bad entry is a dead letter while the batch's others post.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import httpx
import pytest
from tests.ledger_support import record_entries

from contract.test_erp_contract import entry
from medbridge.app import MedBridge
from medbridge.canonical.erp import ErpRef, ErpRejected, ErpUnavailable, PostResult
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.messages import MessageFilter
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.flows.messages import MessageBrowser
from medbridge.store import erp_postings
from medbridge.store.erp_postings import PostingStatus
from peers.proxy import Proxy, running
from peers.tryton import TrytonPeer

pytestmark = pytest.mark.peer

N = 12


@dataclass
class WatchingProxy(Proxy):
    """Counts JSON-RPC methods; drops the answer of the next ``drop`` call to ``method``."""

    methods: Counter[str] = field(default_factory=Counter)
    drop: str = ""
    dropped: list[str] = field(default_factory=list)

    def on_request(self, arrived: float, body: bytes) -> None:
        method = str(httpx.Response(200, content=body).json().get("method"))
        with self.lock:
            self.methods[method] += 1

    def should_drop(self, body: bytes) -> bool:
        method = str(httpx.Response(200, content=body).json().get("method"))
        with self.lock:
            if self.drop and method == self.drop:
                self.drop = ""
                self.dropped.append(method)
                return True
            return False


@pytest.fixture
def proxy(tryton: TrytonPeer) -> Iterator[tuple[WatchingProxy, str]]:
    with running(WatchingProxy(upstream=tryton.url)) as served:
        yield served


@pytest.fixture
def erp(tryton: TrytonPeer, proxy: tuple[WatchingProxy, str]) -> Iterator[TrytonErp]:
    adapter = TrytonErp(tryton.config(url=proxy[1]))
    adapter.find_journal_entry("warm-up")  # log in and find the journal outside the counts
    proxy[0].methods.clear()
    yield adapter
    adapter.close()


@pytest.fixture
def direct(tryton: TrytonPeer) -> Iterator[TrytonErp]:
    """An adapter straight to trytond, to see what Tryton holds."""
    adapter = TrytonErp(tryton.config())
    yield adapter
    adapter.close()


def moves_of(direct: TrytonErp, entries: list[JournalEntry]) -> Counter[tuple[str, str]]:
    """(entry id, state) of every move carrying one of the entries' ids."""
    found = direct.client.search_read(
        "account.move",
        [("description", "in", [e.entry_id for e in entries])],
        ["description", "state"],
    )
    return Counter((str(m["description"]), str(m["state"])) for m in found)


def refs(results: list[PostResult]) -> list[ErpRef]:
    assert all(isinstance(r, ErpRef) for r in results), results
    return [r for r in results if isinstance(r, ErpRef)]


def test_a_batch_lands_once_each_in_one_search_one_create_one_post(
    erp: TrytonErp, direct: TrytonErp, proxy: tuple[WatchingProxy, str]
) -> None:
    batch = [entry() for _ in range(N)]
    first = refs(erp.post_journal_entries(batch))
    assert [r.reference for r in first] == [e.entry_id for e in batch]
    assert all(r.created for r in first)
    methods = proxy[0].methods
    assert methods["model.account.move.search_read"] == 1
    assert methods["model.account.move.create"] == 1
    assert methods["model.account.move.post"] == 1
    assert sum(methods.values()) <= 6  # + accounts, cost centers, period lookups
    assert moves_of(direct, batch) == Counter({(e.entry_id, "posted"): 1 for e in batch})

    methods.clear()
    again = refs(erp.post_journal_entries(batch))
    assert [(r.erp_id, r.created) for r in again] == [(r.erp_id, False) for r in first]
    assert dict(methods) == {"model.account.move.search_read": 1}  # found, nothing written
    assert moves_of(direct, batch) == Counter({(e.entry_id, "posted"): 1 for e in batch})


@pytest.mark.parametrize(
    "method", ["model.account.move.create", "model.account.move.post"], ids=["create", "post"]
)
def test_a_lost_answer_reposted_finds_the_batch_and_creates_none_twice(
    erp: TrytonErp, direct: TrytonErp, proxy: tuple[WatchingProxy, str], method: str
) -> None:
    already = entry()
    erp.post_journal_entry(already)  # one of the batch was posted before
    batch = [entry() for _ in range(N)] + [already]
    proxy[0].drop = method
    with pytest.raises(ErpUnavailable):
        erp.post_journal_entries(batch)
    assert proxy[0].dropped == [method], "trytond applied the call and its answer was dropped"
    applied = moves_of(direct, batch)
    state = "draft" if method.endswith(".create") else "posted"
    assert applied == Counter({(e.entry_id, "posted" if e is already else state): 1 for e in batch})

    proxy[0].methods.clear()
    retried = refs(erp.post_journal_entries(batch))  # the worker's retry of the same batch
    assert [r.created for r in retried] == [False] * len(batch)
    assert proxy[0].methods["model.account.move.create"] == 0
    assert proxy[0].methods["model.account.move.post"] == (1 if state == "draft" else 0)
    assert moves_of(direct, batch) == Counter({(e.entry_id, "posted"): 1 for e in batch})


def with_party_on_expense(entry_id: str) -> JournalEntry:
    """Valid for MedBridge, every code known to Tryton; refused by Tryton alone: its expense
    account takes no party."""
    amount = Decimal("5.00")
    return JournalEntry(
        entry_id=entry_id,
        posting_date=date.today(),
        description="a party where the account takes none",
        source_event_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        lines=(
            JournalLine(account="5100-H1", debit=amount, party="MCK", facility="H1"),
            JournalLine(account="1400-H1", credit=amount, facility="H1"),
        ),
    )


def test_one_bad_entry_in_a_batch_is_rejected_alone_and_the_others_post(
    erp: TrytonErp, direct: TrytonErp, proxy: tuple[WatchingProxy, str]
) -> None:
    bad_in_tryton = with_party_on_expense(f"JE-{uuid.uuid4().hex[:12]}")
    unknown = entry(expense_account="9999-H9")
    batch = [entry() for _ in range(N)]
    batch.insert(5, bad_in_tryton)
    batch.insert(9, unknown)

    results = erp.post_journal_entries(batch)
    rejected = {
        e.entry_id: r for e, r in zip(batch, results, strict=True) if not isinstance(r, ErpRef)
    }
    assert set(rejected) == {bad_in_tryton.entry_id, unknown.entry_id}
    refused = rejected[bad_in_tryton.entry_id]
    assert isinstance(refused, ErpRejected)
    assert "UserError" in str(refused)
    assert "party" in str(refused)
    before = rejected[unknown.entry_id]
    assert isinstance(before, ErpRejected)
    assert before.field == "account"
    assert "9999-H9" in str(before)

    good = [e for e in batch if e.entry_id not in rejected]
    assert all(isinstance(r, ErpRef) and r.created for r in results if r not in rejected.values())
    assert moves_of(direct, batch) == Counter({(e.entry_id, "posted"): 1 for e in good})
    # the whole create was refused once, then split down to the bad move: a few creates,
    # never one per entry; one post for every good move
    creates = proxy[0].methods["model.account.move.create"]
    assert 2 < creates < len(batch)
    assert proxy[0].methods["model.account.move.post"] == 1
    assert erp.find_journal_entry(bad_in_tryton.entry_id) is None
    assert erp.find_journal_entry(unknown.entry_id) is None


def test_through_the_outbox_the_bad_entry_is_a_dead_letter_and_its_batch_posts(
    medbridge: MedBridge, tryton: TrytonPeer, direct: TrytonErp
) -> None:
    bad = with_party_on_expense(f"JE-{uuid.uuid4().hex[:12]}")
    batch = [entry() for _ in range(N)]
    batch.insert(3, bad)
    with medbridge.engine.begin() as conn:
        record_entries(conn, batch)
    erp = TrytonErp(tryton.config())
    try:
        worker = ErpPosting(
            medbridge.engine, erp, ErpPostingPolicy(batch_size=len(batch), rate_limit=50.0)
        )
        assert worker.poll_once() == len(batch)  # one round, one port call: all settled
    finally:
        erp.close()
    with medbridge.engine.connect() as conn:
        found = {p.entry_id: p for p in erp_postings.postings(conn)}
    refused = found.pop(bad.entry_id)
    assert refused.status is PostingStatus.FAILED
    assert "party" in (refused.last_error or "")
    assert {p.status for p in found.values()} == {PostingStatus.POSTED}
    assert moves_of(direct, batch) == Counter(
        {(e.entry_id, "posted"): 1 for e in batch[:3] + batch[4:]}
    )
    # each entry is its own outbound message: acknowledged with its move, or failed
    sent = MessageBrowser(medbridge.engine).search(MessageFilter(direction="out")).items
    assert {m.control_id: m.status for m in sent if m.protocol == "erp"} == {
        e.entry_id: "failed" if e is bad else "acknowledged" for e in batch
    }
