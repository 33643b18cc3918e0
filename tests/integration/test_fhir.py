"""The FHIR R4 connector through the API: every sample of ../shared/samples/fhir, hand-written
R4 resources applied to stock, duplicates, the exception queue, Bundles, auth, and PHI.

Decisions the tests pin down:
- R4-shaped (R4B-valid) resources are taken; STU3 and R5 ones are refused (400,
  ``not-supported``) with the release named. The two dev-build MedicationDispense XMLs (between
  STU3 and R4) are recognised as STU3; the spec's SupplyDelivery XML is valid R4 but names its
  supplier and destination by display only, which cannot be cross-referenced (422).
- In a batch, resource types MedBridge does not take (Patient, Encounter ...) are answered
  ``200 OK`` with an informational "ignored" outcome, and never read.
- The FHIR Converter's RDS/DFT Bundles mark every dispense ``unknown`` and one dispense has no
  location: its client profile applies ``unknown`` and gives a default location.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.medicationdispense import MedicationDispense
from httpx import Response
from sqlalchemy import func, select

from medbridge.app import MedBridge
from medbridge.canonical.masterdata import CodeSystem, Item, ItemCategory, ItemCode, PackConversion
from medbridge.connectors.fhir import FhirClientProfile, FhirConfig
from medbridge.connectors.fhir.mapping import pseudonym
from medbridge.governance.clients import Role
from medbridge.masterdata.repository import CrossReferences
from medbridge.observability.logging import configure_logging
from medbridge.store.tables import bus_events, inbound_exceptions
from paths import SAMPLES

pytestmark = pytest.mark.db

FHIR_SAMPLES = SAMPLES / "fhir"
SECRET = "fhir-test-pseudonym-secret-0001"
NDC = "http://hl7.org/fhir/sid/ndc"
EHR = "fhir:ehr"  # the cross-reference namespace of the client "ehr"
CONVERTER = "fhir:converter"
JSON_CT = {"Content-Type": "application/fhir+json"}
XML_CT = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"}
XML_ONLY = {"Content-Type": "application/fhir+xml"}  # answered in XML, the request's format


@pytest.fixture
def keys(medbridge: MedBridge) -> dict[str, str]:
    return {
        "admin": medbridge.ensure_admin_key()[0],
        "ehr": medbridge.clients.register("ehr", Role.INTEGRATION),
        "converter": medbridge.clients.register("converter", Role.INTEGRATION),
        "reader": medbridge.clients.register("analytics", Role.READER),
    }


@pytest.fixture
def client(medbridge: MedBridge, keys: dict[str, str]) -> Iterator[TestClient]:
    api = medbridge.api()
    api.state.fhir_config = FhirConfig(
        pseudonym_secret=SECRET,
        clients={
            "converter": FhirClientProfile(
                applied_statuses=frozenset({"completed", "unknown"}),
                default_location="main-pharmacy",
            )
        },
    )
    with TestClient(api) as test_client:
        test_client.headers["X-API-Key"] = keys["ehr"]
        yield test_client


@pytest.fixture
def mapped(medbridge: MedBridge) -> None:
    """The ehr's locations mapped to MedBridge stores."""
    with medbridge.engine.begin() as conn:
        for code, store in {
            "Location/pharm-1": "H1-PHARM",
            "Location/icu-1": "H1-ICU",
            "Location/or-1": "H1-OR",
        }.items():
            CrossReferences.map_location(conn, EHR, code, store)
        CrossReferences.map_cost_center(conn, EHR, "Location/ward-4e", "H1-CC-ICU")


def receive_stock(
    client: TestClient, key: str, item: str, location: str, quantity: str, unit: str, **more: Any
) -> None:
    movement = {
        "idempotency_key": key,
        "kind": "receipt",
        "item": item,
        "location": location,
        "quantity": quantity,
        "unit": unit,
        "unit_cost": {"amount": "1.00"},
        "occurred_at": "2026-11-19T08:00:00+00:00",
        **more,
    }
    assert client.post("/v1/stock-movements", json=movement).status_code == 202


def dispense(
    rid: str | None = "md-1", ndc: str = "0069-2587-10", quantity: int = 2, **over: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med",
                "code": {"coding": [{"system": NDC, "code": ndc, "display": "Vancomycin 1 g"}]},
                "batch": {"lotNumber": "V2611A", "expirationDate": "2028-03"},
            }
        ],
        "medicationReference": {"reference": "#med"},
        "subject": {"reference": "Patient/p-1"},
        "context": {"reference": "Encounter/enc-77"},
        "location": {"reference": "Location/pharm-1"},
        "destination": {"reference": "Location/ward-4e"},
        "quantity": {"value": quantity, "unit": "vial", "code": "VIAL"},
        "whenHandedOver": "2026-11-20T10:00:00+00:00",
        **over,
    }
    if rid is not None:
        resource["id"] = rid
    return resource


