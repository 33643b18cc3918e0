"""GS1 receiving scans: every shared sample decodes to its listed fields or is refused with
its listed reason; the scan maps to a receipt line that the resolver resolves or parks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.inbound import InboundOutcome, ItemCodeKind
from medbridge.canonical.movements import MovementKind
from medbridge.connectors.gs1 import Gs1Config, MissingSeparatorPolicy, parse, to_receipt_line
from medbridge.connectors.gs1.errors import (
    AmbiguousWithoutSeparator,
    BadCheckDigit,
    Expired,
    Gs1Error,
    InvalidDate,
    LeftoverData,
    Malformed,
    NoGtin,
)
from medbridge.masterdata.inbound import InboundResolver
from medbridge.masterdata.repository import CrossReferences
from paths import SAMPLES

SAMPLE_FILE = SAMPLES / "gs1" / "gs1-element-strings.jsonl"
SAMPLE_ROWS = [json.loads(line) for line in SAMPLE_FILE.read_text().splitlines() if line.strip()]
WEDGE = Gs1Config(separator_substitutes=("|",))

# What each sample's "decoded"/"note" says, made checkable. A dict = the fields it decodes to;
# a tuple = (error class, reason fragment) it is refused with.
EXPECTED: dict[str, dict[str, Any] | tuple[type[Gs1Error], str]] = {
    "biip-1": {"gtin": "07032069804988", "best_before": date(2021, 5, 26), "lot": "0329"},
    # Greedy reading is lot=032915210526 (checked below with ACCEPT_GREEDY); refused by default.
    "biip-2": (AmbiguousWithoutSeparator, "(10)0329(15)210526"),
    "biip-3": {"gtin": "07032069804988", "lot": "0329", "best_before": date(2021, 5, 26)},
    "biip-4": {"gtin": "07032069804988", "lot": "0329", "best_before": date(2021, 5, 26)},
    "biip-5": (Malformed, "(8003)"),
    "biip-6": (LeftoverData, "'aaa'"),
    "biip-7": (InvalidDate, "(11)"),
    "biip-8": (InvalidDate, "(15)"),
    "dhis2-1": (AmbiguousWithoutSeparator, "missing group separator after (21)"),
    "pharmadm-1": (AmbiguousWithoutSeparator, "(10)HB5R(21)587E4QA11R"),
    "actipro-1": {"gtin": "09521234543213", "expiry": date(2025, 1, 1), "lot": "ABC123"},
    "gs1-dm-guideline": {"gtin": "09501101530003", "expiry": date(2014, 7, 4), "lot": "AB-123"},
    "epc-tds-sscc": {"sscc": "106141412345678908", "gtin": None},
    "ndc-gtin-1": {"gtin": "00300692587101"},
    "ndc-gtin-2": {
        "gtin": "00300020800018",
        "expiry": date(2026, 6, 30),
        "lot": "L12345",
        "serial": "SN0001",
    },
    "expiry-day00": {"gtin": "09521234543213", "expiry": date(2025, 12, 31), "lot": "LOT9"},
    "bad-check-digit": (BadCheckDigit, "Expected 3"),
}
SCAN_FIELDS = ("gtin", "sscc", "lot", "expiry", "best_before", "serial", "quantity")


def test_every_sample_has_an_expectation() -> None:
    assert {row["id"] for row in SAMPLE_ROWS} == set(EXPECTED)
    assert len(SAMPLE_ROWS) == 17


@pytest.mark.parametrize("row", SAMPLE_ROWS, ids=[row["id"] for row in SAMPLE_ROWS])
def test_sample_decodes_or_is_refused(row: dict[str, Any]) -> None:
    expected = EXPECTED[row["id"]]
    if isinstance(expected, tuple):
        error, fragment = expected
        with pytest.raises(error) as caught:
            parse(row["raw"], WEDGE)
        assert fragment in caught.value.reason
        return
    scan = parse(row["raw"], WEDGE)
    wanted = {name: expected.get(name) for name in SCAN_FIELDS}
    assert {name: getattr(scan, name) for name in SCAN_FIELDS} == wanted
    assert dict(scan.other) == {}


@pytest.mark.parametrize(
    "row",
    [r for r in SAMPLE_ROWS if isinstance(EXPECTED[r["id"]], dict)],
    ids=lambda r: r["id"],
)
def test_hri_form_decodes_the_same(row: dict[str, Any]) -> None:
    raw, hri = parse(row["raw"], WEDGE), parse(row["hri"])
    assert (hri.elements, dict(hri.other)) == (raw.elements, dict(raw.other))
    assert [getattr(hri, n) for n in SCAN_FIELDS] == [getattr(raw, n) for n in SCAN_FIELDS]
    assert parse(hri.hri) == hri.__class__(**{**hri.__dict__, "raw": hri.hri})


def test_hri_spells_out_what_a_raw_scan_cannot() -> None:
    (row,) = [r for r in SAMPLE_ROWS if r["id"] == "dhis2-1"]
    scan = parse(row["hri"])
    assert (scan.serial, scan.lot, scan.expiry) == ("10081996195256", "DXB2005", date(2022, 2, 28))
    assert parse("(01)07032069804988(10)032915210526").lot == "032915210526"


def test_symbology_identifier_is_kept() -> None:
    scan = parse("]d201095011015300031714070410AB-123")
    assert (scan.symbology, scan.gtin) == ("]d2", "09501101530003")


def test_separator_substitute_only_when_configured() -> None:
    with pytest.raises(LeftoverData, match=r"\|15210526"):
        parse("0107032069804988100329|15210526")
    assert parse("0107032069804988100329|15210526", WEDGE).lot == "0329"
    assert parse("0107032069804988100329\x1d15210526\r\n").lot == "0329"


@pytest.mark.parametrize("bad", ["A", "1", "-", "\x1d", "||"])
def test_a_substitute_that_can_occur_in_gs1_data_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="separator substitute"):
        Gs1Config(separator_substitutes=(bad,))


def test_greedy_policy_takes_the_conformant_reading_and_keeps_the_other() -> None:
    greedy = Gs1Config(missing_separator=MissingSeparatorPolicy.ACCEPT_GREEDY)
    scan = parse("010703206980498810032915210526", greedy)
    assert (scan.lot, scan.best_before) == ("032915210526", None)
    assert "(10)0329(15)210526" in scan.ambiguities
    with pytest.raises(AmbiguousWithoutSeparator):  # a failed greedy parse is still refused
        parse("]d20108470006991541211008199619525610DXB200517220228", greedy)


def test_quantity_and_unmapped_elements() -> None:
    scan = parse("0109521234543213\x1d3712\x1d24011-22\x1d10L1")
    assert (scan.quantity, scan.lot, dict(scan.other)) == (12, "L1", {"240": "11-22"})


def test_empty_and_non_gs1_scans_are_malformed() -> None:
    for scan in ["", "  ", "hello", "(01)0952123454321"]:
        with pytest.raises(Malformed):
            parse(scan)


# --- mapping ------------------------------------------------------------------------------

RECEIVED = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
SOURCE = "gs1:H1-DOCK"


def line(raw: str, **more: Any) -> Any:
    return to_receipt_line(
        parse(raw), location="DOCK", source_system=SOURCE, received_at=RECEIVED, **more
    )


def test_receipt_line_carries_gtin_lot_expiry() -> None:
    draft = line("01003000208000181726063010L12345\x1d21SN0001")
    assert draft.kind is MovementKind.RECEIPT
    assert (draft.item.kind, draft.item.code) == (ItemCodeKind.GTIN, "00300020800018")
    assert (draft.lot, draft.expiry, draft.quantity) == ("L12345", date(2026, 6, 30), Decimal(1))
    assert draft.unit_cost is None  # receiving against a PO supplies it
    assert draft.reason == "serial SN0001"


def test_quantity_from_the_scan_unless_given() -> None:
    assert line("0109521234543213\x1d3712").quantity == Decimal(12)
    assert line("0109521234543213\x1d3712", quantity=3).quantity == Decimal(3)


def test_expired_product_is_refused_unless_allowed() -> None:
    raw = "01095212345432131725010110ABC123"  # expiry 2025-01-01, received 2025-06-01
    with pytest.raises(Expired, match="expired on 2025-01-01"):
        line(raw)
    assert line(raw, config=Gs1Config(refuse_expired=False)).expiry == date(2025, 1, 1)
    assert line(raw, config=Gs1Config(today=date(2024, 12, 31))).lot == "ABC123"
    with pytest.raises(Expired):  # best before counts when there is no expiry
        line("010703206980498815210526100329")


def test_sscc_label_is_no_receipt_line() -> None:
    with pytest.raises(NoGtin):
        line("00106141412345678908")


@pytest.fixture
def dock(medbridge: MedBridge) -> MedBridge:
    with medbridge.engine.begin() as conn:
        CrossReferences.map_location(conn, SOURCE, "DOCK", "H1-PHARM")
    return medbridge


@pytest.mark.db
def test_unknown_gtin_is_parked_in_the_exception_queue(dock: MedBridge) -> None:
    draft = line("01095212345432131725120010LOT9", config=Gs1Config(today=date(2025, 6, 1)))
    receipt = dock.inbound.receive([draft], source=SOURCE, idempotency_key="gs1-test-unknown")
    assert receipt.outcome is InboundOutcome.EXCEPTION
    assert receipt.exception_id is not None
    assert [(p.field, p.value, p.reason) for p in receipt.problems] == [
        ("item", "09521234543213", "unknown GTIN")
    ]


@pytest.mark.db
def test_known_pack_gtin_resolves_to_item_and_pack_unit(dock: MedBridge) -> None:
    draft = line("0130387698433527\x1d3702").model_copy(
        update={"unit_cost": Money(amount=Decimal("14.70"))}  # as the PO line supplies it
    )
    [movement], problems = InboundResolver(dock.masterdata).resolve_current([draft])
    assert problems == []
    assert (movement.item, movement.unit, movement.quantity) == ("DRAPE-SM", "BX", Decimal(2))
    assert movement.location == "H1-PHARM"
