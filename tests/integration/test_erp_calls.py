"""A workflow step's ERP document through the outbox (``flows.erp_calls``): the rows its route
names, follow-ups where their document went, no route no rows, and the wait for the system of
record (posted, refused, interrupted); shadows are never waited for."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from medbridge.canonical.erp import ErpRejected
from medbridge.domain.erp_routing import (
    ALL_FACILITIES,
    NEEDS,
    Capability,
    ErpDomain,
    Role,
    Route,
    RoutingTable,
)
from medbridge.domain.gl_summary import GlPostingMode
from medbridge.flows.erp_calls import ErpDocument, queue, to_shadows, wait
from medbridge.flows.erp_routing import ErpRouter
from medbridge.store import erp_postings
from medbridge.store.erp_postings import DocumentKind, PostingStatus

pytestmark = pytest.mark.db

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
ALL = frozenset(Capability)


def router(record: str, *shadows: str, offers: frozenset[Capability] = ALL) -> ErpRouter:
    names = {"legacy": offers, "cloud": offers}
    routes = {
        (d, ALL_FACILITIES): Route(record, tuple(shadows)) for d in ErpDomain if NEEDS[d] in offers
    }
    return ErpRouter(RoutingTable(names, routes), dict.fromkeys(names, GlPostingMode.PER_EVENT))


ORDER = ErpDocument("PO1", DocumentKind.PURCHASE_ORDER, ErpDomain.PURCHASE_ORDERS, "H1", "{}")
CONFIRM = ErpDocument(
    "PO1:confirm", DocumentKind.ORDER_CONFIRMATION, ErpDomain.PURCHASE_ORDERS, "H1", after="PO1"
)
CANCEL = ErpDocument(
    "PO1:cancel", DocumentKind.ORDER_CANCELLATION, ErpDomain.PURCHASE_ORDERS, "H1", after="PO1"
)


def rows(engine: Engine, document: str) -> list[tuple[str, Role, PostingStatus]]:
    with engine.connect() as conn:
        found = erp_postings.postings(conn, entry_ids=[document])
    return sorted((p.destination, p.role, p.status) for p in found)


def test_a_document_is_queued_for_its_route_once(engine: Engine) -> None:
    both = router("legacy", "cloud")
    record = queue(engine, both, ORDER, NOW)
    assert record is not None
    assert (record.destination, record.role, record.payload) == ("legacy", Role.RECORD, "{}")
    again = queue(engine, both, ORDER, NOW)  # the step run again after a crash
    assert again == record
    assert rows(engine, "PO1") == [
        ("cloud", Role.SHADOW, PostingStatus.PENDING),
        ("legacy", Role.RECORD, PostingStatus.PENDING),
    ]


def test_a_follow_up_goes_where_its_order_went_not_where_the_route_now_points(
    engine: Engine,
) -> None:
    queue(engine, router("legacy"), ORDER, NOW)
    record = queue(engine, router("cloud"), CONFIRM, NOW)  # cut over in between
    assert record is not None
    assert record.destination == "legacy"
    assert rows(engine, "PO1:confirm") == [("legacy", Role.RECORD, PostingStatus.PENDING)]


def test_no_destination_for_the_domain_queues_nothing(engine: Engine) -> None:
    ledger_only = router("legacy", offers=frozenset({Capability.GENERAL_LEDGER}))
    assert queue(engine, ledger_only, ORDER, NOW) is None
    assert rows(engine, "PO1") == []


def test_the_wait_ends_with_the_system_of_records_outcome(engine: Engine) -> None:
    both = router("legacy", "cloud")
    record = queue(engine, both, ORDER, NOW)
    assert record is not None
    stopping = threading.Event()
    stopping.set()
    assert wait(engine, record, stopping, 0.01) is None  # the process stops: no outcome

    with engine.begin() as conn:
        erp_postings.mark_failed(conn, "legacy", "PO1", "ErpRejected: unknown supplier")
    with pytest.raises(ErpRejected, match="unknown supplier"):
        wait(engine, record, threading.Event(), 0.01)

    again = queue(engine, both, ORDER, NOW)  # run again: a person approved a retry
    assert again is not None
    assert again.status is PostingStatus.PENDING
    with engine.begin() as conn:
        erp_postings.mark_posted(conn, "legacy", "PO1", "17", NOW)
    posted = wait(engine, again, threading.Event(), 0.01)  # the shadow still pending
    assert posted is not None
    assert posted.erp_id == "17"
    assert rows(engine, "PO1")[0] == ("cloud", Role.SHADOW, PostingStatus.PENDING)


def test_an_order_its_record_refused_is_cancelled_in_the_shadows_that_hold_it(
    engine: Engine,
) -> None:
    queue(engine, router("legacy", "cloud"), ORDER, NOW)
    with engine.begin() as conn:
        erp_postings.mark_failed(conn, "legacy", "PO1", "ErpRejected: unknown supplier")
        erp_postings.mark_posted(conn, "cloud", "PO1", "C-9", NOW)
    assert to_shadows(engine, CANCEL, NOW) == ["cloud"]
    assert to_shadows(engine, CANCEL, NOW) == ["cloud"]  # run again: nothing twice
    assert rows(engine, "PO1:cancel") == [("cloud", Role.SHADOW, PostingStatus.PENDING)]
    assert rows(engine, "PO1")[1] == ("legacy", Role.RECORD, PostingStatus.FAILED)  # as it was


def test_an_order_without_shadows_queues_no_follow_up_to_them(engine: Engine) -> None:
    queue(engine, router("legacy"), ORDER, NOW)
    with engine.begin() as conn:
        erp_postings.mark_failed(conn, "legacy", "PO1", "ErpRejected: unknown supplier")
    assert to_shadows(engine, CANCEL, NOW) == []
    assert rows(engine, "PO1:cancel") == []