def post(client: TestClient, path: str, body: Any, **headers: str) -> Response:
    return client.post(path, content=json.dumps(body), headers={**JSON_CT, **headers})


def on_hand(client: TestClient, **filters: str) -> Decimal:
    rows = client.get("/v1/stock", params=filters).json()["items"]
    return sum((Decimal(r["quantity"]) for r in rows), Decimal(0))


def events(mb: MedBridge) -> list[dict[str, Any]]:
    with mb.engine.connect() as conn:
        rows = conn.execute(select(bus_events.c.payload).order_by(bus_events.c.seq)).scalars()
        return [json.loads(r) for r in rows]


def count(mb: MedBridge, table: Any) -> int:
    with mb.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def issues(answer: Response) -> list[dict[str, Any]]:
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome", body
    found: list[dict[str, Any]] = body["issue"]
    return found


def expressions(answer: Response) -> set[str]:
    return {e for i in issues(answer) for e in i.get("expression", [])}


# --- the samples ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "content_type", "release"),
    [
        ("MedicationDispense-STU3-meddisp0303-msft-fhirconverter-sample.json", JSON_CT, "STU3"),
        ("Procedure-STU3-msft-fhirconverter-sample.json", JSON_CT, "STU3"),
        ("Procedure-example-appendectomy-hl7fhir-source-R5era.xml", XML_CT, "R5"),
        # dev builds between STU3 and R4: whoReference, isBrand, v3 URIs -> STU3
        ("MedicationDispense-meddisp0301-hl7fhir-source.xml", XML_CT, "STU3"),
        ("MedicationDispense-meddisp008-hl7fhir-source.xml", XML_CT, "STU3"),
    ],
)
def test_stu3_and_r5_samples_are_refused_naming_the_release(
    client: TestClient,
    medbridge: MedBridge,
    sample: str,
    content_type: dict[str, str],
    release: str,
) -> None:
    resource_type = sample.split("-")[0]
    answer = client.post(
        f"/fhir/r4/{resource_type}",
        content=(FHIR_SAMPLES / sample).read_bytes(),
        headers=content_type,
    )
    assert answer.status_code == 400
    head, *details = issues(answer)
    assert head["severity"] == "error"
    assert head["code"] == "not-supported"
    assert f"FHIR {release} {resource_type} recognised" in head["diagnostics"]
    assert "takes FHIR R4" in head["diagnostics"]
    assert details, "each R4 problem is listed with its path"
    assert all(d["expression"][0].startswith(resource_type) for d in details)
    assert count(medbridge, bus_events) == 0


def test_release_evidence_names_the_markers(client: TestClient) -> None:
    stu3 = FHIR_SAMPLES / "Procedure-STU3-msft-fhirconverter-sample.json"
    answer = client.post("/fhir/r4/Procedure", content=stu3.read_bytes(), headers=JSON_CT)
    assert "Procedure.notDone" in issues(answer)[0]["diagnostics"]
    assert "Procedure.notDone" in expressions(answer)
    r5 = FHIR_SAMPLES / "Procedure-example-appendectomy-hl7fhir-source-R5era.xml"
    answer = client.post("/fhir/r4/Procedure", content=r5.read_bytes(), headers=XML_CT)
    assert "Procedure.occurrenceDateTime" in expressions(answer)
    strict = FHIR_SAMPLES / "MedicationDispense-meddisp008-hl7fhir-source.xml"
    answer = client.post("/fhir/r4/MedicationDispense", content=strict.read_bytes(), headers=XML_CT)
    text = issues(answer)[0]["diagnostics"]
    assert "not valid STU3 either" in text  # performer.role exists in no release
    assert "MedicationDispense.performer[0].role" in expressions(answer)


def test_supplydelivery_sample_is_r4_but_names_places_by_display_only(
    client: TestClient, medbridge: MedBridge
) -> None:
    sample = FHIR_SAMPLES / "SupplyDelivery-simpledelivery-hl7fhir-source.xml"
    answer = client.post("/fhir/r4/SupplyDelivery", content=sample.read_bytes(), headers=XML_CT)
    assert answer.status_code == 422
    [issue] = issues(answer)
    assert issue["expression"] == ["SupplyDelivery.supplier"]
    assert "display name alone cannot be cross-referenced" in issue["diagnostics"]
    # asked for XML, answered in XML
    answer = client.post(
        "/fhir/r4/SupplyDelivery",
        content=sample.read_bytes(),
        headers={**XML_CT, "Accept": "application/fhir+xml"},
    )
    assert answer.headers["content-type"].startswith("application/fhir+xml")
    assert b'<expression value="SupplyDelivery.supplier"/>' in answer.content
    assert count(medbridge, bus_events) == 0


