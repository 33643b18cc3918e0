"""Canonical models: code normalisation and the movement's own consistency rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from medbridge.canonical import EventEnvelope, ItemCode, JournalEntry, StockMovement
from medbridge.canonical.codes import CodeError, gs1_check_digit, normalize_gtin, normalize_ndc


@pytest.mark.parametrize(
    ("raw", "shape", "expected"),
    [
        ("0069-2587-10", None, "00069258710"),  # 4-4-2 (vancomycin, FHIR meddisp0301)
        ("12345-678-90", None, "12345067890"),  # 5-3-2
        ("12345-6789-1", None, "12345678901"),  # 5-4-1
        ("00047-0402-30", None, "00047040230"),  # already 5-4-2, dashed
        ("00047040230", None, "00047040230"),  # 11 digits
        ("0143963401", "4-4-2", "00143963401"),  # undashed 10 digits with its shape
        ("1234567890", "5-3-2", "12345067890"),
        ("1234567890", "5-4-1", "12345678900"),
    ],
)
def test_ndc_shapes_normalise_to_11_digits(raw: str, shape: str | None, expected: str) -> None:
    assert normalize_ndc(raw, shape) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("01151327", "8 digits"),  # the RDS^O13 sample's "NDC"
        ("0143963401", "ambiguous"),
        ("73056-017", "only digits"),  # product-level NDC, no package segment
        ("0069-2587-1A", "only digits"),
        ("123-4567-89", "only digits"),  # a 3-digit labeler is no NDC shape
    ],
)
def test_bad_ndcs_are_refused_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(CodeError, match=reason):
        normalize_ndc(raw)


def test_gtin_check_digit_and_padding() -> None:
    assert normalize_gtin("30387698433527") == "30387698433527"
    assert normalize_gtin("7032069804988") == "07032069804988"
    with pytest.raises(CodeError, match="check digit 8 is wrong, expected 1"):
        normalize_gtin("50387698433528")  # the HIBCC 832 sample's case GTIN


@given(st.text(alphabet="0123456789", min_size=7, max_size=13))
def test_any_body_with_its_check_digit_is_a_valid_gtin(body: str) -> None:
    code = body + str(gs1_check_digit(body))
    if len(code) in (8, 12, 13, 14):
        assert normalize_gtin(code) == code.zfill(14)


def test_item_codes_normalise_on_the_way_in() -> None:
    assert ItemCode(system="ndc", code="0069-2587-10").code == "00069258710"
    with pytest.raises(ValidationError, match="needs an issuer"):
        ItemCode(system="supplier_sku", code="1000")


BASE = {
    "kind": "dispense",
    "item": "VANCO-1G",
    "location": "H1-PHARM",
    "quantity": "2",
    "unit": "VIAL",
    "occurred_at": "2026-11-22T10:00:00Z",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quantity": "0"}, "greater than zero"),
        ({"kind": "count_adjustment", "quantity": "0"}, "cannot be zero"),
        ({"kind": "transfer"}, "to_location"),
        ({"to_location": "H2-PHARM"}, "only for a transfer"),
        ({"kind": "transfer", "to_location": "H1-PHARM"}, "another location"),
        ({"kind": "receipt"}, "unit cost"),
        ({"occurred_at": "2026-11-22T10:00:00"}, "timezone"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_inconsistent_movements_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StockMovement.model_validate(BASE | change)


def test_count_adjustment_may_be_negative() -> None:
    loss = StockMovement.model_validate(BASE | {"kind": "count_adjustment", "quantity": "-3"})
    assert loss.quantity == Decimal(-3)


def test_envelope_correlation_defaults_to_its_own_id_and_type_is_versioned() -> None:
    movement = StockMovement.model_validate(BASE)
    envelope = EventEnvelope[StockMovement](
        type=movement.event_type,
        source="test",
        subject="VANCO-1G@H1-PHARM",
        idempotency_key="k",
        data=movement,
    )
    assert envelope.correlation_id == envelope.id
    assert envelope.id.version == 7
    with pytest.raises(ValidationError, match="type"):
        EventEnvelope[StockMovement](
            type="Dispensed", source="t", subject="s", idempotency_key="k", data=movement
        )


def test_unbalanced_journal_entries_cannot_exist() -> None:
    line = {"account": "1400-H1", "facility": "H1"}
    with pytest.raises(ValidationError, match="does not balance"):
        JournalEntry.model_validate(
            {
                "entry_id": "JE-1",
                "posting_date": "2026-11-22",
                "description": "x",
                "source_event_id": "e",
                "correlation_id": "c",
                "lines": [
                    line | {"debit": "10.00"},
                    line | {"account": "5100-H1", "credit": "9.99"},
                ],
            }
        )
