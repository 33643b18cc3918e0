"""Alerts (issue 16, "Done when" 3): a rule on dead letters fires once to a local webhook
receiver when a dead letter appears, stays quiet while it lasts, and sends its recovery
notice after the replay; a webhook that is down gets the notice on a later round."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medbridge.app import MedBridge
from medbridge.bus.port import DeadLetterFilter
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.masterdata import Location, LocationKind
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.runtime.processes import alert_monitor
from medbridge.settings import AlertRuleSettings, Settings

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
