"""Inbound senders bound to clients (issue 15, "Facility scopes"): a cabinet of H1 cannot
post H2's stock. Over MLLP it gets ``MSA|AE`` (a resend cannot help) and nothing is stored or
parked; over FHIR the API client is the sender and gets 403."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hl7_support import CABINET_SOURCE, map_hl7_sources, running_listener
from medbridge.app import MedBridge
from medbridge.connectors.hl7v2.codec import parse
from medbridge.connectors.hl7v2.outbound import MllpClient
from medbridge.governance.permissions import Role
from medbridge.masterdata.repository import CrossReferences
from medbridge.settings import Settings
from medbridge.store.tables import bus_events, inbound_exceptions
from paths import FIXTURES

pytestmark = pytest.mark.db

MESSAGE = (FIXTURES / "hl7v2" / "rds-o13-v251-vancomycin-lot.hl7").read_text()


@pytest.fixture
def bound(medbridge: MedBridge) -> Iterator[MedBridge]:
    """MedBridge with the PYXIS cabinets of H1 bound to a client of H1, and a cabinet code
    that maps to H2's pharmacy (a misconfigured or hostile cabinet)."""
    settings = medbridge.settings.model_copy(
        update={"sender_clients": {"hl7v2/PYXIS@H1": "cabinets-h1"}}
    )
    mb = MedBridge.build(Settings.model_validate(settings.model_dump()))
    mb.clients.register("cabinets-h1", Role.INTEGRATION, facilities=["H1"])
    map_hl7_sources(mb)
    with mb.engine.begin() as conn:
        CrossReferences.map_location(conn, CABINET_SOURCE, "H2-CAB-9", "H2-PHARM")
    yield mb
    mb.engine.dispose()


def count(mb: MedBridge, table: object) -> int:
    with mb.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def send(port: int, message: str) -> tuple[str, str]:
    with MllpClient("127.0.0.1", port) as client:
        ack = parse(client.send(message.replace("\n", "\r")))
    msa, err = ack.first("MSA"), ack.first("ERR")
    assert msa is not None
    return msa.get(1), (err.get(8) if err else "")


def test_a_cabinet_of_h1_cannot_post_h2s_stock_over_mllp(bound: MedBridge) -> None:
    with running_listener(bound) as listener:
        events = count(bound, bus_events)
        foreign = MESSAGE.replace("ICU-CAB-1", "H2-CAB-9").replace("CAB0001", "CAB0002")
        code, text = send(listener.port, foreign)
        assert code == "AE"
        assert "H2" in text
        assert "outside the sender" in text
        assert count(bound, bus_events) == events  # nothing stored
        assert count(bound, inbound_exceptions) == 0  # and nothing parked for review
        code, text = send(listener.port, MESSAGE)  # its own ICU cabinet: applied
        assert code == "AA", text
        assert count(bound, bus_events) == events + 1


def test_an_mllp_source_address_bound_to_a_client_holds_its_facilities(
    medbridge: MedBridge,
) -> None:
    """No MSH binding at all: the connection's address (127.0.0.1 here) is bound to a client
    of H1, so H2's stock is refused (AE) and H1's applied."""
    medbridge.clients.register("icu-cabinets", Role.INTEGRATION, facilities=["H1"])
    map_hl7_sources(medbridge)
    with medbridge.engine.begin() as conn:
        CrossReferences.map_location(conn, CABINET_SOURCE, "H2-CAB-9", "H2-PHARM")
    bound = (
        (ip_network("127.0.0.0/8"), "someone-else"),
        (ip_network("127.0.0.1/32"), "icu-cabinets"),
    )
    with running_listener(medbridge, source_clients=bound) as listener:
        events = count(medbridge, bus_events)
        foreign = MESSAGE.replace("ICU-CAB-1", "H2-CAB-9").replace("CAB0001", "CAB0003")
        code, text = send(listener.port, foreign)
        assert code == "AE"
        assert "outside the sender" in text
        assert count(medbridge, bus_events) == events
        code, _ = send(listener.port, MESSAGE)
        assert code == "AA"  # the most specific network's client (icu-cabinets) decides
        assert count(medbridge, bus_events) == events + 1


def test_an_unbound_sender_is_not_restricted(medbridge: MedBridge) -> None:
    map_hl7_sources(medbridge)
    with medbridge.engine.begin() as conn:
        CrossReferences.map_location(conn, CABINET_SOURCE, "H2-CAB-9", "H2-PHARM")
    with running_listener(medbridge) as listener:
        code, _ = send(listener.port, MESSAGE.replace("ICU-CAB-1", "H2-CAB-9"))
    assert code == "AA"


def test_a_fhir_client_bound_to_h1_gets_403_for_h2(bound: MedBridge) -> None:
    key = bound.clients.register("ehr-h1", Role.INTEGRATION, facilities=["H1"])
    with bound.engine.begin() as conn:  # the EHR's own location ids, mapped as for any client
        CrossReferences.map_location(conn, "fhir:ehr-h1", "Location/H2-PHARM", "H2-PHARM")
    dispense = {
        "resourceType": "MedicationDispense",
        "id": "md-h2-1",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "0069-2587-10"}]
        },
        "subject": {"reference": "Patient/p1"},
        "location": {"reference": "Location/H2-PHARM"},
        "quantity": {
            "value": 1,
            "unit": "vial",
            "system": "http://unitsofmeasure.org",
            "code": "VIAL",
        },
        "whenHandedOver": "2026-11-21T08:25:00+00:00",
    }
    with TestClient(bound.api()) as api:
        events = count(bound, bus_events)
        answer = api.post(
            "/fhir/r4/MedicationDispense",
            json=dispense,
            headers={"X-API-Key": key, "Content-Type": "application/fhir+json"},
        )
        assert answer.status_code == 403, answer.text
        assert answer.json()["issue"][0]["code"] == "forbidden"
        assert count(bound, bus_events) == events
        assert count(bound, inbound_exceptions) == 0