def _converter_master_data(medbridge: MedBridge, client: TestClient) -> None:
    """What an integration team maps before the converter feed goes live."""
    with medbridge.engine.begin() as conn:
        medbridge.masterdata.save_item(
            conn,
            Item(
                code="DOXY-150",
                name="Doxycycline 150 mg tablet",
                category=ItemCategory.DRUG,
                base_unit="TAB",
                packs=(PackConversion(unit="BX", factor=Decimal(50)),),
            ),
        )
        medbridge.masterdata.save_item(
            conn,
            Item(
                code="ASA-EC",
                name="Aspirin EC capsule",
                category=ItemCategory.DRUG,
                base_unit="CAP",
                codes=(ItemCode(system=CodeSystem.NDC, code="0182-1061-05"),),
            ),
        )
        # the RDS "NDC" 01151327 is malformed: the Medication's SNOMED CT code is used
        medbridge.masterdata.link_code(
            conn, "DOXY-150", ItemCode(system=CodeSystem.LOCAL, code="418739006", issuer="SCT")
        )
        for code in ("Location/896d6f84-3737-b1f5-a6e2-2eb84bb9b098", "main-pharmacy"):
            CrossReferences.map_location(conn, CONVERTER, code, "H1-PHARM")
        CrossReferences.map_unit(conn, CONVERTER, "385055001", "TAB")  # SNOMED CT "Tablet"
        CrossReferences.map_unit(conn, CONVERTER, "Capsule", "CAP")
    receive_stock(client, "r-doxy", "DOXY-150", "H1-PHARM", "100", "TAB")
    receive_stock(client, "r-asa", "ASA-EC", "H1-PHARM", "100", "CAP")


def _statuses(answer: Response) -> list[str]:
    body = answer.json()
    assert body["resourceType"] == "Bundle"
    return [e["response"]["status"] for e in body["entry"]]


def test_converter_bundles_apply_their_dispenses(
    client: TestClient, medbridge: MedBridge, keys: dict[str, str]
) -> None:
    _converter_master_data(medbridge, client)
    converter = {"X-API-Key": keys["converter"]}
    rds = json.loads(
        (FHIR_SAMPLES / "Bundle-R4-from-RDS-O13-01-msft-fhirconverter-expected.json").read_text()
    )
    answer = post(client, "/fhir/r4", rds, **converter)
    assert answer.status_code == 200
    assert answer.json()["type"] == "batch-response"
    statuses = _statuses(answer)
    assert len(statuses) == len(rds["entry"]) == 119
    types = [e["resource"]["resourceType"] for e in rds["entry"]]
    applied = [i for i, s in enumerate(statuses) if s == "201 Created"]
    assert [types[i] for i in applied] == ["MedicationDispense", "MedicationDispense"]
    assert set(statuses) == {"201 Created", "200 OK"}
    patient = types.index("Patient")
    outcome = answer.json()["entry"][patient]["response"]["outcome"]
    assert "Patient ignored" in outcome["issue"][0]["diagnostics"]
    procedure = answer.json()["entry"][types.index("Procedure")]["response"]["outcome"]
    assert "no used items" in procedure["issue"][0]["diagnostics"]

    dft_path = FHIR_SAMPLES / "Bundle-R4-from-DFT-P03-01-msft-fhirconverter-expected.json"
    dft = json.loads(dft_path.read_text())
    statuses = _statuses(post(client, "/fhir/r4/Bundle", dft, **converter))
    assert statuses.count("201 Created") == 1  # its one MedicationDispense
    medbridge.consumers["ledger"].drain()
    assert on_hand(client, item="DOXY-150", location="H1-PHARM") == Decimal(90)
    assert on_hand(client, item="ASA-EC", location="H1-PHARM") == Decimal(90)  # 5 + 5

    again = post(client, "/fhir/r4", rds, **converter)
    assert _statuses(again).count("201 Created") == 0
    assert count(medbridge, bus_events) == 2 + 3
    # patient identity of the converted message never entered MedBridge
    stored = json.dumps(events(medbridge))
    for phi in ("EVERYMAN", "PATID1234", "1988-08-18", "Hospital Lane", "9e909e52"):
        assert phi not in stored
        assert phi not in answer.text


def test_converter_bundle_from_a_strict_client_applies_nothing(
    client: TestClient, medbridge: MedBridge
) -> None:
    rds = json.loads(
        (FHIR_SAMPLES / "Bundle-R4-from-RDS-O13-01-msft-fhirconverter-expected.json").read_text()
    )
    answer = post(client, "/fhir/r4/Bundle", rds)
    entries = answer.json()["entry"]
    dispenses = [
        entries[i]["response"]
        for i, e in enumerate(rds["entry"])
        if e["resource"]["resourceType"] == "MedicationDispense"
    ]
    assert [d["status"] for d in dispenses] == ["200 OK", "200 OK"]
    assert "status 'unknown'" in dispenses[0]["outcome"]["issue"][0]["diagnostics"]
    assert count(medbridge, bus_events) == 0


