"""The console in headless chromium (issue 16, "Done when" 1): sign-in, the dashboard,
deciding a work item, replaying a dead letter, and the trace of the replayed dispense. Every
test fails on a console error, a failed request, an answer of 400 or more, or a request off
127.0.0.1 (``conftest.py``), and saves a screenshot under var/screenshots."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page

from browser_support import shot, sign_in
from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.masterdata import Location, LocationKind
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.tasks import Action, NewTask, TaskStatus, WorkQueue
from medbridge.flows.work_queue import WorkQueues
from medbridge.governance.clients import Role
from medbridge.store import work_items

pytestmark = [pytest.mark.db, pytest.mark.browser]


def test_sign_in_leads_to_the_dashboard(
    served: str, page: tuple[Page, list[str]], medbridge: MedBridge, screenshots: Path
) -> None:
    browser_page, problems = page
    browser_page.goto(f"{served}/")
    assert browser_page.url.startswith(f"{served}/console/sign-in")
    browser_page.fill("input[name=client]", "nobody")
    browser_page.fill("input[name=key]", "wrong")
    with browser_page.expect_response(lambda r: r.url.endswith("/console/sign-in")) as refused:
        browser_page.click("button:has-text('Sign in')")
    assert refused.value.status == 401
    assert "unknown client or wrong key" in browser_page.inner_text("[role=alert]")
    problems.clear()  # that 401 was the point

    sign_in(browser_page, served, medbridge, "night-admin", Role.ADMIN)
    for heading in ("Consumers", "ERP outbox", "Open work items", "Alerts"):
        assert browser_page.locator(f"h2:has-text('{heading}')").count() == 1
    assert "ledger" in browser_page.inner_text("section:has(h2:has-text('Consumers'))")
    shot(browser_page, screenshots, "dashboard")
    assert problems == []


def test_a_work_item_is_decided_in_the_console(
    served: str, page: tuple[Page, list[str]], medbridge: MedBridge, screenshots: Path
) -> None:
    browser_page, problems = page
    item = WorkQueues(medbridge.engine).open(
        NewTask(
            key="count:H1-PHARM",
            queue=WorkQueue.PHARMACY,
            kind="stock_discrepancy",
            subject="VANCO-1G at H1-PHARM",
            reason="the cabinet counted 3, the ledger holds 5",
            actions=(Action.APPROVE, Action.REQUEST_COUNT, Action.CLOSE),
            facility="H1",
        )
    )
    sign_in(browser_page, served, medbridge, "night-pharmacy", Role.PHARMACY)
    browser_page.click("nav >> text=Work")
    browser_page.click(f"a[href$='/console/work/{item.id}']")
    browser_page.select_option("select[name=action]", "request_count")
    browser_page.fill("input[name=note]", "recount the cabinet")
    browser_page.click("button:has-text('Decide')")
    assert "request_count recorded" in browser_page.inner_text(".flash")
    assert browser_page.inner_text("dd.status") == "decided"
    shot(browser_page, screenshots, "work-item")
    with medbridge.engine.connect() as conn:
        decided = work_items.get(conn, item.id)
    assert decided is not None
    assert decided.status is TaskStatus.DECIDED
    assert decided.decided_by == "night-pharmacy"
    assert problems == []


def appended(mb: MedBridge, movement: StockMovement, key: str) -> str:
    """``movement`` appended past the intake (as a replayed or foreign log might hold it) and
    handed to the ledger; its correlation id."""
    envelope = EventEnvelope[StockMovement](
        type=movement.event_type,
        source="test/console",
        subject=f"{movement.item}@{movement.location}",
        idempotency_key=key,
        data=movement,
    )
    mb.bus.append([envelope])
    mb.consumers["ledger"].drain()
    return str(envelope.correlation_id)


def at_the_new_store(kind: MovementKind, hour: int, **extra: Money) -> StockMovement:
    return StockMovement(
        kind=kind,
        item="VANCO-1G",
        location="H1-NEWSTORE",
        quantity=Decimal(1),
        unit="VIAL",
        occurred_at=datetime(2026, 11, 21, hour, 0, tzinfo=UTC),
        **extra,
    )


def test_a_dead_letter_is_replayed_and_its_trace_reaches_the_journal(
    served: str, page: tuple[Page, list[str]], medbridge: MedBridge, screenshots: Path
) -> None:
    """A dispense at a store the master data did not know yet is dead-lettered by the ledger;
    once the store exists (and has received stock), the replay posts it to the journal."""
    browser_page, problems = page
    correlation_id = appended(
        medbridge, at_the_new_store(MovementKind.DISPENSE, 8), "console-dead-letter-1"
    )
    assert medbridge.bus.dead_letter_count("ledger") == 1
    with medbridge.engine.begin() as conn:  # the fix: the store exists now
        medbridge.masterdata.save_location(
            conn,
            Location(
                code="H1-NEWSTORE",
                name="New store",
                kind=LocationKind.STORE,
                parent="H1",
                cost_center="H1-CC-PHARM",
            ),
        )
    receipt = at_the_new_store(MovementKind.RECEIPT, 7, unit_cost=Money(amount=Decimal("12.40")))
    appended(medbridge, receipt, "console-receipt-1")
    sign_in(browser_page, served, medbridge, "night-admin", Role.ADMIN)
    browser_page.click("section:has(h2:has-text('Consumers')) >> a:has-text('1')")
    assert "UnknownLocation" in browser_page.inner_text("table.list") or "H1-NEWSTORE" in (
        browser_page.inner_text("table.list")
    )
    browser_page.check("input[name=ids]")
    browser_page.click("button:has-text('Replay')")
    assert "ledger: 1 replayed" in browser_page.inner_text(".flash")
    shot(browser_page, screenshots, "dead-letters")
    assert medbridge.bus.dead_letter_count("ledger") == 0

    browser_page.goto(f"{served}/console/dead-letters?group=ledger&status=replayed")
    browser_page.click("table.list >> a:has-text('trace')")
    browser_page.wait_for_selector("h1:has-text('Trace')")
    kinds = browser_page.locator("ol.timeline .kind").all_inner_texts()
    assert "event" in kinds
    assert "journal entry" in kinds  # the replayed dispense reached the journal
    assert correlation_id in browser_page.inner_text("h1")
    shot(browser_page, screenshots, "trace")
    assert problems == []
