"""The catalog of APIs and event streams, the AsyncAPI document, and deprecation headers
(issue 15, "Catalog and contracts")."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medbridge.app import MedBridge
from medbridge.canonical.movements import EVENT_TYPES
from medbridge.governance.catalog import DEPRECATIONS, STREAMS
from medbridge.governance.permissions import Role

pytestmark = pytest.mark.db

CLOUDEVENTS_EXTENSION = re.compile(r"^[a-z0-9]{1,20}$")
CLOUDEVENTS_CONTEXT = {"specversion", "id", "source", "type", "subject", "time"}
CLOUDEVENTS_OPTIONAL = {"datacontenttype", "dataschema", "data"}


@pytest.fixture
def api(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.clients.register("integrator", Role.READER)
        yield client


def test_the_catalog_lists_every_api_and_stream_with_owner_version_status(
    api: TestClient,
) -> None:
    body = api.get("/v1/catalog").json()
    documented = {
        (m.upper(), p) for p, item in api.get("/openapi.json").json()["paths"].items() for m in item
    }
    listed = {(o["method"], o["path"]) for a in body["apis"] for o in a["operations"]}
    assert listed == documented  # every operation belongs to a catalogued API
    for entry in body["apis"]:
        assert entry["owner"]
        assert entry["version"]
        assert entry["status"] in ("active", "deprecated")
    streams = {s["name"]: s for s in body["event_streams"]}
    movement_types = set(streams["inventory.movements"]["event_types"])
    assert movement_types == set(EVENT_TYPES.values())
    bundle = next(
        o
        for a in body["apis"]
        for o in a["operations"]
        if (o["method"], o["path"]) == ("POST", "/fhir/r4/Bundle")
    )
    assert bundle == {
        "method": "POST",
        "path": "/fhir/r4/Bundle",
        "status": "deprecated",
        "sunset": "2027-06-30",
        "successor": "/fhir/r4",
    }


def test_a_deprecated_route_says_so_on_every_answer(api: TestClient) -> None:
    [deprecation] = DEPRECATIONS
    answer = api.post("/fhir/r4/Bundle", content=b"{}", headers={"X-API-Key": "nobody"})
    assert answer.status_code == 401  # even a refusal carries the headers
    since = datetime(2026, 12, 6, tzinfo=UTC)  # RFC 9745: "@" and epoch seconds
    assert answer.headers["deprecation"] == f"@{int(since.timestamp())}"
    sunset = parsedate_to_datetime(answer.headers["sunset"])
    assert sunset.date() == deprecation.sunset
    assert answer.headers["link"] == '</fhir/r4>; rel="successor-version"'
    assert "deprecation" not in api.get("/v1/stock").headers
    operation = api.get("/openapi.json").json()["paths"]["/fhir/r4/Bundle"]["post"]
    assert operation["deprecated"] is True


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_asyncapi_document_covers_every_event_type_and_resolves(api: TestClient) -> None:
    document = api.get("/v1/catalog/asyncapi.json").json()
    assert document["asyncapi"] == "3.0.0"
    assert document["defaultContentType"] == "application/cloudevents+json"
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert names == {t for s in STREAMS for t in s.event_types}
    for ref in _refs(document):  # every reference points inside the document
        assert ref.startswith("#/")
        assert _resolve(document, ref) is not None
    channel = document["channels"]["events"]
    assert channel["address"] == "medbridge.events.{partition}"
    assert set(channel["parameters"]) == {"partition"}
    operation = document["operations"]["receiveEvents"]
    assert operation["action"] == "receive"
    assert len(operation["messages"]) == len(names)
    json.dumps(document)  # plain JSON


def test_envelope_attributes_are_cloudevents_names(api: TestClient) -> None:
    document = api.get("/v1/catalog/asyncapi.json").json()
    payload = document["components"]["messages"]["inventory_dispensed_v1"]["payload"]
    attributes = set(payload["properties"])
    assert attributes >= CLOUDEVENTS_CONTEXT
    for extension in attributes - CLOUDEVENTS_CONTEXT - CLOUDEVENTS_OPTIONAL:
        assert CLOUDEVENTS_EXTENSION.match(extension), extension
    assert {"correlationid", "causationid", "idempotencykey"} <= attributes


def test_the_catalog_needs_catalog_read(medbridge: MedBridge) -> None:
    pharmacist = medbridge.clients.register("pharmacist", Role.PHARMACY)
    with TestClient(medbridge.api()) as client:
        assert client.get("/v1/catalog").status_code == 401
        denied = client.get("/v1/catalog", headers={"X-API-Key": pharmacist})
        assert denied.status_code == 403


def test_every_reference_of_the_openapi_document_resolves(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    refs = _refs(document)
    assert "#/components/schemas/MovementIn" in refs
    for ref in refs:
        assert _resolve(document, ref) is not None, ref
