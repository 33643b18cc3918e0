"""Alerts (issue 16, "Done when" 3): a rule on dead letters fires once to a local webhook
receiver when a dead letter appears, stays quiet while it lasts, and sends its recovery
notice after the replay; a webhook that is down gets the notice on a later round."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, update
from tests.ledger_support import record_entries

from medbridge.app import MedBridge
from medbridge.bus.port import DeadLetterFilter
from medbridge.canonical.base import Money
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import Location, LocationKind
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.partners import TradingPartner
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.flows.alerts import AlertMonitor
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.runtime.processes import alert_monitor
from medbridge.settings import AlertRuleSettings, Settings
from medbridge.store import erp_circuits
from medbridge.store import exceptions as exception_store
from medbridge.store import procurement as procurement_store
from medbridge.store.tables import (
    bus_events,
    inbound_exceptions,
    purchase_orders,
    trade_interchanges,
)

pytestmark = pytest.mark.db


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).status == 200:
            type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Hook", (Receiver,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


@pytest.fixture
def alerted(medbridge: MedBridge, webhook: tuple[str, type[Receiver]]) -> Iterator[MedBridge]:
    settings = medbridge.settings.model_copy(
        update={
            "alert_rules": [
                AlertRuleSettings(name="dead-letters", metric="dead_letters", above=Decimal(0))
            ],
            "alert_webhook_url": webhook[0],
        }
    )
    mb = MedBridge.build(Settings.model_validate(settings.model_dump()))
    yield mb
    mb.engine.dispose()


def a_dispense_at_an_unknown_store(mb: MedBridge) -> None:
    """Appended past the intake (as a replayed or foreign log might hold it): the ledger
    consumer cannot resolve the store and dead-letters it."""
    movement = StockMovement(
        kind=MovementKind.DISPENSE,
        item="VANCO-1G",
        location="H1-NEWSTORE",
        quantity=Decimal(1),
        unit="VIAL",
        occurred_at=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
    )
    mb.bus.append(
        [
            EventEnvelope[StockMovement](
                type=movement.event_type,
                source="test/alerts",
                subject="VANCO-1G@H1-NEWSTORE",
                idempotency_key="alerts-1",
                data=movement,
            )
        ]
    )
    mb.consumers["ledger"].drain()


def test_a_dead_letter_fires_once_and_recovers_after_the_replay(
    alerted: MedBridge, webhook: tuple[str, type[Receiver]]
) -> None:
    _, hook = webhook
    monitor = alert_monitor(alerted)
    assert monitor.run_once() == []  # nothing wrong: nothing sent
    a_dispense_at_an_unknown_store(alerted)
    assert alerted.bus.dead_letter_count("ledger") == 1

    monitor.run_once()
    monitor.run_once()  # the incident lasts: no second notice
    assert [(n["state"], n["incident"], n["reading"]) for n in hook.received] == [
        ("firing", 1, "1")
    ]
    assert hook.received[0]["rule"] == "dead-letters"

    with alerted.engine.begin() as conn:  # the fix: the store exists now
        alerted.masterdata.save_location(
            conn,
            Location(
                code="H1-NEWSTORE",
                name="New store",
                kind=LocationKind.STORE,
                parent="H1",
                cost_center="H1-CC-PHARM",
            ),
        )
    report = alerted.consumers["ledger"].replay(DeadLetterFilter(group="ledger"), actor="test")
    assert len(report.applied) == 1
    monitor.run_once()
    monitor.run_once()
    assert [(n["state"], n["incident"]) for n in hook.received] == [
        ("firing", 1),
        ("recovered", 1),
    ]
    admin = alerted.ensure_admin_key()[0]
    with TestClient(alerted.api()) as api:
        [state] = api.get("/v1/alerts", headers={"X-API-Key": admin}).json()["items"]
    assert (state["rule"], state["state"], state["incident"]) == ("dead-letters", "ok", 1)


def test_a_notice_the_webhook_refused_is_sent_on_a_later_round(
    alerted: MedBridge, webhook: tuple[str, type[Receiver]]
) -> None:
    _, hook = webhook
    monitor = alert_monitor(alerted)
    a_dispense_at_an_unknown_store(alerted)
    hook.status = 503
    assert monitor.run_once() == []  # refused: not marked sent
    hook.status = 200
    sent = monitor.run_once()
    assert [n.kind.value for n in sent] == ["firing"]
    assert [(n["state"], n["incident"]) for n in hook.received] == [("firing", 1)]


def test_a_second_monitor_does_not_notify_again(
    alerted: MedBridge, webhook: tuple[str, type[Receiver]]
) -> None:
    """Two workers watching the same rules: the second finds the incident open and its notice
    sent (the transition itself is a compare-and-set: store.alerts.move)."""
    _, hook = webhook
    first, second = alert_monitor(alerted), alert_monitor(alerted)
    a_dispense_at_an_unknown_store(alerted)
    first.run_once()
    second.run_once()
    assert len(hook.received) == 1


# --- the rules of issue 16's second part: each fires once and recovers -----------------------


class Clock:
    """The monitor's wall clock, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