# --- hand-written R4 resources -------------------------------------------------------------


def test_dispense_lowers_stock_and_a_resend_has_no_second_effect(
    client: TestClient, medbridge: MedBridge, mapped: None
) -> None:
    receive_stock(
        client, "r-1", "VANCO-1G", "H1-PHARM", "100", "VIAL", lot="V2611A", expiry="2028-03-31"
    )
    answer = post(client, "/fhir/r4/MedicationDispense", dispense())
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"].endswith("/fhir/r4/MedicationDispense/md-1")
    assert answer.headers["content-type"].startswith("application/fhir+json")
    [info] = issues(answer)
    assert info["severity"] == "information"
    event_id = events(medbridge)[-1]["id"]
    assert event_id in info["diagnostics"]
    medbridge.consumers["ledger"].drain()
    stock = client.get("/v1/stock", params={"item": "VANCO-1G"}).json()["items"]
    assert stock == [
        {
            "item": "VANCO-1G",
            "location": "H1-PHARM",
            "lot": "V2611A",
            "expiry": "2028-03-31",
            "quantity": "98",
            "discrepancy": False,
        }
    ]
    data = events(medbridge)[-1]["data"]
    assert data["kind"] == "dispense"
    assert data["cost_center"] == "H1-CC-ICU"  # the destination ward
    assert data["encounter_ref"] == pseudonym(SECRET.encode(), EHR, "Encounter/enc-77")
    assert "enc-77" not in json.dumps(events(medbridge))

    again = post(client, "/fhir/r4/MedicationDispense", dispense())
    assert again.status_code == 200
    assert issues(again)[0]["code"] == "duplicate"
    medbridge.consumers["ledger"].drain()
    assert on_hand(client, item="VANCO-1G") == Decimal(98)
    assert count(medbridge, bus_events) == 2


def test_xml_dispense_is_applied_like_json(
    client: TestClient, medbridge: MedBridge, mapped: None
) -> None:
    xml = MedicationDispense.model_validate(dispense("md-xml", quantity=3)).model_dump_xml()
    answer = client.post("/fhir/r4/MedicationDispense", content=xml, headers=XML_ONLY)
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+xml")
    assert b"<OperationOutcome" in answer.content
    data = events(medbridge)[-1]["data"]
    assert (data["item"], Decimal(data["quantity"]), data["lot"]) == ("VANCO-1G", 3, "V2611A")
    assert data["expiry"] == "2028-03-31"  # a month-year expiry runs to the month's end
    json_twin = post(client, "/fhir/r4/MedicationDispense", dispense("md-xml", quantity=3))
    assert json_twin.status_code == 200  # same resource id: a duplicate


def test_unknown_ndc_is_parked_then_applied_once_on_replay(
    client: TestClient, medbridge: MedBridge, keys: dict[str, str], mapped: None
) -> None:
    admin = {"X-API-Key": keys["admin"]}
    receive_stock(client, "r-1", "VANCO-1G", "H1-PHARM", "100", "VIAL", lot="V2611A")
    answer = post(client, "/fhir/r4/MedicationDispense", dispense("md-9", ndc="99999-0001-01"))
    assert answer.status_code == 201
    [warning] = issues(answer)
    assert warning["severity"] == "warning"
    assert warning["expression"] == ["MedicationDispense.contained[0].code.coding[0]"]
    assert "99999-0001-01" in warning["diagnostics"]
    exception_id = int(re.search(r"#(\d+)", warning["diagnostics"]).group(1))  # type: ignore[union-attr]
    [parked] = client.get("/v1/exceptions", headers=admin).json()["items"]
    assert parked["id"] == exception_id
    assert parked["source_system"] == EHR
    assert parked["problems"][0]["value"] == "99999-0001-01"
    assert parked["movements"][0]["item"]["code"] == "99999-0001-01"

    resent = post(client, "/fhir/r4/MedicationDispense", dispense("md-9", ndc="99999-0001-01"))
    assert resent.status_code == 200
    assert f"#{exception_id}" in issues(resent)[0]["diagnostics"]
    assert count(medbridge, inbound_exceptions) == 1

    mapping = {"system": "ndc", "code": "99999-0001-01", "item": "VANCO-1G"}
    assert client.post("/v1/cross-references/items", json=mapping, headers=admin).status_code == 201
    replay = client.post(f"/v1/exceptions/{exception_id}/replay", headers=admin).json()
    assert replay["outcome"] == "accepted"
    assert client.post(f"/v1/exceptions/{exception_id}/replay", headers=admin).status_code == 409
    after = post(client, "/fhir/r4/MedicationDispense", dispense("md-9", ndc="99999-0001-01"))
    assert after.status_code == 200
    medbridge.consumers["ledger"].drain()
    assert on_hand(client, item="VANCO-1G") == Decimal(98)
    assert count(medbridge, bus_events) == 2


