"""``/v1/contracts``: contracts with price tiers and validity, written audited through the
repository, bad input answered 422 naming the field (an overlap with another contract of the
same supplier, item and unit included), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import Contract
from medbridge.governance.permissions import Role
from medbridge.masterdata.repository import MasterDataError
from medbridge.store.tables import audit_log

pytestmark = pytest.mark.db

GAUZE = {
    "supplier": "MEDSURG",
    "item": "DRAPE-SM",
    "unit": "BX",
    "price": {"amount": "12.00", "currency": "USD"},
    "valid_from": "2027-01-01",
    "valid_to": "2027-12-31",
    "tiers": [
        {"minimum_quantity": "10", "price": "11.50"},
        {"minimum_quantity": "50", "price": "11.00"},
    ],
}


@pytest.fixture
def api(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.clients.register("buyer", Role.PROCUREMENT)
        yield client


def put(api: TestClient, code: str, **changes: Any) -> Any:
    return api.put(f"/v1/contracts/{code}", json=GAUZE | changes)


def field_of(answer: Any) -> str:
    assert answer.status_code == 422, answer.text
    return str(answer.json()["detail"][0]["loc"][-1])


def test_a_contract_with_tiers_is_written_read_and_audited(
    medbridge: MedBridge, api: TestClient
) -> None:
    saved = put(api, "MEDSURG-DRAPE-BX")
    assert saved.status_code == 200, saved.text
    read = api.get("/v1/contracts/MEDSURG-DRAPE-BX").json()
    tiers = [(Decimal(t["minimum_quantity"]), Decimal(t["price"])) for t in read["tiers"]]
    assert tiers == [(Decimal(10), Decimal("11.50")), (Decimal(50), Decimal(11))]
    assert Decimal(read["price"]["amount"]) == Decimal("12")

    assert put(api, "MEDSURG-DRAPE-BX").status_code == 200  # the same again: no audit row
    changed = put(api, "MEDSURG-DRAPE-BX", tiers=[{"minimum_quantity": "20", "price": "11"}])
    assert changed.status_code == 200
    with medbridge.engine.connect() as conn:
        rows = list(
            conn.execute(
                select(audit_log).where(
                    audit_log.c.target_id == "MEDSURG-DRAPE-BX",
                    audit_log.c.action == "masterdata.contract.save",
                )
            )
        )
    assert [r.actor for r in rows] == ["buyer", "buyer"]
    read = api.get("/v1/contracts/MEDSURG-DRAPE-BX").json()
    assert [Decimal(t["minimum_quantity"]) for t in read["tiers"]] == [Decimal(20)]


def test_listing_filters_by_supplier_item_and_day(api: TestClient) -> None:
    assert put(api, "MEDSURG-DRAPE-BX").status_code == 200
    listed = api.get("/v1/contracts", params={"item": "DRAPE-SM"}).json()["contracts"]
    assert {c["code"] for c in listed} == {"MEDSURG-DRAPE-SM", "MEDSURG-DRAPE-BX"}
    on_day = api.get("/v1/contracts", params={"item": "DRAPE-SM", "valid_on": "2026-06-01"})
    assert {c["code"] for c in on_day.json()["contracts"]} == {"MEDSURG-DRAPE-SM"}
    mck = api.get("/v1/contracts", params={"supplier": "MCK"}).json()["contracts"]
    assert mck
    assert {c["supplier"] for c in mck} == {"MCK"}
    assert api.get("/v1/contracts/NOPE").status_code == 404


def test_an_overlapping_contract_is_refused_naming_the_field(api: TestClient) -> None:
    assert put(api, "MEDSURG-DRAPE-BX").status_code == 200
    starts_inside = put(api, "MEDSURG-DRAPE-BX-2", valid_from="2027-06-01", valid_to=None)
    assert field_of(starts_inside) == "valid_from"
    assert "MEDSURG-DRAPE-BX" in starts_inside.json()["detail"][0]["msg"]
    runs_into = put(api, "MEDSURG-DRAPE-BX-0", valid_from="2026-06-01", valid_to="2027-01-01")
    assert field_of(runs_into) == "valid_to"
    after = put(api, "MEDSURG-DRAPE-BX-2", valid_from="2028-01-01", valid_to=None)
    assert after.status_code == 200, "a contract that follows the last one is fine"
    other_unit = put(api, "MEDSURG-DRAPE-CA", unit="CA")
    assert other_unit.status_code == 200, "another unit is another contract"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"supplier": "NOBODY"}, "supplier"),
        ({"item": "NO-SUCH-ITEM"}, "item"),
        ({"unit": "PALLET"}, "unit"),
        ({"supplier": "MED\x00SURG"}, "supplier"),
        ({"item": "X" * 65}, "item"),
        ({"valid_to": "2026-01-01"}, "valid_to"),
        ({"price": {"amount": "-1", "currency": "USD"}}, "price"),
        ({"price": {"amount": "1" * 30, "currency": "USD"}}, "amount"),
        ({"tiers": [{"minimum_quantity": "10", "price": "13"}]}, "tiers"),
        ({"tiers": [{"minimum_quantity": "1", "price": "11"}]}, "tiers"),
        ({"tiers": [{"minimum_quantity": "0", "price": "11"}]}, "minimum_quantity"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    api: TestClient, changes: dict[str, Any], field: str
) -> None:
    assert field_of(put(api, "MEDSURG-DRAPE-BX", **changes)) == field
    assert api.get("/v1/contracts/MEDSURG-DRAPE-BX").status_code == 404, "nothing written"


def test_a_bad_code_in_the_path_is_a_422(api: TestClient) -> None:
    assert api.put("/v1/contracts/" + "C" * 65, json=GAUZE).status_code == 422
    assert api.put("/v1/contracts/A%00B", json=GAUZE).status_code == 422


def test_contracts_are_every_facilitys(medbridge: MedBridge, api: TestClient) -> None:
    bound = medbridge.clients.register("h1-buyer", Role.PROCUREMENT, facilities=["H1"])
    headers = {"X-API-Key": bound}
    assert api.get("/v1/contracts", headers=headers).status_code == 403
    assert api.put("/v1/contracts/X", json=GAUZE, headers=headers).status_code == 403
    reader = medbridge.clients.register("ap", Role.AP_CLERK)
    assert api.get("/v1/contracts", headers={"X-API-Key": reader}).status_code == 403
    finance = medbridge.clients.register("fin", Role.FINANCE)
    assert api.get("/v1/contracts", headers={"X-API-Key": finance}).status_code == 200
    refused = api.put("/v1/contracts/X", json=GAUZE, headers={"X-API-Key": finance})
    assert refused.status_code == 403
    assert "contracts:write" in refused.json()["detail"]


def test_two_writers_of_overlapping_contracts_one_is_refused(medbridge: MedBridge) -> None:
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def write(code: str) -> None:
        terms = Contract(
            code=code,
            supplier="MEDSURG",
            item="DRAPE-SM",
            unit="BX",
            price=Money(amount=Decimal("12")),
            valid_from=date(2027, 1, 1),
        )
        start.wait()
        try:
            with medbridge.engine.begin() as conn:
                medbridge.masterdata.save_contract(conn, terms, actor="racer")
            outcomes.append("saved")
        except MasterDataError as error:
            outcomes.append(error.field)

    racers = [threading.Thread(target=write, args=(f"RACE-{n}",)) for n in (1, 2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(outcomes) == ["saved", "valid_from"]
