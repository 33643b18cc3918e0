"""The console's message browser in headless chromium (issue 16, "Done when" 1): a search by
control id, a message's detail (raw with the patient masked, the ACK sent), its reprocess
after the fix (a new attempt, applied), and a filtered reprocess with its preview count (htmx,
under the console's Content-Security-Policy). Fails on any console error, failed request,
answer of 400 or more, or request off 127.0.0.1 (``conftest.py``); screenshots under
var/screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page
from sqlalchemy import func, select

from browser_support import shot, sign_in
from hl7_support import rds_with_patient, send
from medbridge.app import MedBridge
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.governance.clients import Role
from medbridge.store.tables import bus_events

pytestmark = [pytest.mark.db, pytest.mark.browser]

UNKNOWN_NDC = "12345-6789-01"


def test_a_parked_message_is_found_shown_masked_and_reprocessed_once_fixed(
    served: str, page: tuple[Page, list[str]], medbridge: MedBridge, screenshots: Path
) -> None:
    browser_page, problems = page
    send(medbridge, rds_with_patient("BROWSE-1"), rds_with_patient("BROWSE-2", ndc=UNKNOWN_NDC))
    sign_in(browser_page, served, medbridge, "integration-desk", Role.INTEGRATION)
    browser_page.click("nav >> text=Messages")
    assert browser_page.locator("table.messages tbody tr").count() == 2  # newest first, both

    browser_page.fill("input[name=control_id]", "BROWSE-2")
    browser_page.click("button:has-text('Search')")
    rows = browser_page.locator("table.messages tbody tr")
    assert rows.count() == 1
    assert rows.first.locator("td.status").inner_text() == "parked"
    shot(browser_page, screenshots, "search")

    rows.first.locator("a").click()
    browser_page.wait_for_selector("pre.raw")
    raw = browser_page.inner_text("pre.raw")
    assert "BROWSE-2" in raw
    for patient in ("DOE", "MRN-4711", "19800101", "1 MAIN ST"):
        assert patient not in raw  # masked
    assert "MSA|AA|BROWSE-2" in browser_page.inner_text("pre.ack")  # parked: accepted, held
    shot(browser_page, screenshots, "detail")

    with medbridge.engine.begin() as conn:  # the fix: the unknown NDC is a vancomycin vial
        medbridge.masterdata.link_code(
            conn, "VANCO-1G", ItemCode(system=CodeSystem.NDC, code=UNKNOWN_NDC)
        )
    browser_page.fill("form.actions input[name=reason]", "NDC 12345-6789-01 mapped")
    browser_page.click("form.actions button:has-text('Reprocess')")
    assert "reprocessed: applied" in browser_page.inner_text(".flash")
    assert browser_page.inner_text("dd.status") == "applied"  # the new attempt's page
    assert browser_page.locator("table.events tbody tr").count() == 1
    shot(browser_page, screenshots, "reprocessed")

    browser_page.click("nav >> text=Dashboard")  # the messages per minute, drawn by uPlot
    browser_page.wait_for_selector("#chart-hl7v2 .uplot canvas")
    assert "applied" in browser_page.inner_text("#chart-hl7v2 .u-legend")  # the parked one too
    shot(browser_page, screenshots, "dashboard-chart")
    assert problems == []


def test_a_filtered_reprocess_shows_its_count_first_and_changes_nothing_applied(
    served: str, page: tuple[Page, list[str]], medbridge: MedBridge, screenshots: Path
) -> None:
    browser_page, problems = page
    send(medbridge, rds_with_patient("AGAIN-1"), rds_with_patient("AGAIN-2"))
    sign_in(browser_page, served, medbridge, "integration-desk", Role.INTEGRATION)
    browser_page.click("nav >> text=Messages")
    browser_page.select_option("select[name=status]", "applied")
    browser_page.click("button:has-text('Search')")
    assert browser_page.locator("table.messages tbody tr").count() == 2

    browser_page.click("button:has-text('Reprocess these')")  # htmx: the preview fragment
    browser_page.wait_for_selector(".preview-count")
    assert browser_page.inner_text(".preview-count strong") == "2"
    browser_page.fill("form.reprocess input[name=reason]", "resend check after the outage")
    browser_page.click("form.reprocess button:has-text('Reprocess 2')")
    assert "2 reprocessed: 2 duplicate" in browser_page.inner_text(".flash")
    shot(browser_page, screenshots, "filtered-reprocess")
    with medbridge.engine.connect() as conn:
        events = conn.execute(
            select(func.count()).where(bus_events.c.idempotency_key.like("%AGAIN-%"))
        ).scalar_one()
    assert events == 2  # one per dispense, as before the reprocess: nothing applied twice
    assert problems == []