"""A little ahead of the wall clock, so that what the test writes now is due at T0."""

Watch = Callable[..., tuple[MedBridge, AlertMonitor, Clock]]


@pytest.fixture
def watch(medbridge: MedBridge, webhook: tuple[str, type[Receiver]]) -> Iterator[Watch]:
    """A MedBridge watching ``rules`` (settings dicts, as in MEDBRIDGE_ALERT_RULES) with its
    monitor on a clock that starts at T0."""
    built: list[MedBridge] = []

    def make(*rules: dict[str, Any], **update: Any) -> tuple[MedBridge, AlertMonitor, Clock]:
        settings = medbridge.settings.model_copy(
            update={
                "alert_rules": [AlertRuleSettings(**r) for r in rules],
                "alert_webhook_url": webhook[0],
                **update,
            }
        )
        mb = MedBridge.build(Settings.model_validate(settings.model_dump()))
        built.append(mb)
        clock = Clock(T0)
        return mb, alert_monitor(mb, now=clock), clock

    yield make
    for mb in built:
        mb.engine.dispose()


def rounds(monitor: AlertMonitor, n: int = 2) -> None:
    for _ in range(n):
        monitor.run_once()


def notices(hook: type[Receiver]) -> list[tuple[str, int, str]]:
    return [(n["state"], n["incident"], n["reading"]) for n in hook.received]


def test_consumer_lag_in_seconds(watch: Watch, webhook: tuple[str, type[Receiver]]) -> None:
    """The age of the oldest event a consumer group has not applied, the worst group."""
    mb, monitor, clock = watch({"name": "lag", "metric": "consumer_lag_seconds", "above": 60})
    hook = webhook[1]
    movement = StockMovement(
        kind=MovementKind.RECEIPT,
        item="VANCO-1G",
        location="H1-ICU",
        quantity=Decimal(5),
        unit="VIAL",
        unit_cost=Money(amount=Decimal("4.00")),
        occurred_at=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
    )
    mb.bus.append(
        [
            EventEnvelope[StockMovement](
                type=movement.event_type,
                source="test/alerts",
                subject="VANCO-1G@H1-ICU",
                idempotency_key="lag-1",
                data=movement,
            )
        ]
    )
    with mb.engine.begin() as conn:
        conn.execute(update(bus_events).values(appended_at=T0 - timedelta(seconds=30)))
    rounds(monitor)
    assert hook.received == []  # 30 s behind
    clock.advance(seconds=60)
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "90.000")]
    for consumer in mb.consumers.values():
        consumer.drain()
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "90.000"), ("recovered", 1, "0")]


def test_erp_circuit_open_for_minutes(watch: Watch, webhook: tuple[str, type[Receiver]]) -> None:
    """The posting worker records its circuit; the monitor (any process) reads how long it has
    not been closed."""
    mb, monitor, clock = watch(
        {"name": "erp-down", "metric": "erp_circuit_open_minutes", "above": 10}
    )
    hook = webhook[1]
    lines = (
        JournalLine(account="5100-H1", debit=Decimal(5), cost_center="H1-CC-PHARM", facility="H1"),
        JournalLine(account="1400-H1", credit=Decimal(5), facility="H1"),
    )
    with mb.engine.begin() as conn:
        record_entries(
            conn,
            [
                JournalEntry(
                    entry_id="JE-ALERT-1",
                    posting_date=date(2026, 11, 20),
                    description="circuit test",
                    source_event_id="circuit-1",
                    correlation_id="circuit-1",
                    lines=lines,
                )
            ],
        )
    # the entry was queued due now (the wall clock): T0 was taken at import, which in a long
    # suite run can be minutes ago, so the test's clock starts from the wall clock here
    clock.at = max(clock.at, datetime.now(UTC) + timedelta(seconds=1))
    erp = FakeErp()
    erp.refuse_credentials()  # trips the circuit at once
    monotonic = [0.0]
    worker = ErpPosting(
        mb.engine,
        erp,
        ErpPostingPolicy(auth_cool_down=3600),
        now=clock,
        clock=lambda: monotonic[0],
    )
    assert worker.poll_once() == 0
    with mb.engine.connect() as conn:
        assert erp_circuits.circuits(conn)["tryton"].state == "open"
    clock.advance(minutes=5)
    rounds(monitor)
    assert hook.received == []
    clock.advance(minutes=6)
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "11.00")]

    erp.accept_credentials()
    monotonic[0] += 3600  # the cool-down is over: a trial call, which succeeds
    assert worker.poll_once() == 1
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "11.00"), ("recovered", 1, "0")]


