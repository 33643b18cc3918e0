"""GNU Health connector without a server: a recorded ``stock.move`` answer -> InboundMovement,
Tryton's value encoding, and the client's error translation (httpx.MockTransport)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from medbridge.canonical.inbound import ItemCodeKind
from medbridge.canonical.movements import MovementKind
from medbridge.connectors.gnuhealth import (
    GnuHealthAuthError,
    GnuHealthClient,
    GnuHealthConfig,
    GnuHealthProtocolError,
    GnuHealthServerError,
    GnuHealthUnavailable,
    encounter_ref,
    idempotency_key,
    parse,
)
from medbridge.connectors.gnuhealth.codec import decode, encode
from medbridge.connectors.gnuhealth.mapping import MOVE_FIELDS, modified_at

SECRET = "unit-test-secret-0123456789abcdef"

# One record of `model.stock.move.search_read` with MOVE_FIELDS, as trytond 7.0 answered it
# for a dispense recorded by peers/gnuhealth/record_dispense.py.
RECORDED = json.loads(
    """
{"id": 4, "state": "done",
 "write_date": {"__class__": "datetime", "year": 2026, "month": 11, "day": 22,
                "hour": 3, "minute": 23, "second": 48, "microsecond": 355502},
 "create_date": {"__class__": "datetime", "year": 2026, "month": 11, "day": 22,
                 "hour": 3, "minute": 23, "second": 48, "microsecond": 262588},
 "effective_date": {"__class__": "date", "year": 2026, "month": 11, "day": 22},
 "quantity": 2.0,
 "origin": "gnuhealth.prescription.order,1",
 "product.": {"code": "VANCO-1G-GH", "id": 1, "name": "Vancomycin 1 g powder for infusion"},
 "unit.": {"symbol": "u", "id": 1},
 "lot.": {"number": "VAN-LOT-A1", "id": 1,
          "expiration_date": {"__class__": "date", "year": 2027, "month": 12, "day": 27}},
 "from_location.": {"code": "STO", "id": 3}}
