"""The console's sign-in, session and CSRF, and its permissions and facility scopes (issue 16),
over HTTP as a browser speaks it (the browser tests drive the same pages in chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hl7_support import rds_with_patient, send
from medbridge.app import MedBridge
from medbridge.canonical.inbound import ExternalItem, InboundMovement, InboundOutcome, ItemCodeKind
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.canonical.movements import MovementKind
from medbridge.canonical.tasks import Action, NewTask, TaskStatus, WorkQueue
from medbridge.flows.work_queue import WorkQueues
from medbridge.governance.clients import Role
from medbridge.masterdata.repository import CrossReferences
from medbridge.store import work_items
from medbridge.store.tables import audit_log, messages
from rest_movements import movement

pytestmark = pytest.mark.db

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def task(key: str, facility: str | None, queue: WorkQueue = WorkQueue.PHARMACY) -> NewTask:
    return NewTask(
        key=key,
        queue=queue,
        kind="stock_discrepancy",
        subject=f"count at {facility}",
        reason="the cabinet counted 3, the ledger holds 5",
        actions=(Action.APPROVE, Action.REQUEST_COUNT, Action.CLOSE),
        facility=facility,
    )


@pytest.fixture
def browser(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api(), base_url="http://127.0.0.1") as client:
        yield client


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(browser: TestClient, client: str, key: str, next: str = "") -> httpx.Response:
    token = csrf_of(browser.get("/console/sign-in").text)
    return browser.post(
        "/console/sign-in",
        data={"client": client, "key": key, "csrf_token": token, "next": next},
        follow_redirects=False,
    )


def test_a_page_needs_a_session_and_sign_in_needs_the_right_key_and_csrf(
    medbridge: MedBridge, browser: TestClient
) -> None:
    key = medbridge.clients.register("night-analyst", Role.READER)
    signed_out = browser.get("/console/work?queue=ap", follow_redirects=False)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].endswith(
        "/console/sign-in?next=/console/work%3Fqueue%3Dap"
    )
    assert browser.get("/", follow_redirects=False).headers["location"] == "/console/"

    page = browser.get("/console/sign-in")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    forged = browser.post(
        "/console/sign-in", data={"client": "night-analyst", "key": key}, follow_redirects=False
    )
    assert forged.status_code == 403  # no CSRF token: refused before the key is looked at
    wrong = sign_in(browser, "night-analyst", key + "x")
    assert wrong.status_code == 401
    assert "unknown client or wrong key" in wrong.text

    done = sign_in(browser, "night-analyst", key, next="/console/work?queue=ap")
    assert done.status_code == 303
    assert done.headers["location"] == "/console/work?queue=ap"
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie
    dashboard = browser.get("/console/")
    assert dashboard.status_code == 200
    assert "night-analyst" in dashboard.text
    assert "Consumers" in dashboard.text


def test_sign_in_never_leads_off_the_console(medbridge: MedBridge, browser: TestClient) -> None:
    key = medbridge.clients.register("analyst", Role.READER)
    for target in ("https://elsewhere.example/", "//elsewhere.example/x", "/v1/stock"):
        answer = sign_in(browser, "analyst", key, next=target)
        assert answer.headers["location"].endswith("/console/")


def test_a_revoked_client_or_a_reissued_key_ends_the_session(
    medbridge: MedBridge, browser: TestClient
) -> None:
    medbridge.clients.ttl = 0  # no cache: the change is seen by the very next request
    key = medbridge.clients.register("temp", Role.READER)
    sign_in(browser, "temp", key)
    assert browser.get("/console/", follow_redirects=False).status_code == 200
    medbridge.clients.register("temp", Role.READER)  # a new key
    assert browser.get("/console/", follow_redirects=False).status_code == 303
    key = medbridge.clients.register("temp", Role.READER)
    sign_in(browser, "temp", key)
    assert browser.get("/console/", follow_redirects=False).status_code == 200
    medbridge.clients.revoke("temp")
    assert browser.get("/console/", follow_redirects=False).status_code == 303


def test_pages_honour_permissions_and_facility_scopes(
    medbridge: MedBridge, browser: TestClient
) -> None:
    queues = WorkQueues(medbridge.engine)
    mine = queues.open(task("count:H1", "H1"))
    theirs = queues.open(task("count:H2", "H2"))
    key = medbridge.clients.register("pharmacist-h1", Role.PHARMACY, facilities=["H1"])
    sign_in(browser, "pharmacist-h1", key)

    listing = browser.get("/console/work").text
    assert f"/console/work/{mine.id}" in listing
    assert f"/console/work/{theirs.id}" not in listing
    assert browser.get(f"/console/work/{theirs.id}").status_code == 403
    assert browser.get("/console/dead-letters").status_code == 403  # no operations:read
    dashboard = browser.get("/console/").text
    assert "Consumers" not in dashboard
    assert "Open work items" in dashboard
    assert ">Dead letters<" not in dashboard  # not offered in the navigation either

    page = browser.get(f"/console/work/{theirs.id}")
    assert "may not see work item" in page.text
    token = csrf_of(browser.get(f"/console/work/{mine.id}").text)
    refused = browser.post(
        f"/console/work/{theirs.id}/decision",
        data={"action": "approve", "csrf_token": token},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    with medbridge.engine.connect() as conn:
        assert work_items.get(conn, theirs.id).status is TaskStatus.OPEN  # type: ignore[union-attr]


def test_deciding_a_task_records_the_signed_in_client(
    medbridge: MedBridge, browser: TestClient
) -> None:
    item = WorkQueues(medbridge.engine).open(task("count:H1", "H1"))
    key = medbridge.clients.register("pharmacist", Role.PHARMACY)
    sign_in(browser, "pharmacist", key)
    page = browser.get(f"/console/work/{item.id}").text
    token = csrf_of(page)
    stale = browser.post(
        f"/console/work/{item.id}/decision",
        data={"action": "request_count", "csrf_token": "stale"},
        follow_redirects=False,
    )
    assert stale.status_code == 403
    not_offered = browser.post(
        f"/console/work/{item.id}/decision", data={"action": "reject", "csrf_token": token}
    )
    assert not_offered.status_code == 422
    assert "action" in not_offered.text
    decided = browser.post(
        f"/console/work/{item.id}/decision",
        data={"action": "request_count", "note": "recount at 6", "csrf_token": token},
    )
    assert decided.status_code == 200
    assert "request_count recorded" in decided.text
    with medbridge.engine.connect() as conn:
        found = work_items.get(conn, item.id)
    assert found is not None
    assert found.status is TaskStatus.DECIDED
    assert found.decided_by == "pharmacist"


def test_stock_and_erp_pages_show_only_the_viewers_facilities(
    medbridge: MedBridge, browser: TestClient
) -> None:
    admin = medbridge.clients.register("loader", Role.ADMIN)
    with TestClient(medbridge.api()) as api:
        for location, key in (("H1-PHARM", "s-h1"), ("H2-PHARM", "s-h2")):
            answer = api.post(
                "/v1/stock-movements",
                headers={"X-API-Key": admin},
                json={
                    "idempotency_key": key,
                    "kind": "receipt",
                    "item": "VANCO-1G",
                    "location": location,
                    "quantity": "5",
                    "unit": "VIAL",
                    "unit_cost": {"amount": "12.40"},
                    "lot": f"LOT-{location}",
                    "occurred_at": "2026-11-21T07:00:00Z",
                },
            )
            assert answer.status_code in (201, 202), answer.text
    medbridge.consumers["ledger"].drain()
    key = medbridge.clients.register("finance-h1", Role.FINANCE, facilities=["H1"])
    sign_in(browser, "finance-h1", key)
    stock = browser.get("/console/stock").text
    assert "LOT-H1-PHARM" in stock
    assert "LOT-H2-PHARM" not in stock
    assert "LOT-H1-PHARM" not in browser.get("/console/stock?lot=LOT-H2-PHARM").text
    postings = browser.get("/console/erp-postings")
    assert postings.status_code == 200
    assert browser.get("/console/reconciliation?period=2026-11").status_code == 403  # shared
    assert browser.get("/console/stock?item=" + "X" * 65).status_code == 422


def test_the_message_pages_honour_scopes_and_the_dashboard_charts_the_last_hour(
    medbridge: MedBridge, browser: TestClient
) -> None:
    send(medbridge, rds_with_patient("SCOPE-1"))  # an H1 cabinet's dispense
    h2 = medbridge.clients.register("reader-h2", Role.READER, facilities=["H2"])
    sign_in(browser, "reader-h2", h2)
    assert "SCOPE-1" not in browser.get("/console/messages").text
    assert "No message matches." in browser.get("/console/messages?control_id=SCOPE-1").text
    with medbridge.engine.connect() as conn:
        message_id = conn.execute(select(messages.c.id)).scalar_one()
    assert browser.get(f"/console/messages/{message_id}").status_code == 404  # not H2's
    assert browser.get("/console/messages/preview").status_code == 403  # reader: no reprocess
    assert browser.get("/console/messages?status=lost").status_code == 422
    assert browser.get("/console/messages?after=not-a-cursor").status_code == 422

    browser.cookies.clear()
    h1 = medbridge.clients.register("reader-h1", Role.READER, facilities=["H1"])
    sign_in(browser, "reader-h1", h1)
    assert browser.get(f"/console/messages/{message_id}").status_code == 200
    dashboard = browser.get("/console/").text
    assert 'data-chart="chart-hl7v2"' in dashboard
    assert '"series": ["applied"]' in dashboard or '"series":["applied"]' in dashboard


def test_the_reprocess_preview_shows_on_the_page_when_the_button_is_submitted_without_htmx(
    medbridge: MedBridge, browser: TestClient
) -> None:
    send(medbridge, rds_with_patient("PLAIN-1"), rds_with_patient("PLAIN-2"))
    key = medbridge.clients.register("desk", Role.INTEGRATION)
    sign_in(browser, "desk", key)
    page = browser.get("/console/messages?status=applied&preview=1").text
    assert '<p class="preview-count"><strong>2</strong>' in page
    assert 'name="expected" value="2"' in page  # the reprocess form, as htmx would show it
    assert "preview-count" not in browser.get("/console/messages?status=applied").text

    browser.cookies.clear()
    reader = medbridge.clients.register("looker", Role.READER)
    sign_in(browser, "looker", reader)
    assert "preview-count" not in browser.get("/console/messages?preview=1").text  # may not


def test_partners_show_each_sender_with_its_counts_and_last_error(
    medbridge: MedBridge, browser: TestClient
) -> None:
    send(medbridge, rds_with_patient("P-1"), rds_with_patient("P-2"), "MSH|not hl7 at all")
    key = medbridge.clients.register("watcher", Role.READER)
    sign_in(browser, "watcher", key)
    page = browser.get("/console/partners").text
    row = page.split("hl7v2/PYXIS@H1</a>")[1].split("</tr>")[0]
    cells = re.findall(r'<td class="n">(\d+)</td>', row)
    assert cells[:2] == ["2", "0"]  # applied, duplicate
    garbage = page.split("(unidentified")[1].split("</tr>")[0]
    assert "do not declare five distinct delimiters" in garbage  # its last error
    assert browser.get("/console/partners?hours=0").status_code == 422


def test_a_control_character_in_a_filter_is_a_422_naming_it(
    medbridge: MedBridge, browser: TestClient
) -> None:
    key = medbridge.clients.register("filterer", Role.ADMIN)
    sign_in(browser, "filterer", key)
    for page, field in (("messages?control_id=%00", "control_id"), ("stock?lot=%00", "lot")):
        answer = browser.get(f"/console/{page}")
        assert answer.status_code == 422
        assert f"{field}: no control characters" in answer.text


def test_a_place_the_message_leaves_out_is_filled_in_from_the_exception_page(
    medbridge: MedBridge, browser: TestClient
) -> None:
    """A transfer whose message does not say where the stock came from (a FHIR SupplyDelivery
    without a supplier) parks; the page offers to name the place in the sender's code, and
    filling it in replays the message (audited as the signed-in client's)."""
    sender = "fhir:ward-system"
    with medbridge.engine.begin() as conn:
        CrossReferences.map_location(conn, sender, "Location/pharm-1", "H1-PHARM")
        CrossReferences.map_location(conn, sender, "Location/icu-1", "H1-ICU")
    draft = InboundMovement(
        source_system=sender,
        kind=MovementKind.TRANSFER,
        item=ExternalItem(kind=ItemCodeKind.LOCAL, code="VANCO-1G", issuer=None),
        location=None,
        to_location="Location/icu-1",
        quantity=Decimal(2),
        unit="VIAL",
        occurred_at=datetime(2026, 11, 20, 10, tzinfo=UTC),
    )
    with medbridge.engine.begin() as conn:
        medbridge.masterdata.link_code(
            conn, "VANCO-1G", ItemCode(system=CodeSystem.LOCAL, code="VANCO-1G", issuer=sender)
        )
    parked = medbridge.inbound.receive([draft], source="fhir:ward", idempotency_key="sd-9")
    assert parked.outcome is InboundOutcome.EXCEPTION
    assert parked.exception_id is not None
    key = medbridge.clients.register("operator", Role.ADMIN)
    sign_in(browser, "operator", key)
    page = browser.get(f"/console/exceptions/{parked.exception_id}").text
    assert "Fill in and replay" in page
    filled = browser.post(
        f"/console/exceptions/{parked.exception_id}/fill",
        data={"value": "Location/pharm-1", "index": "0", "csrf_token": csrf_of(page)},
    )
    assert filled.status_code == 200
    assert f"parked message {parked.exception_id}: accepted" in filled.text
    assert "Fill in and replay" not in filled.text
    with medbridge.engine.connect() as conn:
        [actor] = conn.execute(
            select(audit_log.c.actor).where(audit_log.c.action == "inbound_exception.fill")
        ).scalars()
    assert actor == "operator"


def _lot_movement(
    key: str, kind: str, location: str, quantity: str, **extra: Any
) -> dict[str, Any]:
    return movement(
        key, kind, location, quantity, lot="RC1", at="2026-11-20T09:30:00+00:00", **extra
    )


def test_the_recall_page_traces_a_lot_and_quarantines_and_releases_it(
    medbridge: MedBridge, browser: TestClient
) -> None:
    admin = {"X-API-Key": medbridge.ensure_admin_key()[0]}
    stocked = browser.post(
        "/v1/stock-movements",
        json=[
            _lot_movement("c-r1", "receipt", "H1-PHARM", "20"),
            _lot_movement("c-t1", "transfer", "H1-PHARM", "5", to_location="H1-ICU"),
            _lot_movement("c-d1", "dispense", "H1-ICU", "2", encounter_ref="enc-77"),
        ],
        headers=admin,
    )
    assert stocked.status_code == 202, stocked.text
    medbridge.consumers["ledger"].drain()
    key = medbridge.clients.register("pharmacist", Role.PHARMACY)
    sign_in(browser, "pharmacist", key)
    assert "Recall" in browser.get("/console/").text  # in the navigation

    page = browser.get("/console/lots?code=VANCO-1G&lot=RC1").text
    on_hand = page.split('class="list on-hand"')[1].split("</table>")[0]
    assert re.findall(r"<td>(H1-[A-Z]+)</td><td class=\"n\">(\d+)</td>", on_hand) == [
        ("H1-ICU", "3"),
        ("H1-PHARM", "15"),
    ]
    assert "enc-77" in page  # pharmacy may see encounter pseudonyms
    assert "Quarantine the lot" in page
    assert "No lot is in quarantine." in page

    token = csrf_of(page)
    form = {"item": "VANCO-1G", "lot": "RC1", "csrf_token": token}
    assert browser.post("/console/lots/quarantine", data=form | {"reason": "x"}).status_code == 200
    assert browser.post("/console/lots/quarantine", data=form).status_code == 422  # no reason
    after = browser.get("/console/lots?code=VANCO-1G&lot=RC1").text
    assert "Quarantined: x" in after
    assert "Release the lot" in after
    held = browser.post(
        "/v1/stock-movements",
        json=[_lot_movement("c-t2", "transfer", "H1-PHARM", "4", to_location="H1-OR")],
        headers=admin,
    )
    assert held.status_code == 202
    medbridge.consumers["ledger"].drain()
    assert 'class="list held"' in browser.get("/console/lots?code=VANCO-1G&lot=RC1").text

    released = browser.post("/console/lots/release", data=form | {"note": "notice withdrawn"})
    assert "released: 1 held movement(s) applied, 0 refused" in released.text
    assert "No lot is in quarantine." in released.text
    unsigned = browser.post("/console/lots/release", data={"item": "VANCO-1G", "lot": "RC1"})
    assert unsigned.status_code == 403  # no CSRF token
    assert "no item has the code or GTIN" in browser.get("/console/lots?code=NOPE&lot=RC1").text

    browser.cookies.clear()
    h2 = medbridge.clients.register("pharmacist-h2", Role.PHARMACY, facilities=["H2"])
    sign_in(browser, "pharmacist-h2", h2)
    scoped = browser.get("/console/lots?code=VANCO-1G&lot=RC1").text
    assert "H1-PHARM" not in scoped  # what happened at H1 is not theirs to see
    assert "Quarantine the lot" not in scoped
    token = csrf_of(scoped)
    refused = browser.post(
        "/console/lots/quarantine",
        data={"item": "VANCO-1G", "lot": "RC1", "reason": "y", "csrf_token": token},
    )
    assert refused.status_code == 403  # a quarantine spans every facility