def test_an_acknowledgement_overdue(watch: Watch, webhook: tuple[str, type[Receiver]]) -> None:
    """An order sent to its supplier and not acknowledged (855 / ConfirmationRequest) within
    the rule's hours."""
    mb, monitor, clock = watch({"name": "ack", "metric": "acks_overdue", "hours": 24})
    hook = webhook[1]
    with mb.engine.begin() as conn:
        conn.execute(
            insert(purchase_orders).values(
                reference="PO-ACK-1",
                supplier="MCK",
                facility="H1",
                urgency="routine",
                lines=[],
                correlation_id="c",
                status="sent",
                erp_id="7",
                workflow_started=1,
                note=None,
                created_at=T0,
                updated_at=T0,
            )
        )
    clock.advance(hours=23)
    rounds(monitor)
    assert hook.received == []
    clock.advance(hours=2)
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "1")]
    with mb.engine.begin() as conn:
        procurement_store.set_order(conn, "PO-ACK-1", status="acknowledged")
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "1"), ("recovered", 1, "0")]


def interchange(mb: MedBridge, key: str, partner: str, at: datetime) -> None:
    with mb.engine.begin() as conn:
        conn.execute(
            insert(trade_interchanges).values(
                key=key,
                partner=partner,
                wire_format="x12",
                direction="in",
                status=200,
                answer="",
                received_at=at,
            )
        )


def test_a_partner_silent_for_hours(watch: Watch, webhook: tuple[str, type[Receiver]]) -> None:
    """No inbound interchange from a configured partner for the rule's hours."""
    partners = {"MCK": TradingPartner(code="MCK", x12_id="MCKESSON")}
    mb, monitor, clock = watch(
        {"name": "mck-silent", "metric": "partner_silent_hours", "partner": "MCK", "above": 24},
        partners=partners,
    )
    hook = webhook[1]
    interchange(mb, "x12:ZZ:MCKESSON:1", "MCK", T0)
    interchange(mb, "x12:ZZ:OTHER:1", "OTHER", T0 + timedelta(hours=29))  # not MCK's
    clock.advance(hours=20)
    rounds(monitor)
    assert hook.received == []
    clock.advance(hours=10)
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "30.00")]
    interchange(mb, "x12:ZZ:MCKESSON:2", "MCK", T0 + timedelta(hours=29))
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "30.00"), ("recovered", 1, "1.00")]