"""
)


def config(**overrides: Any) -> GnuHealthConfig:
    values: dict[str, Any] = {
        "url": "http://127.0.0.1:8000/",
        "database": "health",
        "password": "pw",
        "pseudonym_secret": SECRET,
        **overrides,
    }
    return GnuHealthConfig(**values)


def record(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RECORDED)
    raw.update(changes)
    decoded: dict[str, Any] = decode(raw)
    return decoded


# --- mapping -------------------------------------------------------------------------------


def test_a_recorded_dispense_maps_to_an_inbound_movement() -> None:
    movement = parse(record(), config())
    assert movement.source_system == "gnuhealth:health"
    assert movement.kind is MovementKind.DISPENSE
    assert movement.item.kind is ItemCodeKind.LOCAL
    assert movement.item.code == "VANCO-1G-GH"
    assert movement.item.text == "Vancomycin 1 g powder for infusion"
    assert movement.location == "STO"
    assert movement.quantity == Decimal("2.0")
    assert movement.unit == "u"
    assert movement.lot == "VAN-LOT-A1"
    assert movement.expiry == date(2027, 12, 27)
    assert movement.occurred_at == datetime(2026, 11, 22, 3, 23, 48, 355502, tzinfo=UTC)
    assert movement.to_location is None
    expected = hmac.new(SECRET.encode(), b"gnuhealth:health:1", hashlib.sha256).hexdigest()[:32]
    assert movement.encounter_ref == expected


def test_the_idempotency_key_is_frozen() -> None:
    assert idempotency_key("health", 4) == "gnuhealth:health:stock.move:4"


def test_the_encounter_pseudonym_depends_on_key_database_and_prescription() -> None:
    ref = encounter_ref(b"k" * 16, "health", 1)
    assert len(ref) == 32
    assert int(ref, 16) >= 0
    assert ref == encounter_ref(b"k" * 16, "health", 1)
    assert ref != encounter_ref(b"j" * 16, "health", 1)
    assert ref != encounter_ref(b"k" * 16, "other", 1)
    assert ref != encounter_ref(b"k" * 16, "health", 2)


def test_no_patient_field_is_ever_requested() -> None:
    assert not [f for f in MOVE_FIELDS if f.startswith("origin.")]
    for forbidden in ("patient", "party", "name", "ref", "dob", "puid"):
        assert not [f for f in MOVE_FIELDS if forbidden in f.split(".")[0]], forbidden


def test_a_move_without_lot_has_no_lot_and_no_expiry() -> None:
    movement = parse(record(**{"lot.": None}), config())
    assert movement.lot is None
    assert movement.expiry is None


def test_codes_missing_at_the_source_become_its_record_ids_and_park_later() -> None:
    movement = parse(
        record(
            **{
                "product.": {"code": None, "id": 9, "name": None},
                "from_location.": {"code": None, "id": 3},
            }
        ),
        config(),
    )
    assert movement.item.code == "product:9"
    assert movement.item.text is None
    assert movement.location == "location:3"


def test_a_back_dated_dispense_occurs_at_noon_utc_of_its_effective_date() -> None:
    raw = record(effective_date={"__class__": "date", "year": 2026, "month": 11, "day": 20})
    assert parse(raw, config()).occurred_at == datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_a_move_never_written_after_creation_uses_its_create_date() -> None:
    raw = record(write_date=None)
    assert modified_at(raw) == datetime(2026, 11, 22, 3, 23, 48, 262588, tzinfo=UTC)
    with pytest.raises(GnuHealthProtocolError, match="write_date"):
        modified_at(record(write_date=None, create_date=None))


def test_float_quantities_keep_their_decimal_spelling() -> None:
    assert parse(record(quantity=0.1), config()).quantity == Decimal("0.1")
    assert parse(record(quantity=1.23456789), config()).quantity == Decimal("1.234568")
    assert parse(record(quantity=3), config()).quantity == Decimal(3)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"origin": "sale.line,3"}, "origin"),
        ({"origin": None}, "origin"),
        ({"quantity": None}, "quantity"),
        ({"quantity": "2"}, "quantity"),
        ({"product.": None}, "product"),
        ({"product.": 1}, "product"),
        ({"from_location.": None}, "from_location"),
    ],
)
def test_a_record_not_shaped_like_a_dispense_is_a_protocol_error(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(GnuHealthProtocolError, match=f"stock.move 4: {field}"):
        parse(record(**changes), config())


def test_a_site_whose_product_codes_are_ndcs_says_so_in_its_config() -> None:
    raw = record(**{"product.": {"code": "00409-4332-01", "id": 2, "name": "Ceftriaxone"}})
    movement = parse(raw, config(item_code_kind=ItemCodeKind.NDC))
    assert movement.item.kind is ItemCodeKind.NDC
    assert movement.item.code == "00409-4332-01"


# --- config --------------------------------------------------------------------------------


def test_config_defaults_and_derived_names(tmp_path: Path) -> None:
    c = config(var_dir=tmp_path)
    assert c.source_system == "gnuhealth:health"
    assert c.event_source == "gnuhealth/health"
    assert c.rpc_url == "http://127.0.0.1:8000/health/"
    assert c.cursor_file == tmp_path / "connectors" / "gnuhealth" / "gnuhealth_health.cursor.json"
    assert "pw" not in repr(c)
    assert SECRET not in repr(c)
    assert config(source_system="H1^GNUHEALTH").source_system == "H1^GNUHEALTH"


def test_config_refuses_a_short_pseudonym_key() -> None:
    with pytest.raises(ValidationError, match="pseudonym_secret"):
        config(pseudonym_secret="short")


# --- Tryton's value encoding -----------------------------------------------------------------


def test_decode_and_encode_tryton_values() -> None:
    assert decode({"__class__": "Decimal", "decimal": "72.50"}) == Decimal("72.50")
    assert decode([{"a": {"__class__": "date", "year": 2026, "month": 1, "day": 2}}]) == [
        {"a": date(2026, 1, 2)}
    ]
    stamp = datetime(2026, 1, 2, 3, 4, 5, 6)
    assert decode(encode(stamp)) == stamp
    assert encode([("write_date", ">", stamp)])[0][2]["microsecond"] == 6
    with pytest.raises(ValueError, match="naive"):
        encode(stamp.replace(tzinfo=UTC))


@pytest.mark.parametrize(
    "value",
    [{"__class__": "Frobnicate"}, {"__class__": "Decimal", "decimal": "x"}, {"__class__": "date"}],
)
def test_undecodable_values_are_protocol_errors(value: dict[str, Any]) -> None:
    with pytest.raises(GnuHealthProtocolError):
        decode(value)


# --- client error translation (no server: httpx.MockTransport) --------------------------------


def client_answering(*answers: httpx.Response) -> tuple[GnuHealthClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return GnuHealthClient(config(), transport=httpx.MockTransport(handler)), seen


LOGIN = httpx.Response(200, json={"id": 1, "result": [1, "s3ss10n"]})
PREFERENCES = httpx.Response(200, json={"id": 2, "result": {"company": 1}})


def test_login_sends_a_session_header_and_the_context() -> None:
    client, seen = client_answering(
        LOGIN, PREFERENCES, httpx.Response(200, json={"id": 3, "result": []})
    )
    assert client.search_read("stock.move", [], ["id"]) == []
    body = json.loads(seen[2].content)
    assert body["method"] == "model.stock.move.search_read"
    assert body["params"][-1] == {"company": 1}
    assert seen[2].headers["Authorization"].startswith("Session ")
    assert seen[2].url.path == "/health/"


def test_a_refused_login_is_an_auth_error() -> None:
    client, _ = client_answering(httpx.Response(401))
    with pytest.raises(GnuHealthAuthError, match="login refused"):
        client.login()


def test_an_expired_session_logs_in_again_once() -> None:
    again = httpx.Response(200, json={"id": 5, "result": [1, "new"]})
    client, seen = client_answering(
        LOGIN,
        PREFERENCES,
        httpx.Response(401),
        again,
        PREFERENCES,
        httpx.Response(200, json={"id": 7, "result": [{"id": 1}]}),
    )
    assert client.search_read("stock.move", [], ["id"]) == [{"id": 1}]
    assert [json.loads(r.content)["method"] for r in seen].count("common.db.login") == 2


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_server_side_failures_are_transient(status: int) -> None:
    client, _ = client_answering(httpx.Response(status))
    with pytest.raises(GnuHealthUnavailable) as caught:
        client.login()
    assert caught.value.status == status


def test_a_refused_connection_is_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = GnuHealthClient(config(), transport=httpx.MockTransport(refuse))
    with pytest.raises(GnuHealthUnavailable, match="ConnectError"):
        client.login()


def test_a_tryton_error_is_a_server_error_without_its_traceback() -> None:
    error = ["UserError", ["x" * 500, "description", None]]
    client, _ = client_answering(
        LOGIN, PREFERENCES, httpx.Response(200, json={"id": 3, "error": error})
    )
    with pytest.raises(GnuHealthServerError) as caught:
        client.search_read("stock.move", [], ["id"])
    assert caught.value.tryton_error == "UserError"
    assert "x" * 201 not in str(caught.value)

    crash = ["'nofield'", "Traceback (most recent call last): secret internals"]
    client, _ = client_answering(
        LOGIN, PREFERENCES, httpx.Response(200, json={"id": 3, "error": crash})
    )
    with pytest.raises(GnuHealthServerError) as caught:
        client.search_read("stock.move", [("nofield", "=", 1)], ["id"])
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json=[1]),
        httpx.Response(200, json={"id": 1}),
        httpx.Response(404),
        httpx.Response(400),
    ],
)
def test_answers_that_make_no_sense_are_protocol_errors(answer: httpx.Response) -> None:
    client, _ = client_answering(answer)
    with pytest.raises(GnuHealthProtocolError):
        client.login()


def test_rate_limited_and_concurrency_errors_are_transient() -> None:
    for error in (["RateLimitException"], [], ["ConcurrencyException", "locked"]):
        client, _ = client_answering(
            LOGIN, PREFERENCES, httpx.Response(200, json={"id": 3, "error": error})
        )
        with pytest.raises(GnuHealthUnavailable):
            client.search_read("stock.move", [], ["id"])
