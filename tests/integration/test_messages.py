"""The message store and browser: every HL7 and FHIR message recorded with its status (in
the transaction of its events), searched by each filter in keyset pages, shown masked with
its events, acknowledgement and trace, and reprocessed exactly once in effect, audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from hl7_support import (
    ack_code,
    map_hl7_sources,
    rds,
    rds_with_patient,
    send,
)
from medbridge.app import MedBridge
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.canonical.messages import MessageFilter, MessageRecord, MessageStatus
from medbridge.connectors.fhir import FhirConfig
from medbridge.flows.messages import InvalidCursor, MessageBrowser, ReprocessRefused, mask_hl7
from medbridge.governance.clients import Role
from medbridge.masterdata.repository import CrossReferences
from medbridge.store import audit as audit_store
from medbridge.store import messages as message_store
from medbridge.store.tables import bus_dead_letters, bus_events, messages

pytestmark = pytest.mark.db

UNKNOWN_NDC = "12345-6789-01"


def rows(mb: MedBridge) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    with mb.engine.connect() as conn:
        for r in conn.execute(select(messages.c.control_id, messages.c.status)):
            found.setdefault(r.control_id, []).append(r.status)
    return found


@pytest.fixture
def browser(medbridge: MedBridge) -> MessageBrowser:
    map_hl7_sources(medbridge)
    from medbridge.runtime.processes import services

    browser = services(medbridge).messages
    assert browser is not None
    return browser


def test_hl7_messages_are_recorded_with_their_status_and_the_ack_sent(
    medbridge: MedBridge, browser: MessageBrowser
) -> None:
    acks = send(
        medbridge,
        rds_with_patient("M-1"),
        rds_with_patient("M-1"),  # resent
        rds_with_patient("M-2", ndc=UNKNOWN_NDC),  # parked
        "MSH|^~\\&|PYXIS|H1|MEDBRIDGE|NET|2026|" + "|RDS^O13|M-3|P|9.9\r",  # refused (version)
        "not hl7 at all",
    )
    assert [ack_code(a.decode())[0] for a in acks[:3]] == ["AA", "AA", "AA"]
    found = rows(medbridge)
    assert sorted(found["M-1"]) == ["applied", "duplicate"]
    assert found["M-2"] == ["parked"]
    assert found["M-3"] == ["refused"]
    assert found[""] == ["refused"]

    page = browser.search(MessageFilter(control_id="M-1"))
    assert [m.status for m in page.items] == ["duplicate", "applied"]  # newest first
    applied = browser.get(page.items[1].id)
    assert applied is not None
    assert applied.ack == acks[0].decode()  # exactly the ACK sent
    assert [e.type for e in applied.events] == ["inventory.dispensed.v1"]
    assert applied.trace_path == f"/v1/trace/{applied.message.correlation_id}"
    assert applied.message.facility == "H1"
    assert applied.raw is not None
    assert "DOE" not in applied.raw
    assert "19800101" not in applied.raw
    assert "MAIN ST" not in applied.raw
    assert "555-0100" not in applied.raw
    assert "MRN-4711" not in applied.raw
    assert "0069-2587-10" in applied.raw
    duplicate = browser.get(page.items[0].id)
    assert duplicate is not None
    assert duplicate.message.correlation_id == (applied.message.correlation_id)

    [parked] = browser.search(MessageFilter(status="parked")).items
    assert parked.error is not None
    assert "exception" in parked.error
    medbridge.group_commit.flush()
    for _ in range(100):  # its ACK is set on a worker thread once built
        detail = browser.get(parked.id)
        if detail is not None and detail.ack:
            break
        medbridge.inbound._parking.submit(lambda: None).result()
    assert detail is not None
    assert detail.ack is not None
    assert "accepted for review" in detail.ack
    [refused] = browser.search(MessageFilter(control_id="M-3")).items
    refused_detail = browser.get(refused.id)
    assert refused_detail is not None
    assert refused_detail.ack is not None
    assert "MSA|AR|M-3" in refused_detail.ack


def test_an_applied_message_never_lacks_its_row(medbridge: MedBridge) -> None:
    map_hl7_sources(medbridge)
    send(medbridge, *(rds(f"N-{n}") for n in range(40)))
    with medbridge.engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(bus_events)).scalar_one()
        applied = conn.execute(
            select(func.sum(messages.c.event_count)).where(messages.c.status == "applied")
        ).scalar_one()
    assert events == applied == 40


def test_reprocess_is_exactly_once_in_effect_and_audited(
    medbridge: MedBridge, browser: MessageBrowser
) -> None:
    send(medbridge, rds_with_patient("R-1"), rds_with_patient("R-2", ndc=UNKNOWN_NDC))
    [applied] = browser.search(MessageFilter(control_id="R-1")).items
    [parked] = browser.search(MessageFilter(control_id="R-2")).items

    with pytest.raises(ReprocessRefused) as refused:
        browser.reprocess(ids=[applied.id], reason="  ", actor="tester")
    assert refused.value.field == "reason"

    report = browser.reprocess(ids=[applied.id, parked.id], reason="check", actor="tester")
    assert [o.outcome for o in report.outcomes] == ["duplicate", "parked"]

    with medbridge.engine.begin() as conn:  # the fix: the unknown NDC mapped
        medbridge.masterdata.link_code(
            conn, "VANCO-1G", ItemCode(system=CodeSystem.NDC, code=UNKNOWN_NDC)
        )
    assert browser.preview(MessageFilter(status="parked")) == 2
    report = browser.reprocess(
        filters=MessageFilter(status="parked"), reason="NDC mapped", actor="tester"
    )
    assert [o.outcome for o in report.outcomes] == ["applied", "duplicate"]
    with medbridge.engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(bus_events)).scalar_one()
        trail = audit_store.entries(conn, action="message.reprocess")
    assert events == 2  # R-1 once, R-2 once
    assert len(trail) == 4
    assert {e.actor for e in trail} == {"tester"}
    assert trail[-1].detail["reason"] == "NDC mapped"


def synthetic(n: int, at: datetime, **fields: object) -> MessageRecord:
    values: dict[str, object] = {
        "protocol": "x12",
        "connector": "x12",
        "raw": f"ISA*{n}~",
        "sender": f"P{n % 3}",
        "message_type": "810" if n % 2 else "856",
        "control_id": f"C{n:04d}",
        "business_key": f"PO{n % 5}",
        "facility": "H1" if n % 4 else "H2",
        "status": MessageStatus.APPLIED if n % 3 else MessageStatus.REFUSED,
        "received_at": at + timedelta(seconds=n // 2),  # pairs share a time: the id orders
    }
    return MessageRecord(**(values | fields))  # type: ignore[arg-type]


def test_search_filters_and_keyset_pages(medbridge: MedBridge) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    records = [synthetic(n, start) for n in range(120)]
    with medbridge.engine.begin() as conn:
        message_store.write(conn, records)
    browser = MessageBrowser(medbridge.engine)

    seen, cursor = [], None
    while True:
        page = browser.search(MessageFilter(), after=cursor, limit=7)
        seen += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 120
    assert len({m.id for m in seen}) == 120
    keys = [(m.received_at, m.id) for m in seen]
    assert keys == sorted(keys, reverse=True)

    def ids(**f: object) -> set[str]:
        found: list[str] = []
        cursor = None
        while True:
            page = browser.search(MessageFilter(**f), after=cursor, limit=5)  # type: ignore[arg-type]
            found += [m.control_id for m in page.items]
            if page.next_cursor is None:
                return set(found)
            cursor = page.next_cursor

    def expected(pick: object) -> set[str]:
        return {r.control_id for r in records if pick(r)}  # type: ignore[operator]

    assert ids(control_id="C0042") == {"C0042"}
    assert ids(business_key="PO3") == expected(lambda r: r.business_key == "PO3")
    assert ids(message_type="810") == expected(lambda r: r.message_type == "810")
    since, until = start + timedelta(seconds=10), start + timedelta(seconds=40)
    assert ids(sender="P1", status="applied", since=since, until=until) == expected(
        lambda r: r.sender == "P1" and r.status == "applied" and since <= r.received_at < until
    )
    assert ids(facilities=frozenset({"H2"})) == expected(lambda r: r.facility == "H2")
    assert browser.preview(MessageFilter(status="refused")) == 40
    with pytest.raises(InvalidCursor):
        browser.search(MessageFilter(), after="not-a-cursor")


def test_mask_hl7_keeps_what_is_not_the_patient() -> None:
    masked = mask_hl7(rds_with_patient("X"))
    pid = next(s for s in masked.split("\r") if s.startswith("PID"))
    assert pid.split("|")[5] == "***"
    assert pid.split("|")[7] == "***"
    assert "RXD|1|0069-2587-10" in masked
    assert "MSH|^~\\&|PYXIS|H1" in masked


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture
def api(medbridge: MedBridge) -> Iterator[TestClient]:
    map_hl7_sources(medbridge)
    app = medbridge.api()
    app.state.fhir_config = FhirConfig(pseudonym_secret="s" * 32)
    with TestClient(app) as client:
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        yield client


def test_the_api_searches_shows_and_reprocesses(medbridge: MedBridge, api: TestClient) -> None:
    send(medbridge, rds_with_patient("A-1"), rds_with_patient("A-2"))
    listed = api.get("/v1/messages", params={"protocol": "hl7v2", "limit": 1}).json()
    assert [m["control_id"] for m in listed["items"]] == ["A-2"]
    more = api.get("/v1/messages", params={"limit": 1, "cursor": listed["next_cursor"]}).json()
    assert [m["control_id"] for m in more["items"]] == ["A-1"]

    bad = api.get("/v1/messages", params={"cursor": "zzz"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert api.get("/v1/messages", params={"status": "lost"}).status_code == 422

    one = api.get(f"/v1/messages/{listed['items'][0]['id']}").json()
    assert "DOE" not in one["raw"]
    assert one["events"]
    assert one["trace"].startswith("/v1/trace/")
    assert api.get("/v1/messages/nope").status_code == 404

    preview = api.post(
        "/v1/messages/reprocess",
        json={"filter": {"protocol": "hl7v2"}, "reason": "check", "dry_run": True},
    ).json()
    assert preview["selected"] == 2
    no_reason = api.post("/v1/messages/reprocess", json={"ids": ["x"]})
    assert no_reason.status_code == 422
    assert no_reason.json()["detail"][0]["loc"] == ["body", "reason"]
    done = api.post(
        "/v1/messages/reprocess", json={"ids": [listed["items"][0]["id"]], "reason": "check"}
    ).json()
    assert done["counts"] == {"duplicate": 1}

    reader = medbridge.clients.register("analytics", Role.READER)
    other = {"X-API-Key": reader}
    assert api.get("/v1/messages", headers=other).status_code == 200
    refused = api.post("/v1/messages/reprocess", json={"ids": ["x"], "reason": "r"}, headers=other)
    assert refused.status_code == 403
    scoped = medbridge.clients.register("h2-only", Role.READER, facilities=["H2"])
    assert api.get("/v1/messages", headers={"X-API-Key": scoped}).json()["items"] == []


def test_fhir_resources_are_recorded(medbridge: MedBridge, api: TestClient) -> None:
    ehr = medbridge.clients.register("ehr", Role.INTEGRATION)
    with medbridge.engine.begin() as conn:
        CrossReferences.map_location(conn, "fhir:ehr", "Location/pharm-1", "H1-PHARM")
    body = {
        "resourceType": "MedicationDispense",
        "id": "md-1",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "0069-2587-10"}]
        },
        "subject": {"reference": "Patient/p-1", "display": "Jane Doe"},
        "location": {"reference": "Location/pharm-1"},
        "quantity": {"value": 1, "unit": "VIAL"},
        "whenHandedOver": "2026-11-22T10:00:00Z",
    }
    headers = {"X-API-Key": ehr, "Content-Type": "application/fhir+json"}
    for _ in range(2):
        answer = api.post("/fhir/r4/MedicationDispense", content=json.dumps(body), headers=headers)
        assert answer.status_code in (200, 201), answer.text
    api.post("/fhir/r4/MedicationDispense", content=b"{not json", headers=headers)
    medbridge.group_commit.flush()
    found = api.get("/v1/messages", params={"protocol": "fhir"}).json()["items"]
    assert [m["status"] for m in found] == ["refused", "duplicate", "applied"]
    assert found[2]["control_id"] == "md-1"
    assert found[2]["sender"] == "ehr"
    detail = api.get(f"/v1/messages/{found[2]['id']}").json()
    assert "Jane Doe" not in detail["raw"]
    assert "Patient/p-1" not in detail["raw"]
    assert detail["ack"] == "201 applied"


def test_a_dead_lettered_event_shows_on_its_message(medbridge: MedBridge) -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    records = [synthetic(n, at, correlation_id=f"c-{n}") for n in range(3)]
    with medbridge.engine.begin() as conn:
        message_store.write(conn, records)
        conn.execute(
            insert(bus_dead_letters).values(
                group="ledger",
                event_seq=1,
                event_id="e-1",
                event_type="inventory.dispensed.v1",
                subject="X@Y",
                correlation_id="c-1",
                error_type="LedgerError",
                error="no such lot",
                traceback="",
                attempts=3,
                context={},
                status="dead",
                dead_at=at,
            )
        )
    browser = MessageBrowser(medbridge.engine)
    [dead] = browser.search(MessageFilter(status="dead_lettered")).items
    assert dead.control_id == "C0001"
    assert dead.effective_status == "dead_lettered"
    others = [m for m in browser.search(MessageFilter()).items if m.id != dead.id]
    assert not any(m.dead_lettered for m in others)
    detail = browser.get(dead.id)
    assert detail is not None
    assert [d.error for d in detail.dead_letters] == ["no such lot"]