def test_procedure_used_items_are_clinical_consumption(
    client: TestClient, medbridge: MedBridge, mapped: None
) -> None:
    receive_stock(client, "r-drape", "DRAPE-SM", "H1-OR", "100", "EA", lot="D-77")
    procedure = {
        "resourceType": "Procedure",
        "id": "proc-1",
        "status": "completed",
        "subject": {"reference": "Patient/p-1", "display": "Someone"},
        "encounter": {"reference": "Encounter/enc-77"},
        "location": {"reference": "Location/or-1"},
        "performedPeriod": {"start": "2026-11-20T08:00:00Z", "end": "2026-11-20T09:10:00Z"},
        "contained": [
            {
                "resourceType": "Device",
                "id": "drape",
                "udiCarrier": [{"deviceIdentifier": "30387698433527", "issuer": "urn:oid:1.3.160"}],
                "lotNumber": "D-77",
            }
        ],
        "usedReference": [{"reference": "#drape"}],  # one box of 5 (GTIN of the box)
        "usedCode": [
            {
                "extension": [
                    {
                        "url": FhirConfig().used_quantity_extension,
                        "valueQuantity": {"value": 3, "code": "EA"},
                    }
                ],
                "coding": [{"system": "https://www.gs1.org/gtin", "code": "30387698433527"}],
            }
        ],
    }
    answer = post(client, "/fhir/r4/Procedure", procedure)
    assert answer.status_code == 201, answer.text
    consumed = [e["data"] for e in events(medbridge) if e["data"]["kind"] == "clinical_consumption"]
    assert sorted((c["unit"], Decimal(c["quantity"]), c["lot"] or "") for c in consumed) == [
        ("BX", 1, "D-77"),  # usedReference: the contained Device's GS1 UDI is the box's GTIN
        ("EA", 3, ""),  # usedCode with the used-quantity extension
    ]
    assert all(c["encounter_ref"] == consumed[0]["encounter_ref"] for c in consumed)
    medbridge.consumers["ledger"].drain()
    assert on_hand(client, item="DRAPE-SM", location="H1-OR") == Decimal(100 - 5 - 3)
    assert all(c["occurred_at"].startswith("2026-11-20T09:10") for c in consumed)


def test_supply_delivery_is_a_transfer_between_stores(
    client: TestClient, medbridge: MedBridge, mapped: None
) -> None:
    receive_stock(client, "r-1", "VANCO-1G", "H1-PHARM", "100", "VIAL", lot="V2611A")
    delivery = {
        "resourceType": "SupplyDelivery",
        "id": "sd-1",
        "status": "completed",
        "patient": {"reference": "Patient/p-1"},
        "suppliedItem": {
            "quantity": {"value": 10, "code": "VIAL"},
            "itemReference": {"reference": "#med"},
        },
        "contained": dispense()["contained"],
        "occurrenceDateTime": "2026-11-20",
        "supplier": {"reference": "Location/pharm-1"},
        "destination": {"reference": "Location/icu-1"},
    }
    answer = post(client, "/fhir/r4/SupplyDelivery", delivery)
    assert answer.status_code == 201, answer.text
    medbridge.consumers["ledger"].drain()
    assert on_hand(client, location="H1-ICU", lot="V2611A") == Decimal(10)
    assert on_hand(client, location="H1-PHARM") == Decimal(90)
    unmapped = {**delivery, "id": "sd-2", "supplier": {"reference": "Organization/vendor-1"}}
    warning = issues(post(client, "/fhir/r4/SupplyDelivery", unmapped))[0]
    assert warning["expression"] == ["SupplyDelivery.supplier"]


