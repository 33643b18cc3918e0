"""The audit log's pure parts: canonical JSON, digests, the chain and its verification, and
the redaction of the settings a process records at its start."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from medbridge.canonical.partners import TradingPartner
from medbridge.domain.audit import (
    GENESIS,
    REDACTED,
    AuditEntry,
    ChainHead,
    canonical_json,
    changes,
    digest,
    plain,
    row_hash,
    verify_chain,
)
from medbridge.settings import Settings, effective_settings, redacted

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS
    for seq in range(1, n + 1):
        fields: dict[str, Any] = {
            "seq": seq,
            "at": T0 + timedelta(seconds=seq),
            "actor": "admin",
            "action": "xref.location.map",
            "target_type": "location_xref",
            "target_id": f"ehr/W{seq}",
            "before_digest": None,
            "after_digest": digest({"location": f"H1-{seq}"}),
            "detail": plain({"n": seq, "amount": Decimal("1.50")}),
        }
        entry = AuditEntry(**fields, prev_hash=prev, hash=row_hash(prev, **fields))
        entries.append(entry)
        prev = entry.hash
    return entries


def head_of(entries: list[AuditEntry]) -> ChainHead:
    return ChainHead(entries[-1].seq, entries[-1].hash) if entries else ChainHead(0, GENESIS)


def test_canonical_json_is_one_text_per_value() -> None:
    a = {"b": 1, "a": [Decimal("1.50"), T0], "c": "é"}
    b = {"c": "é", "a": [Decimal("1.5"), T0.astimezone(timezone(timedelta(hours=2)))], "b": 1}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == '{"a":["1.5","2026-12-01T09:00:00+00:00"],"b":1,"c":"é"}'
    assert canonical_json({"n": Decimal("100")}) == '{"n":"100"}'  # not 1E+2


def test_canonical_json_refuses_what_it_cannot_say_once() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical_json({"at": datetime(2026, 12, 1, 9, 0)})
    with pytest.raises(TypeError):
        canonical_json({"x": object()})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none()),
        max_size=6,
    )
)
def test_a_state_digest_survives_a_json_round_trip(state: dict[str, Any]) -> None:
    assert digest(plain(state)) == digest(state)
    assert digest(None) is None


def test_changes_name_the_fields_that_differ_and_hide_the_redacted() -> None:
    before = {"name": "Acme", "key_hash": "aa", "role": "reader"}
    after = {"name": "Acme", "key_hash": "bb", "role": "admin"}
    assert changes(before, after, redact=("key_hash",)) == {
        "before": {"key_hash": REDACTED, "role": "reader"},
        "after": {"key_hash": REDACTED, "role": "admin"},
    }
    assert changes(None, {"name": "Acme"}) == {"before": None, "after": {"name": "Acme"}}


@pytest.mark.parametrize("n", [0, 1, 5])
def test_an_intact_chain_verifies(n: int) -> None:
    entries = chain(n)
    result = verify_chain(entries, head_of(entries))
    assert (result.intact, result.verified) == (True, n)


def test_an_empty_log_may_lack_its_head() -> None:
    assert verify_chain([], None).intact


@pytest.mark.parametrize(
    "field",
    ["at", "actor", "action", "target_type", "target_id", "before_digest", "after_digest"],
)
def test_a_changed_field_breaks_the_chain_at_its_row(field: str) -> None:
    entries = chain(5)
    new = {
        "at": T0,
        "actor": "mallory",
        "action": "client.revoke",
        "target_type": "item",
        "target_id": "X",
        "before_digest": "f" * 64,
        "after_digest": None,
    }[field]
    entries[2] = dataclasses.replace(entries[2], **{field: new})
    result = verify_chain(entries, head_of(chain(5)))
    assert (result.broken_at, result.verified) == (3, 2)
    assert "content does not match its hash" in result.reason


def test_a_changed_detail_breaks_the_chain_a_reordered_one_does_not() -> None:
    entries = chain(3)
    entries[1] = dataclasses.replace(entries[1], detail={"n": 2, "amount": "1.51"})
    assert verify_chain(entries, head_of(chain(3))).broken_at == 2
    same = chain(3)
    same[1] = dataclasses.replace(same[1], detail={"amount": "1.5", "n": 2})  # key order only
    assert verify_chain(same, head_of(chain(3))).intact


def test_a_rehashed_row_breaks_the_link_to_the_next() -> None:
    """Whoever recomputes a changed row's hash breaks the next row's prev_hash."""
    entries = chain(4)
    forged = dataclasses.replace(entries[1], actor="mallory")
    entries[1] = dataclasses.replace(forged, hash=row_hash_of(forged))
    result = verify_chain(entries, head_of(chain(4)))
    assert result.broken_at == 3
    assert "prev_hash" in result.reason


def row_hash_of(entry: AuditEntry) -> str:
    fields = dataclasses.asdict(entry)
    prev = fields.pop("prev_hash")
    fields.pop("hash")
    return row_hash(prev, **fields)


def test_removed_rows_are_named() -> None:
    entries = chain(5)
    head = head_of(entries)
    middle = verify_chain(entries[:2] + entries[3:], head)
    assert (middle.broken_at, middle.reason) == (3, "row 3 is missing (the next row is 4)")
    first = verify_chain(entries[1:], head)
    assert first.broken_at == 1
    last = verify_chain(entries[:4], head)
    assert last.broken_at == 5
    assert "chain head records 5 row(s)" in last.reason
    all_gone = verify_chain([], head)
    assert all_gone.broken_at == 1


def test_a_head_that_does_not_close_the_chain_is_named() -> None:
    entries = chain(3)
    assert verify_chain(entries, None).reason == "the chain head record is missing"
    assert verify_chain(entries, ChainHead(3, "9" * 64)).broken_at == 3
    assert verify_chain(entries, ChainHead(2, entries[1].hash)).broken_at == 3


# --- the settings at a start, secrets redacted -----------------------------------------------


def test_every_secret_setting_is_redacted() -> None:
    settings = Settings(
        database_url="postgresql://medbridge:db-pass@db:5432/mb?sslmode=require&password=q-pass",
        bus_url="nats://user:nats-pass@nats:4222",
        admin_api_key=SecretStr("admin-key"),
        erp_password=SecretStr("erp-pass"),
        pseudonym_secret=SecretStr("hmac-key-9"),
        partners={
            "ACME": TradingPartner(
                code="ACME",
                name="Acme",
                x12_id="ACME",
                cxml_identity="acme",
                cxml_shared_secret=SecretStr("cxml-secret"),
            )
        },
    )
    found = effective_settings(settings)
    text = canonical_json(found)
    for secret in ("db-pass", "q-pass", "nats-pass", "admin-key", "erp-pass", "hmac-key-9"):
        assert secret not in text
    assert "cxml-secret" not in text
    assert found["database_url"] == (
        "postgresql://medbridge:<redacted>@db:5432/mb?sslmode=require&password=<redacted>"
    )
    assert found["bus_url"] == "nats://user:<redacted>@nats:4222"
    assert found["partners"]["ACME"]["cxml_shared_secret"] == REDACTED
    assert found["erp_user"] == "admin"  # what is not secret stays readable
    assert found["var_dir"] == "var"


def test_a_plain_setting_named_as_a_secret_is_redacted_too() -> None:
    assert redacted({"signing_token": "abc", "client_secret": "s", "name": "x"}) == {
        "signing_token": REDACTED,
        "client_secret": REDACTED,
        "name": "x",
    }
    assert redacted({"erp_password": None}) == {"erp_password": None}  # unset: say so
    assert redacted("sqlite:////var/lib/medbridge.db") == "sqlite:////var/lib/medbridge.db"
