"""The message store's pure parts: the SQLite time text of the hot path equals what Core
binds (or equal times would compare unequal in keyset pages), cursors round-trip and refuse
what they did not make, and HL7 / FHIR masking hides the patient."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from medbridge.flows.messages import mask
from medbridge.store.messages import Cursor, sqlite_time
from medbridge.store.tables import messages


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 1, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_the_hot_paths_time_text_is_cores(at: datetime) -> None:
    dialect = sqlite.dialect()
    core = messages.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert core is not None
    assert sqlite_time(at) == core(at)


def test_cursors_round_trip_and_refuse_forgeries() -> None:
    cursor = Cursor(datetime(2026, 12, 1, 8, 30, tzinfo=UTC), "01a24a18-c2da-74df")
    assert Cursor.decode(cursor.encode()) == cursor
    for forged in ("", "zzz", "bm90IGEgY3Vyc29y", Cursor(cursor.received_at, "").encode()):
        with pytest.raises(ValueError, match="cursor"):
            Cursor.decode(forged)


def test_masking_hides_the_patient() -> None:
    hl7 = (
        "MSH|^~\\&|A|H1|B|N|2026||RDS^O13|1|P|2.5.1\r"
        "PID|1||MRN1^^^H1||DOE^JANE||19800101|F|||ADDR||555\r"
        "NK1|1|DOE^JOHN|SPO\r"
        + "|".join(["PV1", "1", "I", "ICU^12^A", *[""] * 15, "V-77"])
        + "\r"
        + "RXD|1|0069-2587-10^Vanco^NDC\r"
    )
    shown = mask("hl7v2", "x-application/hl7-v2+er7", hl7)
    for secret in ("MRN1", "DOE", "19800101", "ADDR", "555", "V-77"):
        assert secret not in shown
    assert "ICU^12^A" in shown
    assert "0069-2587-10" in shown
    fhir = json.dumps(
        {
            "resourceType": "MedicationDispense",
            "subject": {"display": "Jane"},
            "contained": [{"resourceType": "Patient", "name": [{"family": "Doe"}]}],
            "quantity": {"value": 1},
        }
    )
    shown = mask("fhir", "application/fhir+json", fhir)
    assert "Jane" not in shown
    assert "Doe" not in shown
    assert '"value": 1' in shown
    assert "withheld" in mask("fhir", "application/fhir+xml", "<MedicationDispense/>")