def test_supply_delivery_without_supplier_is_parked_for_review_then_filled_in(
    client: TestClient, medbridge: MedBridge, keys: dict[str, str], mapped: None
) -> None:
    """``supplier`` is 0..1 in R4: a delivery without one is valid, but where the stock came
    from is unknown. It is parked (201 with a warning naming SupplyDelivery.supplier), not
    refused; a reviewer fills the place in (the sender's code) and it applies once."""
    admin = {"X-API-Key": keys["admin"]}
    receive_stock(client, "r-1", "VANCO-1G", "H1-PHARM", "100", "VIAL", lot="V2611A")
    delivery = {
        "resourceType": "SupplyDelivery",
        "id": "sd-nosupplier",
        "status": "completed",
        "suppliedItem": {
            "quantity": {"value": 10, "code": "VIAL"},
            "itemReference": {"reference": "#med"},
        },
        "contained": dispense()["contained"],
        "occurrenceDateTime": "2026-11-20",
        "destination": {"reference": "Location/icu-1"},
    }
    answer = post(client, "/fhir/r4/SupplyDelivery", delivery)
    assert answer.status_code == 201, answer.text
    [warning] = issues(answer)
    assert warning["severity"] == "warning"
    assert warning["expression"] == ["SupplyDelivery.supplier"]
    exception_id = int(re.search(r"#(\d+)", warning["diagnostics"]).group(1))  # type: ignore[union-attr]
    [parked] = client.get("/v1/exceptions", headers=admin).json()["items"]
    assert parked["id"] == exception_id
    assert parked["problems"][0]["field"] == "location"
    assert parked["movements"][0]["location"] is None
    assert parked["movements"][0]["to_location"] == "Location/icu-1"
    resent = post(client, "/fhir/r4/SupplyDelivery", delivery)
    assert resent.status_code == 200
    assert count(medbridge, inbound_exceptions) == 1
    medbridge.consumers["ledger"].drain()
    assert on_hand(client, location="H1-ICU") == Decimal(0)  # nothing applied while parked

    fill = f"/v1/exceptions/{exception_id}/fill"
    given = client.post(
        fill, json={"field": "location", "value": "Location/x", "index": 1}, headers=admin
    )
    assert given.status_code == 422
    assert given.json()["detail"][0]["loc"] == ["body", "index"]
    unknown = client.post(
        fill, json={"field": "location", "value": "Location/nowhere"}, headers=admin
    )
    assert unknown.status_code == 200
    assert unknown.json()["outcome"] == "exception"  # the sender's code must resolve
    assert unknown.json()["problems"][0]["value"] == "Location/nowhere"
    # what is filled in is no longer left out: it is not overwritten
    again = client.post(
        fill, json={"field": "location", "value": "Location/pharm-1"}, headers=admin
    )
    assert again.status_code == 422
    assert again.json()["detail"][0]["loc"] == ["body", "location"]
    xref = {"source_system": EHR, "code": "Location/nowhere", "target": "H1-PHARM"}
    assert (
        client.post("/v1/cross-references/locations", json=xref, headers=admin).status_code == 201
    )
    replay = client.post(f"/v1/exceptions/{exception_id}/replay", headers=admin).json()
    assert replay["outcome"] == "accepted"
    closed = client.post(
        fill, json={"field": "location", "value": "Location/pharm-1"}, headers=admin
    )
    assert closed.status_code == 409
    medbridge.consumers["ledger"].drain()
    assert on_hand(client, location="H1-ICU", lot="V2611A") == Decimal(10)
    assert on_hand(client, location="H1-PHARM") == Decimal(90)
    assert post(client, "/fhir/r4/SupplyDelivery", delivery).status_code == 200  # applied once
    audited = client.get("/v1/audit", params={"action": "inbound_exception.fill"}, headers=admin)
    assert [e["actor"] for e in audited.json()["items"]] == ["admin"]


def test_statuses_that_move_no_stock(
    client: TestClient, medbridge: MedBridge, mapped: None
) -> None:
    answer = post(client, "/fhir/r4/MedicationDispense", dispense(status="in-progress"))
    assert answer.status_code == 200
    assert "nothing applied" in issues(answer)[0]["diagnostics"]
    answer = post(client, "/fhir/r4/MedicationDispense", dispense(status="entered-in-error"))
    assert answer.status_code == 422
    assert expressions(answer) == {"MedicationDispense.status"}
    assert count(medbridge, bus_events) == 0


# --- Bundles --------------------------------------------------------------------------------


def bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-0000-0000-00000000000{i}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for i, r in enumerate(resources)
        ],
    }


def test_transaction_with_one_bad_entry_stores_nothing(
    client: TestClient, medbridge: MedBridge, mapped: None
) -> None:
    no_quantity = dispense("md-2")
    del no_quantity["quantity"]
    answer = post(client, "/fhir/r4", bundle("transaction", dispense("md-1"), no_quantity))
    assert answer.status_code == 422
    assert "Bundle.entry[1].resource.quantity" in expressions(answer)

    unknown = dispense("md-3", ndc="99999-0001-01")
    answer = post(client, "/fhir/r4", bundle("transaction", dispense("md-1"), unknown))
    assert answer.status_code == 422
    assert "transaction refused, nothing stored" in issues(answer)[0]["diagnostics"]
    assert "Bundle.entry[1].resource.contained[0].code.coding[0]" in expressions(answer)
    stu3 = json.loads(
        (
            FHIR_SAMPLES / "MedicationDispense-STU3-meddisp0303-msft-fhirconverter-sample.json"
        ).read_text()
    )
    answer = post(client, "/fhir/r4/Bundle", bundle("transaction", dispense("md-1"), stu3))
    assert answer.status_code == 400
    assert "STU3" in answer.text
    assert count(medbridge, bus_events) == 0
    assert count(medbridge, inbound_exceptions) == 0  # a refused transaction is not parked

    good = bundle("transaction", dispense("md-1"), dispense("md-2", quantity=1))
    answer = post(client, "/fhir/r4", good)
    assert answer.status_code == 200
    assert answer.json()["type"] == "transaction-response"
    assert _statuses(answer) == ["201 Created", "201 Created"]
    assert count(medbridge, bus_events) == 2
    # the same resource sent alone later: the same key, no second effect
    assert (
        post(client, "/fhir/r4/MedicationDispense", dispense("md-2", quantity=1)).status_code == 200
    )
    assert _statuses(post(client, "/fhir/r4", good)) == ["200 OK", "200 OK"]
    assert count(medbridge, bus_events) == 2


