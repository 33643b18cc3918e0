"""Every route of the OpenAPI document, walked: anonymous callers get 401, a client whose roles
lack the route's permission gets 403, and a client bound to another facility gets 403 or only
its own facility's data (issue 15, "Done when" 1).

The permission a route needs is what it declares (``api.auth.require``); this test checks that
every documented operation declares one (or is one of the few open ones) and that the
declaration is enforced, for every role of ``governance.permissions``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from medbridge.app import MedBridge
from medbridge.governance.permissions import ROLE_PERMISSIONS, Permission, Role
from rest_movements import movement as rest_movement

pytestmark = pytest.mark.db

OPEN = {
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("POST", "/oauth/token"),  # authenticates the client itself (RFC 6749)
    ("POST", "/cxml"),  # authenticated by the cXML Sender credential and shared secret
}
PATH_VALUES = {
    "correlation_id": str(uuid.uuid4()),
    "exception_id": "1",
    "entry_id": "JE-unknown",
    "summary_id": "SUM-H1-1999-01-01T00",
    "item_id": "1",
    "reference": "PO00000001",
    "message_id": "unknown",
    "period": "2026-11",
    "code": "VANCO-1G",
    "lot": "NO-SUCH-LOT",
    "proposal_id": "1",
}
NOW = "2026-11-20T09:30:00+00:00"


def declared(api: FastAPI) -> dict[tuple[str, str], tuple[Permission, bool]]:
    """(method, path) -> (permission, shared) as each route declares it."""
    found: dict[tuple[str, str], tuple[Permission, bool]] = {}
    stack: list[Any] = list(api.router.routes)
    while stack:
        route = stack.pop()
        if hasattr(route, "original_router"):
            stack.extend(route.original_router.routes)
            continue
        if not isinstance(route, APIRoute):
            continue
        own = getattr(route.endpoint, "permission", None)  # a route that authorizes itself
        if own is not None:
            for method in route.methods:
                found[(method, route.path)] = (own, route.endpoint.shared)
        for dependency in route.dependant.dependencies:
            permission = getattr(dependency.call, "permission", None)
            if permission is not None:
                for method in route.methods:
                    found[(method, route.path)] = (permission, dependency.call.shared)
    return found


def operations(api: FastAPI) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in api.openapi()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def call(client: TestClient, method: str, path: str, **headers: str) -> int:
    body = {"json": {}} if method == "POST" else {}
    return client.request(method, concrete(path), headers=headers, **body).status_code


@pytest.fixture
def api(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as client:
        yield client


def test_every_documented_operation_declares_a_permission_or_is_open(
    medbridge: MedBridge,
) -> None:
    app = medbridge.api()
    table = declared(app)
    documented = operations(app)
    assert len(documented) >= 30
    undeclared = [op for op in documented if op not in table and op not in OPEN]
    assert undeclared == []
    assert not [op for op in OPEN if op in table]


def test_anonymous_callers_get_401_on_every_keyed_route(
    medbridge: MedBridge, api: TestClient
) -> None:
    table = declared(api.app)  # type: ignore[arg-type]
    answers = {op: call(api, *op) for op in table}
    assert {op: code for op, code in answers.items() if code != 401} == {}
    wrong = {op: call(api, *op, **{"X-API-Key": "not-a-key"}) for op in table}
    assert set(wrong.values()) == {401}
    forged = {op: call(api, *op, Authorization="Bearer not.a.token") for op in table}
    assert set(forged.values()) == {401}
    assert all(call(api, *op) != 401 for op in OPEN)


@pytest.mark.parametrize("role", list(Role))
def test_a_role_lacking_a_routes_permission_gets_403(
    medbridge: MedBridge, api: TestClient, role: Role
) -> None:
    key = medbridge.clients.register(f"walker-{role.value}", role)
    granted = ROLE_PERMISSIONS[role]
    checked = 0
    for (method, path), (permission, _) in declared(api.app).items():  # type: ignore[arg-type]
        code = call(api, method, path, **{"X-API-Key": key})
        if permission in granted:
            assert code not in (401, 403), (role, method, path, code)
        else:
            assert code == 403, (role, method, path, code)
            checked += 1
    if role is not Role.ADMIN:
        assert checked > 0


def test_work_decisions_need_the_queues_permission(medbridge: MedBridge, api: TestClient) -> None:
    from medbridge.canonical.tasks import Action, NewTask, WorkQueue

    item = medbridge.work_queues().open(
        NewTask(
            key="walk:ap",
            queue=WorkQueue.AP,
            kind="price_variance",
            subject="invoice 1",
            reason="a variance",
            actions=(Action.APPROVE,),
            facility="H1",
        )
    )
    pharmacy = medbridge.clients.register("pharmacist", Role.PHARMACY)
    clerk = medbridge.clients.register("clerk", Role.AP_CLERK)
    decision = {"action": "approve"}
    url = f"/v1/work-items/{item.id}/decision"
    refused = api.post(url, json=decision, headers={"X-API-Key": pharmacy})
    assert refused.status_code == 403
    assert "work:ap" in refused.json()["detail"]
    assert api.post(url, json=decision, headers={"X-API-Key": clerk}).status_code == 200


# --- facility scopes ---------------------------------------------------------------------


def movement(key: str, kind: str, location: str, quantity: str = "5") -> dict[str, Any]:
    return rest_movement(key, kind, location, quantity, lot="V1", at=NOW)


@pytest.fixture
def two_facilities(medbridge: MedBridge, api: TestClient) -> dict[str, str]:
    """Stock and journal entries in H1 and H2; keys of an unbound admin and of an H1 client
    holding every permission."""
    admin = medbridge.ensure_admin_key()[0]
    body = [
        movement("r1", "receipt", "H1-PHARM", "50"),
        movement("r2", "receipt", "H2-PHARM", "50"),
        movement("d1", "dispense", "H1-PHARM"),
        movement("d2", "dispense", "H2-PHARM"),
    ]
    assert (
        api.post("/v1/stock-movements", json=body, headers={"X-API-Key": admin}).status_code == 202
    )
    medbridge.consumers["ledger"].drain()
    h1 = medbridge.clients.register("h1-everything", Role.ADMIN, facilities=["H1"])
    return {"admin": admin, "h1": h1}


def test_a_client_bound_to_a_facility_reads_only_it(
    api: TestClient, two_facilities: dict[str, str]
) -> None:
    h1, admin = {"X-API-Key": two_facilities["h1"]}, {"X-API-Key": two_facilities["admin"]}
    everywhere = {r["location"] for r in api.get("/v1/stock", headers=admin).json()["items"]}
    assert {"H1-PHARM", "H2-PHARM"} <= everywhere
    mine = {r["location"] for r in api.get("/v1/stock", headers=h1).json()["items"]}
    assert mine == {"H1-PHARM"}
    lines = [
        line["facility"]
        for entry in api.get("/v1/journal-entries", headers=h1).json()["items"]
        for line in entry["lines"]
    ]
    assert lines
    assert set(lines) == {"H1"}
    all_lines = {
        line["facility"]
        for entry in api.get("/v1/journal-entries", headers=admin).json()["items"]
        for line in entry["lines"]
    }
    assert all_lines == {"H1", "H2"}
    facilities = api.get("/v1/ledger/reconciliation", headers=h1).json()["facilities"]
    assert {f["facility"] for f in facilities} == {"H1"}
    postings = api.get("/v1/erp-postings", headers=h1).json()
    assert sum(postings["counts"].values()) == 2  # H1's receipt and dispense
    assert sum(api.get("/v1/erp-postings", headers=admin).json()["counts"].values()) == 4


def test_a_client_bound_to_a_facility_cannot_write_elsewhere(
    medbridge: MedBridge, api: TestClient, two_facilities: dict[str, str]
) -> None:
    h1 = {"X-API-Key": two_facilities["h1"]}
    refused = api.post(
        "/v1/stock-movements",
        json=[movement("x1", "dispense", "H1-PHARM"), movement("x2", "dispense", "H2-PHARM")],
        headers=h1,
    )
    assert refused.status_code == 403
    assert refused.json()["detail"][0]["loc"] == ["body", 1, "location"]
    assert "H2" in refused.json()["detail"][0]["msg"]
    accepted = api.post(
        "/v1/stock-movements", json=movement("x3", "dispense", "H1-PHARM"), headers=h1
    )
    assert accepted.status_code == 202
    assert medbridge.consumers["ledger"].drain() == 1  # x1 and x2 never stored


def test_shared_resources_are_refused_to_a_bound_client(
    api: TestClient, two_facilities: dict[str, str]
) -> None:
    h1 = {"X-API-Key": two_facilities["h1"]}
    shared = [op for op, (_, is_shared) in declared(api.app).items() if is_shared]  # type: ignore[arg-type]
    assert ("GET", "/v1/dead-letters") in shared
    assert ("POST", "/v1/cross-references/items") in shared
    answers = {op: call(api, *op, **h1) for op in shared}
    assert {op: code for op, code in answers.items() if code != 403} == {}


def test_another_facilitys_work_item_and_trace_are_refused(
    medbridge: MedBridge, api: TestClient, two_facilities: dict[str, str]
) -> None:
    from medbridge.canonical.tasks import Action, NewTask, WorkQueue

    h1 = {"X-API-Key": two_facilities["h1"]}
    theirs = medbridge.work_queues().open(
        NewTask(
            key="h2-task",
            queue=WorkQueue.PHARMACY,
            kind="stock_discrepancy",
            subject="VANCO-1G@H2-PHARM",
            reason="short",
            actions=(Action.CLOSE,),
            facility="H2",
        )
    )
    assert api.get(f"/v1/work-items/{theirs.id}", headers=h1).status_code == 403
    decided = api.post(f"/v1/work-items/{theirs.id}/decision", json={"action": "close"}, headers=h1)
    assert decided.status_code == 403
    assert [i["id"] for i in api.get("/v1/work-items", headers=h1).json()["items"]] == []
    entries = api.get("/v1/journal-entries", headers={"X-API-Key": two_facilities["admin"]}).json()[
        "items"
    ]
    by_facility = {e["lines"][0]["facility"]: e["correlation_id"] for e in entries}
    assert api.get(f"/v1/trace/{by_facility['H1']}", headers=h1).status_code == 200
    assert api.get(f"/v1/trace/{by_facility['H2']}", headers=h1).status_code == 403
