"""The GNU Health connector against a real GNU Health 5.0 / trytond 7.0 server.

A dispense recorded in GNU Health (another process writing to the server's database) is
handed over exactly once, with its lot, expiry, quantity and product code, and nothing that
identifies the patient: the planted name, PUID/MRN and date of birth appear nowhere in the
movements, events, exception queue, API answers, cursor file or logs.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.inbound import InboundMovement, ItemCodeKind
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.gnuhealth import (
    GnuHealthAuthError,
    GnuHealthClient,
    GnuHealthConfig,
    GnuHealthProtocolError,
    GnuHealthUnavailable,
    Poller,
    encounter_ref,
    idempotency_key,
)
from medbridge.flows.intake import Submission
from medbridge.governance.clients import Role
from medbridge.masterdata.repository import CrossReferences
from medbridge.store import ledger as ledger_store
from medbridge.store.tables import bus_events, inbound_exceptions

if TYPE_CHECKING:
    from peers.gnuhealth import GnuHealthPeer

pytestmark = [pytest.mark.peer]

SECRET = "test-pseudonym-secret-0123456789"
PATIENT = {"patient_name": "Zebulon Quixwright", "puid": "MRN-ZQ-99173", "dob": "1957-03-14"}
PHI = (
    "Zebulon",
    "Quixwright",
    "MRN-ZQ-99173",
    "ZQ-99173",
    "1957-03-14",
    "19570314",
    "03/14/1957",
    "14/03/1957",
)


@dataclass
class RecordingIntake:
    calls: list[tuple[list[InboundMovement], str, str]] = field(default_factory=list)

    def receive(
        self, drafts: Sequence[InboundMovement], *, source: str, idempotency_key: str
    ) -> object:
        self.calls.append((list(drafts), source, idempotency_key))
        return None

    @property
    def keys(self) -> list[str]:
        return [key for _, _, key in self.calls]


def config_for(peer: GnuHealthPeer, var_dir: Path, **overrides: Any) -> GnuHealthConfig:
    values: dict[str, Any] = {
        "url": peer.url,
        "database": peer.database,
        "user": peer.login,
        "password": peer.password,
        "pseudonym_secret": SECRET,
        "var_dir": var_dir,
        "poll_interval": 0.2,
        **overrides,
    }
    return GnuHealthConfig(**values)


def assert_no_phi(text: str, where: str) -> None:
    found = [value for value in PHI if value.lower() in text.lower()]
    assert not found, f"patient data {found} found in {where}"


def test_login_opens_a_session(gnuhealth: GnuHealthPeer, tmp_path: Path) -> None:
    with GnuHealthClient(config_for(gnuhealth, tmp_path)) as client:
        assert client.login() > 0
        assert client.search_read("stock.move", [("id", "<", 0)], ["id"]) == []


def test_a_dispense_is_handed_over_once_with_lot_expiry_and_no_patient(
    gnuhealth: GnuHealthPeer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dispensed = gnuhealth.record_dispense(
        **PATIENT, product="VANCO-1G-GH", quantity="2", lot="VAN-LOT-A1"
    )
    intake = RecordingIntake()
    config = config_for(gnuhealth, tmp_path)
    poller = Poller(config, intake)
    try:
        result = poller.poll_once()
    finally:
        poller.close()

    key = f"gnuhealth:{gnuhealth.database}:stock.move:{dispensed.move}"
    assert result.handed_over == (key,)
    assert intake.keys == [key]
    [(drafts, source, _)] = intake.calls
    assert source == f"gnuhealth/{gnuhealth.database}"
    [draft] = drafts
    assert draft.kind is MovementKind.DISPENSE
    assert draft.source_system == f"gnuhealth:{gnuhealth.database}"
    assert draft.item.kind is ItemCodeKind.LOCAL
    assert draft.item.code == "VANCO-1G-GH"
    assert draft.location == gnuhealth.storage_code
    assert draft.quantity == Decimal("2")
    assert draft.unit == "u"
    assert draft.lot == "VAN-LOT-A1"
    assert draft.expiry == gnuhealth.lot_expiry("VANCO-1G-GH", "VAN-LOT-A1")
    assert draft.occurred_at.utcoffset() is not None
    assert draft.encounter_ref == encounter_ref(
        SECRET.encode(), gnuhealth.database, dispensed.prescription
    )
    assert draft.to_location is None
    assert draft.patient_location is None

    captured = capsys.readouterr()
    assert_no_phi(draft.model_dump_json(), "the handed-over movement")
    assert_no_phi(config.cursor_file.read_text(), "the cursor file")
    logs = captured.out + captured.err + caplog.text
    assert "gnuhealth.polled" in logs  # the logs were captured: the check below is not vacuous
    assert_no_phi(logs, "the logs")

    # The canary is live: the server does hold the planted patient behind that move.
    with GnuHealthClient(config) as client:
        [move] = client.search_read(
            "stock.move",
            [("id", "=", dispensed.move)],
            ["origin.patient.party.ref", "origin.patient.party.name"],
        )
    party = move["origin."]["patient."]["party."]
    assert (party["ref"], party["name"]) == (PATIENT["puid"], "Zebulon")


def test_polling_again_or_after_a_restart_hands_over_nothing_new(
    gnuhealth: GnuHealthPeer, tmp_path: Path
) -> None:
    first = gnuhealth.record_dispense(**PATIENT, quantity="1", lot="VAN-LOT-A1")
    intake = RecordingIntake()
    config = config_for(gnuhealth, tmp_path / "var")
    poller = Poller(config, intake)
    assert len(poller.poll_once().handed_over) == 1
    again = poller.poll_once()
    assert again.handed_over == ()
    assert again.skipped == 1  # re-read in the overlap window, recognised by move id
    poller.close()

    restarted = Poller(config, intake)  # same cursor file: a restart of MedBridge
    assert restarted.poll_once().handed_over == ()
    second = gnuhealth.record_dispense(
        patient_name="Other Person", puid="MRN-2", dob="1990-01-01", quantity="3", lot="VAN-LOT-B2"
    )
    assert restarted.poll_once().handed_over == (idempotency_key(gnuhealth.database, second.move),)
    restarted.close()

    # The cursor lost: everything is read again, under the same keys, so the intake dedups.
    # One record a page: the pages follow on (write_date, id), none skipped or read twice.
    amnesiac = Poller(config_for(gnuhealth, tmp_path / "fresh-var", page_size=1), intake)
    assert amnesiac.poll_once().handed_over == (
        idempotency_key(gnuhealth.database, first.move),
        idempotency_key(gnuhealth.database, second.move),
    )
    amnesiac.close()
    assert len(intake.keys) == 4
    assert len(set(intake.keys)) == 2


def test_a_dispense_becomes_exactly_one_movement_in_medbridge_and_no_phi_leaves(
    gnuhealth: GnuHealthPeer,
    medbridge: MedBridge,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = config_for(gnuhealth, tmp_path / "var", poll_interval=0.1)
    source_system = config.source_system
    with medbridge.engine.begin() as conn:
        medbridge.masterdata.link_code(
            conn,
            "VANCO-1G",
            ItemCode(system=CodeSystem.LOCAL, code="VANCO-1G-GH", issuer=source_system),
        )
        CrossReferences.map_location(conn, source_system, gnuhealth.storage_code, "H1-PHARM")
        CrossReferences.map_unit(conn, source_system, "u", "VIAL")

    mapped = gnuhealth.record_dispense(**PATIENT, quantity="2", lot="VAN-LOT-A1")
    unmapped = gnuhealth.record_dispense(
        **PATIENT, product="00409-4332-01", quantity="1", lot="CEF-LOT-C3"
    )

    # The poller as MedBridge runs it: a worker thread, one poll interval.
    stop = threading.Event()
    poller = Poller(config, medbridge.inbound)
    worker = threading.Thread(target=poller.run, args=(stop,), name="gnuhealth-poller")
    worker.start()
    try:
        for _ in range(100):  # 10 s at most; one poll interval is 0.1 s
            if _events(medbridge) and _exceptions(medbridge):
                break
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(10)
        poller.close()

    events = _events(medbridge)
    prefix = f"gnuhealth/{gnuhealth.database}:gnuhealth:{gnuhealth.database}:stock.move:"
    assert [e.idempotency_key for e in events] == [f"{prefix}{mapped.move}#0"]
    payload = json.loads(events[0].payload)
    assert payload["type"] == "inventory.dispensed.v1"
    assert payload["data"]["item"] == "VANCO-1G"
    assert payload["data"]["location"] == "H1-PHARM"
    assert payload["data"]["lot"] == "VAN-LOT-A1"
    assert Decimal(payload["data"]["quantity"]) == Decimal("2")
    parked = _exceptions(medbridge)
    assert [p.idempotency_key for p in parked] == [
        idempotency_key(gnuhealth.database, unmapped.move)
    ]

    # Restart MedBridge's poller with its cursor lost: no duplicate anywhere.
    config.cursor_file.unlink()
    restarted = Poller(config, medbridge.inbound)
    assert len(restarted.poll_once().handed_over) == 2
    restarted.close()
    assert len(_events(medbridge)) == 1
    assert len(_exceptions(medbridge)) == 1

    reader = medbridge.clients.register("phi-canary", Role.READER)
    with TestClient(medbridge.api()) as api:
        api.headers["X-API-Key"] = reader
        answers = [
            api.get("/v1/exceptions"),
            api.get("/v1/stock", params={"location": "H1-PHARM"}),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert_no_phi(answer.text, f"the API answer {answer.url}")
    assert "00409-4332-01" in answers[0].text
    captured = capsys.readouterr()
    assert_no_phi(" ".join(e.payload for e in events), "the stored events")
    assert_no_phi(json.dumps([p.drafts for p in parked]), "the exception queue")
    assert_no_phi(config.cursor_file.read_text(), "the cursor file")
    assert_no_phi(captured.out + captured.err + caplog.text, "the logs")


def test_a_wrong_password_is_an_auth_error(gnuhealth: GnuHealthPeer, tmp_path: Path) -> None:
    config = config_for(gnuhealth, tmp_path, password="not-the-password")
    with GnuHealthClient(config) as client, pytest.raises(GnuHealthAuthError):
        client.login()
    poller = Poller(config, RecordingIntake())
    with pytest.raises(GnuHealthAuthError):
        poller.poll_once()
    poller.close()
    assert not config.cursor_file.exists()


def test_a_server_that_is_down_is_a_transient_error(tmp_path: Path) -> None:
    config = GnuHealthConfig(
        url=f"http://127.0.0.1:{_free_port()}/",
        database="health",
        password="x",
        pseudonym_secret=SECRET,
        var_dir=tmp_path,
        timeout=2,
    )
    poller = Poller(config, RecordingIntake())
    with pytest.raises(GnuHealthUnavailable):
        poller.poll_once()
    poller.close()
    assert not config.cursor_file.exists()


def test_an_expired_session_is_renewed(gnuhealth: GnuHealthPeer, tmp_path: Path) -> None:
    with GnuHealthClient(config_for(gnuhealth, tmp_path)) as client:
        client.login()
        # The server forgets every session (timeout, restart with a cleaned table).
        db_file = gnuhealth.server.data_dir / f"{gnuhealth.database}.sqlite"
        with sqlite3.connect(db_file) as db:
            db.execute("DELETE FROM ir_session")
        assert client.search_read("stock.move", [("id", "<", 0)], ["id"]) == []


def test_an_unknown_database_is_a_protocol_error(gnuhealth: GnuHealthPeer, tmp_path: Path) -> None:
    config = config_for(gnuhealth, tmp_path, database="no_such_database")
    with GnuHealthClient(config) as client, pytest.raises(GnuHealthProtocolError):
        client.login()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _events(medbridge: MedBridge) -> list[Any]:
    with medbridge.engine.connect() as conn:
        return list(conn.execute(select(bus_events).order_by(bus_events.c.seq)))


def _exceptions(medbridge: MedBridge) -> list[Any]:
    with medbridge.engine.connect() as conn:
        return list(conn.execute(select(inbound_exceptions).order_by(inbound_exceptions.c.id)))


def test_medbridge_configured_for_gnuhealth_polls_it_and_a_restart_adds_nothing(
    gnuhealth: GnuHealthPeer, medbridge: MedBridge
) -> None:
    """Done-when of the issue, through the product's own wiring (MEDBRIDGE_GNUHEALTH_*)."""
    settings = medbridge.settings.model_copy(
        update={
            "gnuhealth_url": gnuhealth.url,
            "gnuhealth_database": gnuhealth.database,
            "gnuhealth_user": gnuhealth.login,
            "gnuhealth_password": SecretStr(gnuhealth.password),
            "gnuhealth_poll_interval": 0.5,
        }
    )
    running = MedBridge.build(settings)
    source = f"gnuhealth:{gnuhealth.database}"
    with running.engine.begin() as conn:
        running.masterdata.link_code(
            conn, "VANCO-1G", ItemCode(system=CodeSystem.LOCAL, code="VANCO-1G-GH", issuer=source)
        )
        CrossReferences.map_location(conn, source, gnuhealth.storage_code, "H1-PHARM")
        CrossReferences.map_unit(conn, source, "u", "VIAL")
    running.intake.submit(  # MedBridge's ledger holds the lot the pharmacy dispenses
        [
            Submission(
                StockMovement(
                    kind=MovementKind.RECEIPT,
                    item="VANCO-1G",
                    location="H1-PHARM",
                    quantity=Decimal(50),
                    unit="VIAL",
                    lot="VAN-LOT-B2",
                    unit_cost=Money(amount="6.85"),
                    occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
                ),
                "opening-VAN-LOT-B2",
            )
        ],
        "test",
    )
    dispense = gnuhealth.record_dispense(**PATIENT, quantity="3", lot="VAN-LOT-B2")

    running.start_workers()
    try:
        deadline = time.monotonic() + 15
        while not _events(running) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        running.stop_workers()
    [_, event] = _events(running)
    assert event.idempotency_key.endswith(f"stock.move:{dispense.move}#0")

    restarted = MedBridge.build(settings)  # a restart: new process state, same database
    restarted.start_workers()
    try:
        time.sleep(2 * settings.gnuhealth_poll_interval + 0.5)
    finally:
        restarted.stop_workers()
    assert len(_events(restarted)) == 2
    running.consumers["ledger"].drain()
    assert running.bus.dead_letter_count("ledger") == 0
    with running.engine.connect() as conn:
        [lot] = ledger_store.stock(conn, item="VANCO-1G", lot="VAN-LOT-B2")
    assert lot.quantity == Decimal(47)