def test_batch_answers_each_entry_on_its_own(
    client: TestClient, medbridge: MedBridge, mapped: None
) -> None:
    patient = {"resourceType": "Patient", "id": "p-1", "name": [{"family": "Nobody"}]}
    bad = dispense("md-bad")
    bad["quantity"] = {"value": "lots"}
    answer = post(client, "/fhir/r4", bundle("batch", dispense("md-1"), bad, patient))
    assert answer.status_code == 200
    assert _statuses(answer) == ["201 Created", "400 Bad Request", "200 OK"]
    outcome = answer.json()["entry"][1]["response"]["outcome"]
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.quantity.value"]
    assert answer.json()["entry"][0]["response"]["location"] == "MedicationDispense/md-1"
    assert count(medbridge, bus_events) == 1


def test_a_dispense_may_point_into_its_bundle(
    client: TestClient, medbridge: MedBridge, mapped: None
) -> None:
    medication = dispense()["contained"][0] | {"id": "vanco"}
    resource = dispense("md-5")
    del resource["contained"]
    resource["medicationReference"] = {"reference": "Medication/vanco"}
    answer = post(client, "/fhir/r4", bundle("batch", medication, resource))
    assert _statuses(answer) == ["200 OK", "201 Created"]
    assert events(medbridge)[-1]["data"]["lot"] == "V2611A"


# --- refusals ---------------------------------------------------------------------------------


