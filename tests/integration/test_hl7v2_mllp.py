"""HL7 v2 over a real MLLP TCP connection: every sample and fixture gets the right ACK, and
accepted dispenses become stock movements with their lot and expiry, even of stock the ledger
does not show (a fact: applied, flagged, a pharmacy task)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hl7_support import map_hl7_sources, running_listener
from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.hl7v2 import MllpClient, MllpListener, parse
from medbridge.flows.intake import Submission
from medbridge.store import exceptions as exception_store
from medbridge.store import ledger as ledger_store
from medbridge.store.tables import bus_events, journal_entries
from paths import FIXTURES as FIXTURE_ROOT
from paths import SAMPLES as SAMPLE_ROOT

pytestmark = pytest.mark.db

SAMPLES = SAMPLE_ROOT / "hl7v2"
FIXTURES = FIXTURE_ROOT / "hl7v2"

# sample -> (MSA-1, ERR-2 location or None, a fragment of the MSA-3 text or ERR-8)
EXPECTED = {
    "lfh-DFT-P03-v26-minimal-with-IN1.hl7": ("AE", "MSH^1^4^1", "MSH-4"),
    "lfh-DFT-P03-v26-org-telecom-regression.hl7": ("AE", "MSH^1^4^1", "MSH-4"),
    "lfh-RDE-O11-v26-codeableconcept.hl7": ("AE", "RXE^1^2^1", "73056-017"),
    "lfh-RDE-O11-v26-proslov-ampicillin-ndc.hl7": ("AE", "RXE^1^2^1", "'999'"),
    "msft-fhirconverter-DFT-P03-01.hl7": ("AA", None, "accepted for review"),
    "msft-fhirconverter-DFT-P03-02.hl7": ("AA", None, "accepted for review"),
    "msft-fhirconverter-DFT-P11-01.hl7": ("AA", None, "accepted for review"),
    "msft-fhirconverter-DFT-P11-02.hl7": ("AA", None, "accepted for review"),
    "msft-fhirconverter-RDE-O11-01.hl7": ("AA", None, "recorded as demand"),
    "msft-fhirconverter-RDE-O11-02.hl7": ("AA", None, "recorded as demand"),
    "msft-fhirconverter-RDE-O25-01.hl7": ("AA", None, "recorded as demand"),
    "msft-fhirconverter-RDE-O25-02.hl7": ("AA", None, "recorded as demand"),
    "msft-fhirconverter-RDS-O13-01.hl7": ("AE", "RXD^1^2^1", "8 digits"),
    "msft-fhirconverter-RDS-O13-02.hl7": ("AE", "RXD^1^2^1", "8 digits"),
}


@pytest.fixture
def listener(medbridge: MedBridge) -> Iterator[MllpListener]:
    map_hl7_sources(medbridge)
    with running_listener(medbridge) as running:
        yield running


def send(listener: MllpListener, path: Path) -> tuple[str, str | None, str]:
    with MllpClient("127.0.0.1", listener.port) as client:
        ack = parse(client.send(path.read_bytes()))
    msa, err = ack.first("MSA"), ack.first("ERR")
    assert msa is not None
    text = msa.get(3) + (err.get(8) if err else "")
    return msa.get(1), (err.raw(2) if err else None), text


def on_hand(mb: MedBridge, item: str, location: str) -> Decimal:
    with mb.engine.connect() as conn:
        return sum(
            (r.quantity for r in ledger_store.stock(conn, item=item, location=location)), Decimal(0)
        )


def count(mb: MedBridge, table: object, *where: object) -> int:
    with mb.engine.connect() as conn:
        stmt = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int(conn.execute(stmt).scalar_one())


def opening_stock(mb: MedBridge) -> None:
    """What the ICU cabinet holds: the lots the fixtures dispense from."""
    receipts = [
        ("VANCO-1G", "VIAL", "V2611A", date(2028, 3, 31)),
        ("VANCO-1G", "VIAL", "V2611B", date(2027, 11, 30)),
        ("AMPI-250", "CAP", "A4471", date(2027, 12, 1)),
        ("DRAPE-SM", "EA", None, None),
    ]
    mb.intake.submit(
        [
            Submission(
                StockMovement(
                    kind=MovementKind.RECEIPT,
                    item=item,
                    location="H1-ICU",
                    quantity=Decimal(100),
                    unit=unit,
                    lot=lot,
                    expiry=expiry,
                    unit_cost=Money(amount="1.00"),
                    occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
                ),
                f"open-{item}-{lot}",
            )
            for item, unit, lot, expiry in receipts
        ],
        "test",
    )
    mb.consumers["ledger"].drain()


def test_every_sample_file_is_covered() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.hl7")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_gets_the_right_acknowledgement(listener: MllpListener, name: str) -> None:
    code, location, text = send(listener, SAMPLES / name)
    expected_code, expected_location, fragment = EXPECTED[name]
    assert (code, location) == (expected_code, expected_location), text
    assert fragment in text


def test_sample_orders_are_recorded_as_demand_not_stock(
    listener: MllpListener, medbridge: MedBridge
) -> None:
    send(listener, SAMPLES / "msft-fhirconverter-RDE-O11-01.hl7")
    assert count(medbridge, bus_events, bus_events.c.type == "pharmacy.order_received.v1") == 1
    medbridge.consumers["ledger"].drain()
    assert count(medbridge, journal_entries) == 0
    assert medbridge.bus.dead_letter_count("ledger") == 0


def test_a_dispense_with_lot_and_expiry_becomes_one_movement(
    listener: MllpListener, medbridge: MedBridge
) -> None:
    opening_stock(medbridge)
    code, _, _ = send(listener, FIXTURES / "rds-o13-v251-vancomycin-lot.hl7")
    assert code == "AA"
    again, _, text = send(listener, FIXTURES / "rds-o13-v251-vancomycin-lot.hl7")
    assert again == "AA"
    assert "duplicate" in text
    event = _last_movement_event(medbridge)
    assert event["data"]["lot"] == "V2611A"
    assert event["data"]["expiry"] == "2028-03-31"
    assert event["data"]["location"] == "H1-ICU"
    assert event["data"]["cost_center"] == "H1-CC-ICU"
    assert event["data"]["unit"] == "VIAL"
    assert str(event["idempotencykey"]).endswith("hl7:PYXIS^H1:CAB0001#0")  # CloudEvents name


def test_lf_separated_and_v23_messages_work(listener: MllpListener, medbridge: MedBridge) -> None:
    assert send(listener, FIXTURES / "rds-o13-v251-vancomycin-lot-lf.hl7")[0] == "AA"
    event = _last_movement_event(medbridge)
    assert (event["data"]["lot"], event["data"]["expiry"]) == ("V2611B", "2027-11-30")
    assert send(listener, FIXTURES / "rds-o01-v23-ampicillin.hl7")[0] == "AA"
    event = _last_movement_event(medbridge)
    assert event["data"]["item"] == "AMPI-250"
    assert (event["data"]["lot"], event["data"]["expiry"]) == ("A4471", "2027-12-01")


def test_accepted_dispenses_are_applied_to_the_ledger(
    listener: MllpListener, medbridge: MedBridge
) -> None:
    opening_stock(medbridge)
    send(listener, FIXTURES / "rds-o13-v251-vancomycin-lot.hl7")
    send(listener, FIXTURES / "dft-p03-v251-drape.hl7")  # one charge (3), one credit (ignored)
    medbridge.consumers["ledger"].drain()
    assert medbridge.bus.dead_letter_count("ledger") == 0
    assert on_hand(medbridge, "DRAPE-SM", "H1-ICU") == Decimal(97)
    assert on_hand(medbridge, "VANCO-1G", "H1-ICU") == Decimal(198)
    with medbridge.engine.connect() as conn:
        [lot] = ledger_store.stock(conn, item="VANCO-1G", lot="V2611A")
    assert lot.quantity == Decimal(98)


def test_a_dispense_of_stock_not_on_hand_is_a_fact_applied_flagged_and_given_to_pharmacy(
    listener: MllpListener, medbridge: MedBridge
) -> None:
    """The cabinet already handed the drug out: AA, applied (the lot goes negative), a
    pharmacy task, no dead letter, and the trace of the message shows the task."""
    code, _, text = send(listener, FIXTURES / "rds-o13-v251-vancomycin-lot.hl7")
    assert code == "AA", text
    medbridge.consumers["ledger"].drain()
    correlation = str(_last_movement_event(medbridge)["correlationid"])

    assert medbridge.bus.dead_letter_count("ledger") == 0
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        stock = client.get("/v1/stock", params={"item": "VANCO-1G"}).json()["items"]
        queue = client.get("/v1/work-items", params={"queue": "pharmacy"}).json()["items"]
        trace = client.get(f"/v1/trace/{correlation}").json()["steps"]
        dead = client.get("/v1/dead-letters").json()
    assert stock == [
        {
            "item": "VANCO-1G",
            "location": "H1-ICU",
            "lot": "V2611A",
            "expiry": "2028-03-31",  # as the cabinet reported it
            "quantity": "-2",
            "discrepancy": True,
        }
    ]
    [task] = queue
    assert (task["kind"], task["status"], task["correlation_id"]) == (
        "stock_discrepancy",
        "open",
        correlation,
    )
    assert task["actions"] == ["request_count", "close"]
    context = task["context"]
    assert (context["item"], context["location"], context["lot"]) == (
        "VANCO-1G",
        "H1-ICU",
        "V2611A",
    )
    assert (context["quantity"], context["unit"], context["on_hand_before"]) == ("2", "VIAL", "0")
    assert context["known_lot"] is False
    assert context["correlation_id"] == correlation
    steps = {(step["kind"], step["ref"]) for step in trace}
    assert ("work_item", f"pharmacy stock_discrepancy {task['id']}") in steps
    assert any(kind == "event" and "inventory.dispensed" in ref for kind, ref in steps)
    assert dead["items"] == []


@pytest.mark.parametrize(
    ("name", "code", "location", "error_code"),
    [
        ("rds-o13-v251-no-quantity.hl7", "AE", "RXD^1^4^1", "101"),
        ("rds-o13-v29-unsupported-version.hl7", "AR", "MSH^1^12^1", "203"),
        ("adt-a01-v251-unsupported-type.hl7", "AR", "MSH^1^9^1", "200"),
    ],
)
def test_refusals_carry_an_err_naming_segment_field_and_code(
    listener: MllpListener,
    medbridge: MedBridge,
    name: str,
    code: str,
    location: str,
    error_code: str,
) -> None:
    with MllpClient("127.0.0.1", listener.port) as client:
        ack = parse(client.send((FIXTURES / name).read_bytes()))
    assert ack.first("MSA").get(1) == code  # type: ignore[union-attr]
    err = ack.first("ERR")
    assert err is not None
    assert err.raw(2) == location
    assert err.get(3, 1) == error_code
    assert count(medbridge, bus_events) == 0


def test_unknown_ndc_is_parked_then_applied_once_after_the_cross_reference(
    listener: MllpListener, medbridge: MedBridge
) -> None:
    code, _, text = send(listener, FIXTURES / "rds-o13-v251-unknown-ndc.hl7")
    assert code == "AA"
    assert "accepted for review" in text
    with medbridge.engine.connect() as conn:
        [parked] = exception_store.listing(conn)
    assert parked.problems[0]["field"] == "item"
    assert parked.problems[0]["value"] == "12345-6789-01"
    assert count(medbridge, bus_events) == 0
    # resending before the fix changes nothing
    assert send(listener, FIXTURES / "rds-o13-v251-unknown-ndc.hl7")[0] == "AA"
    with medbridge.engine.begin() as conn:
        medbridge.masterdata.link_code(
            conn, "VANCO-1G", ItemCode(system=CodeSystem.NDC, code="12345-6789-01")
        )
    assert medbridge.inbound.replay(parked.id, actor="test").outcome.value == "accepted"
    assert count(medbridge, bus_events) == 1
    # a resend after the replay is a duplicate, not a second movement
    assert "duplicate" in send(listener, FIXTURES / "rds-o13-v251-unknown-ndc.hl7")[2]
    assert count(medbridge, bus_events) == 1


def test_unmapped_codes_can_be_acknowledged_ae(medbridge: MedBridge) -> None:
    map_hl7_sources(medbridge)
    with running_listener(medbridge, unmapped_ack="AE") as listener:
        code, location, text = send(listener, FIXTURES / "rds-o13-v251-unknown-ndc.hl7")
    assert (code, location) == ("AE", "RXD^1^2^1")
    assert "unknown NDC" in text
    assert "exception" in text


def test_framing_junk_and_many_messages_on_one_connection(listener: MllpListener) -> None:
    message = (FIXTURES / "rds-o13-v29-unsupported-version.hl7").read_bytes()
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as raw:
        raw.sendall(
            b"garbage before the frame"
            + b"\x0b"
            + message
            + b"\x1c\x0d"
            + b"\x0b"
            + message
            + b"\x1c\x0d"
        )
        received = b""
        while received.count(b"\x1c\x0d") < 2:
            received += raw.recv(65536)
    assert received.count(b"MSA|AR|CAB0006") == 2


CANARIES = (
    "Zzyzxcanary",
    "Philomena",
    "MRN-CANARY-4411",
    "19420317",
    "1942-03-17",
    "Canary Lane",
    "V-778899",
)


def test_no_patient_identity_leaves_the_connector(
    listener: MllpListener, medbridge: MedBridge, capfd: pytest.CaptureFixture[str]
) -> None:
    opening_stock(medbridge)
    for name in (
        "rds-o13-v251-vancomycin-lot.hl7",
        "rds-o13-v251-unknown-ndc.hl7",
        "dft-p03-v251-drape.hl7",
        "adt-a01-v251-unsupported-type.hl7",
    ):
        send(listener, FIXTURES / name)
    medbridge.consumers["ledger"].drain()
    tables = (
        "bus_events",
        "inbound_exceptions",
        "ledger_movements",
        "journal_entries",
        "bus_dead_letters",
    )
    with medbridge.engine.connect() as conn:
        stored = " ".join(
            str(row) for table in tables for row in conn.exec_driver_sql(f"SELECT * FROM {table}")
        )
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        answers = " ".join(
            client.get(path).text
            for path in ("/v1/stock", "/v1/journal-entries", "/v1/exceptions", "/v1/dead-letters")
        )
    logs = capfd.readouterr()
    assert "V2611A" in stored  # the check can see what did travel
    for canary in CANARIES:
        assert canary not in stored, canary
        assert canary not in answers, canary
        assert canary not in logs.out + logs.err, canary


def _last_movement_event(mb: MedBridge) -> dict[str, object]:
    import json

    with mb.engine.connect() as conn:
        payload = conn.execute(
            select(bus_events.c.payload)
            .where(bus_events.c.type.like("inventory.%"))
            .order_by(bus_events.c.seq.desc())
        ).first()
    assert payload is not None
    data: dict[str, object] = json.loads(payload[0])
    return data


def test_strict_mode_refuses_what_hl7apy_refuses_without_quoting_values(
    medbridge: MedBridge,
) -> None:
    map_hl7_sources(medbridge)
    with running_listener(medbridge, strict_validation=True) as listener:
        assert send(listener, FIXTURES / "rds-o13-v251-vancomycin-lot.hl7")[0] == "AA"
        code, location, text = send(listener, SAMPLES / "msft-fhirconverter-RDS-O13-01.hl7")
        assert (code, location) == ("AE", "PID^1^5^1")
        assert "strict validation" in text
        code, location, text = send(listener, SAMPLES / "lfh-DFT-P03-v26-minimal-with-IN1.hl7")
        assert code == "AE"
        assert "does not match its HL7 data type" in text
        assert "X" not in text.split(":")[-1]  # the offending value is not quoted back


@pytest.mark.parametrize(
    ("field", "value", "location"),
    [
        ("code", "\u2028", "RXD^1^2^1"),  # a code of only a line separator: empty once stripped
        ("code", "C" * 65, "RXD^1^2^1"),  # longer than an item code may be
        ("when", "20261120100000+2500", "RXD^1^3^1"),  # no such time-zone offset
    ],
)
def test_content_the_canonical_model_refuses_is_acknowledged_ae_not_ar(
    listener: MllpListener, medbridge: MedBridge, field: str, value: str, location: str
) -> None:
    """AR would have the sender resend the same bytes for ever; AE names the field."""
    text = (FIXTURES / "rds-o13-v251-vancomycin-lot.hl7").read_text(encoding="utf-8")
    rxd = next(line for line in text.replace("\n", "\r").split("\r") if line.startswith("RXD"))
    fields = rxd.split("|")
    if field == "code":
        fields[2] = value + fields[2][fields[2].index("^") :]
    else:
        fields[3] = value
    hostile = text.replace(rxd, "|".join(fields))
    with MllpClient("127.0.0.1", listener.port) as client:
        ack = parse(client.send(hostile.encode("utf-8")))
    msa, err = ack.first("MSA"), ack.first("ERR")
    assert msa is not None
    assert err is not None
    assert msa.get(1) == "AE"
    assert err.raw(2) == location
    assert count(medbridge, bus_events) == 0