def test_a_connectors_error_rate(watch: Watch, webhook: tuple[str, type[Receiver]]) -> None:
    """Parked over received (parked + accepted into the log) of one connector in the last
    minutes; another connector's messages do not count."""
    mb, monitor, clock = watch(
        {
            "name": "hl7-errors",
            "metric": "error_rate",
            "connector": "hl7v2",
            "minutes": 60,
            "above": "0.25",
        }
    )
    hook = webhook[1]

    def accepted(key: str, source: str, at: datetime) -> None:
        movement = StockMovement(
            kind=MovementKind.DISPENSE,
            item="VANCO-1G",
            location="H1-ICU",
            quantity=Decimal(1),
            unit="VIAL",
            occurred_at=at,
        )
        [result] = mb.bus.append(
            [
                EventEnvelope[StockMovement](
                    type=movement.event_type,
                    source=source,
                    subject="VANCO-1G@H1-ICU",
                    idempotency_key=key,
                    data=movement,
                )
            ]
        )
        with mb.engine.begin() as conn:
            conn.execute(
                update(bus_events).where(bus_events.c.seq == result.seq).values(appended_at=at)
            )

    def parked(key: str, at: datetime) -> None:
        with mb.engine.begin() as conn:
            exception_id, _ = exception_store.park(
                conn,
                source="hl7v2/PYXIS@H1",
                source_system="PYXIS",
                idempotency_key=key,
                problems=[],
                drafts=[],
            )
            conn.execute(
                update(inbound_exceptions)
                .where(inbound_exceptions.c.id == exception_id)
                .values(created_at=at)
            )

    accepted("hl7-1", "hl7v2/PYXIS@H1", T0)
    accepted("fhir-1", "fhir/ehr", T0)  # another connector
    clock.advance(minutes=1)
    rounds(monitor)
    assert hook.received == []  # 0 of 1
    parked("hl7-parked-1", T0 + timedelta(minutes=2))
    clock.advance(minutes=2)
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "0.5000")]  # 1 of 2
    for n in range(2, 5):
        accepted(f"hl7-{n}", "hl7v2/PYXIS@H1", T0 + timedelta(minutes=3))
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "0.5000"), ("recovered", 1, "0.2000")]  # 1 of 5


def test_an_outage_is_the_whole_time_the_circuit_is_not_closed(medbridge: MedBridge) -> None:
    """Open, half-open (a trial), open again: still one outage, from its first opening."""
    with medbridge.engine.begin() as conn:
        for state, minutes in (("closed", 0), ("open", 1), ("half_open", 2), ("open", 3)):
            erp_circuits.record(conn, "tryton", state, T0 + timedelta(minutes=minutes))
        circuit = erp_circuits.circuits(conn)["tryton"]
        assert (circuit.state, circuit.changed_at) == ("open", T0 + timedelta(minutes=3))
        assert circuit.unhealthy_since == T0 + timedelta(minutes=1)
        erp_circuits.record(conn, "tryton", "closed", T0 + timedelta(minutes=4))
        erp_circuits.record(conn, "tryton", "open", T0 + timedelta(minutes=5))
        assert erp_circuits.circuits(conn)["tryton"].unhealthy_since == T0 + timedelta(minutes=5)


def test_an_hl7_sender_silent_for_hours(watch: Watch, webhook: tuple[str, type[Receiver]]) -> None:
    """An inbound sender (here a dispensing cabinet's HL7 source) with no message accepted
    or parked for the rule's hours; what another sender sends does not count."""
    mb, monitor, clock = watch(
        {
            "name": "cabinet-silent",
            "metric": "partner_silent_hours",
            "sender": "hl7v2/PYXIS@H1",
            "above": 2,
        }
    )
    hook = webhook[1]

    def heard(key: str, source: str, at: datetime) -> None:
        movement = StockMovement(
            kind=MovementKind.DISPENSE,
            item="VANCO-1G",
            location="H1-ICU",
            quantity=Decimal(1),
            unit="VIAL",
            occurred_at=at,
        )
        [result] = mb.bus.append(
            [
                EventEnvelope[StockMovement](
                    type=movement.event_type,
                    source=source,
                    subject="VANCO-1G@H1-ICU",
                    idempotency_key=key,
                    data=movement,
                )
            ]
        )
        with mb.engine.begin() as conn:
            conn.execute(
                update(bus_events).where(bus_events.c.seq == result.seq).values(appended_at=at)
            )

    heard("pyxis-1", "hl7v2/PYXIS@H1", T0)
    heard("omnicell-1", "hl7v2/OMNICELL@H1", T0 + timedelta(hours=2))  # another sender
    clock.advance(hours=1)
    rounds(monitor)
    assert hook.received == []
    clock.advance(hours=2)
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "3.00")]
    with mb.engine.begin() as conn:  # a message parked for review is a message heard
        exception_id, _ = exception_store.park(
            conn,
            source="hl7v2/PYXIS@H1",
            source_system="PYXIS",
            idempotency_key="pyxis-parked",
            problems=[],
            drafts=[],
        )
        conn.execute(
            update(inbound_exceptions)
            .where(inbound_exceptions.c.id == exception_id)
            .values(created_at=T0 + timedelta(hours=2, minutes=30))
        )
    rounds(monitor)
    assert notices(hook) == [("firing", 1, "3.00"), ("recovered", 1, "0.50")]