def test_wrong_or_missing_key_is_401_and_a_reader_is_403(
    client: TestClient, medbridge: MedBridge, keys: dict[str, str]
) -> None:
    for key in ("", "wrong"):
        answer = post(client, "/fhir/r4/MedicationDispense", dispense(), **{"X-API-Key": key})
        assert answer.status_code == 401
        assert issues(answer)[0]["code"] == "login"
    answer = post(client, "/fhir/r4", bundle("batch"), **{"X-API-Key": keys["reader"]})
    assert answer.status_code == 403
    assert issues(answer)[0]["code"] == "forbidden"
    assert count(medbridge, bus_events) == 0


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [
        (
            "/fhir/r4/MedicationDispense",
            b"{}",
            {"Content-Type": "text/plain"},
            415,
            "not-supported",
        ),
        ("/fhir/r4/MedicationDispense", b"{not json", JSON_CT, 400, "structure"),
        ("/fhir/r4/MedicationDispense", b'{"status": "completed"}', JSON_CT, 400, "structure"),
        ("/fhir/r4/Procedure", json.dumps(dispense()).encode(), JSON_CT, 400, "invalid"),
        ("/fhir/r4/MedicationDispense", b"<MedicationDispense", XML_CT, 400, "structure"),
        (
            "/fhir/r4/MedicationDispense",
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
            b'<MedicationDispense xmlns="http://hl7.org/fhir"><status value="&a;"/>'
            b"</MedicationDispense>",
            XML_CT,
            400,
            "security",
        ),
        (
            "/fhir/r4/MedicationDispense",
            json.dumps(dispense()).encode(),
            {"Content-Type": "application/fhir+json; fhirVersion=3.0"},
            400,
            "not-supported",
        ),
        ("/fhir/r4", json.dumps(bundle("collection")).encode(), JSON_CT, 400, "not-supported"),
        ("/fhir/r4/MedicationDispense", b" " * (6 * 1024 * 1024), JSON_CT, 413, "too-costly"),
    ],
)
def test_bad_requests_are_answered_with_an_operation_outcome(
    client: TestClient,
    medbridge: MedBridge,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert issues(answer)[0]["code"] == code
    assert count(medbridge, bus_events) == 0


def test_without_a_pseudonym_secret_the_connector_refuses_to_work(
    medbridge: MedBridge, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDBRIDGE_FHIR_PSEUDONYM_SECRET", raising=False)
    monkeypatch.delenv("MEDBRIDGE_CONFIG_FILE", raising=False)
    api = medbridge.api()
    api.state.fhir_config = FhirConfig()  # a deployment that wired no secret
    with TestClient(api) as bare:
        answer = post(bare, "/fhir/r4/MedicationDispense", dispense(), **{"X-API-Key": keys["ehr"]})
    assert answer.status_code == 503
    assert "MEDBRIDGE_FHIR_PSEUDONYM_SECRET" in issues(answer)[0]["diagnostics"]


# --- PHI ----------------------------------------------------------------------------------------

NAME, MRN, BIRTH = "Quixtrot", "MRN-86753-QX", "1931-07-14"


def canary(rid: str | None, ndc: str = "0069-2587-10", **over: Any) -> dict[str, Any]:
    resource = dispense(rid, ndc=ndc, **over)
    resource["contained"].append(
        {
            "resourceType": "Patient",
            "id": "pat",
            "identifier": [{"system": "urn:oid:1.2.3.4.mrn", "value": MRN}],
            "name": [{"family": NAME, "given": ["Zebulon"]}],
            "birthDate": BIRTH,
            "address": [{"line": ["12 Canary Row"]}],
        }
    )
    resource["subject"] = {
        "reference": "#pat",
        "display": f"Zebulon {NAME}",
        "identifier": {"value": MRN},
    }
    resource["receiver"] = [{"reference": "#pat", "display": f"{NAME} ({BIRTH})"}]
    resource["note"] = [{"text": f"for {NAME}, born {BIRTH}, {MRN}"}]
    return resource


def test_phi_canary_never_leaves_the_connector(
    client: TestClient,
    medbridge: MedBridge,
    keys: dict[str, str],
    mapped: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    configure_logging("DEBUG", json=True)
    admin = {"X-API-Key": keys["admin"]}
    answers = [
        post(client, "/fhir/r4/MedicationDispense", canary("md-c1")),  # applied
        post(client, "/fhir/r4/MedicationDispense", canary("md-c1")),  # duplicate
        # no id: the key comes from the identifier, which here is the MRN
        post(client, "/fhir/r4/MedicationDispense", canary(None, identifier=[{"value": MRN}])),
        post(client, "/fhir/r4/MedicationDispense", canary("md-c2", ndc="99999-0001-01")),
        post(client, "/fhir/r4", bundle("batch", canary("md-c3"), canary("md-c4"))),
    ]
    broken = canary("md-c5")
    broken["contained"][1]["birthDate"] = f"{BIRTH}T99"  # invalid: the error must not quote it
    broken["contained"][1]["name"][0]["family"] = 42
    answers.append(post(client, "/fhir/r4/MedicationDispense", broken))
    answers.append(post(client, "/fhir/r4", bundle("transaction", broken)))
    xml = MedicationDispense.model_validate(canary("md-c6")).model_dump_xml()
    answers.append(client.post("/fhir/r4/MedicationDispense", content=xml, headers=XML_CT))
    answers.append(client.get("/v1/exceptions", headers=admin))
    assert [a.status_code for a in answers] == [201, 200, 201, 201, 200, 400, 400, 201, 200]
    assert "contained[1].birthDate" in answers[5].text

    with medbridge.engine.connect() as conn:
        stored = [json.dumps([str(v) for v in row]) for row in conn.execute(select(bus_events))]
        stored += [
            json.dumps([str(v) for v in row]) for row in conn.execute(select(inbound_exceptions))
        ]
    assert len(stored) == 6  # 5 events + 1 parked message
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert "fhir.received" in logs  # the logs were written and looked at
    for place, text in (
        ("store", "\n".join(stored)),
        ("answers", "\n".join(a.text for a in answers)),
        ("logs", logs),
    ):
        for phi in (NAME, MRN, BIRTH, "Zebulon", "Canary Row"):
            assert phi not in text, f"{phi} found in {place}"
    assert date.fromisoformat(BIRTH)  # the canary itself is a real date


def test_hostile_bodies_are_4xx_naming_the_problem_never_a_500(client: TestClient) -> None:
    huge = "9" * 4301  # int() refuses it: once a 500 through the XML reader
    xml = (
        '<MedicationDispense xmlns="http://hl7.org/fhir"><status value="completed"/>'
        f'<dosageInstruction><sequence value="{huge}"/></dosageInstruction>'
        "</MedicationDispense>"
    )
    answer = client.post("/fhir/r4/MedicationDispense", content=xml, headers=XML_CT)
    assert answer.status_code == 400, answer.text
    assert "MedicationDispense.dosageInstruction[0].sequence" in expressions(answer)
    body = json.dumps(dispense("md-huge")).replace('"value": 2', f'"value": {huge}')
    assert huge in body
    answer = client.post("/fhir/r4/MedicationDispense", content=body, headers=JSON_CT)
    assert answer.status_code == 400, answer.text
    assert issues(answer)
