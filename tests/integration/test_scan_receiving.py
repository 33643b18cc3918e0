"""Receiving by scan (``POST /v1/receiving/scans``) against a supplier's ship notice, through
the order's workflow and the fake ERP: real GS1 element strings from the shared samples
(``gs1-element-strings.jsonl``: the vancomycin and diluent NDC-GTINs, and the flawed ones as
typed per-scan errors) and generated ones (expiry two years ahead, serials, a (30) count, a
box GTIN). Matched lines are received once (stock by lot, GRNI, one ERP goods receipt), an
over-scan and an unknown GTIN are reported and not received, a resend changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from medbridge.canonical.masterdata import CodeSystem, ItemCode, PackConversion
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.demo.supplier_behaviour import Faults
from medbridge.flows import scan_receiving
from medbridge.governance.permissions import Permission, Principal, Role
from medbridge.settings import Settings
from medbridge.store import ledger as ledger_store
from medbridge.store import procurement as store
from paths import SAMPLES
from procurement_support import Harness, cycle_settings, fake_erp

pytestmark = pytest.mark.db

GS = "\x1d"
SAMPLE = {
    row["id"]: row["raw"]
    for row in map(json.loads, (SAMPLES / "gs1" / "gs1-element-strings.jsonl").open())
}
VANCO_GTIN = "00300692587101"  # sample ndc-gtin-1: NDC 0069-2587-10, the demo's VANCO-1G
VANCO_BOX_GTIN = "10300692587108"  # generated: a box of 10 vials (check digit 8)
DILUENT_GTIN = "00300020800018"  # sample ndc-gtin-2: NDC 0002-0800-01, DILUENT-10
UNKNOWN_GTIN = "09521234543213"  # sample actipro-1: GS1 prefix 952, for examples only
YYMMDD = (date.today() + timedelta(days=730)).strftime("%y%m%d")
EXPIRY = date.today() + timedelta(days=730)


@pytest.fixture
def harness(engine: object, settings: Settings, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(cycle_settings(settings, tmp_path, auto_receive=False), Faults(), fake_erp())
    repo = h.mb.masterdata
    with h.mb.engine.begin() as conn:
        vanco = repo.items(conn, ["VANCO-1G"])["VANCO-1G"]
        box = PackConversion(unit="BX", factor=Decimal(10), gtin=VANCO_BOX_GTIN)
        repo.save_item(conn, vanco.model_copy(update={"packs": (box,)}), actor="test")
        repo.link_code(conn, "VANCO-1G", ItemCode(system=CodeSystem.GTIN, code=VANCO_GTIN))
        repo.link_code(conn, "DILUENT-10", ItemCode(system=CodeSystem.GTIN, code=DILUENT_GTIN))
    yield h
    h.mb.stop_workers()


def _shipped(h: Harness) -> tuple[str, str]:
    """An order of 60 VANCO-1G vials, its ship notice recorded and waiting for the dock."""
    reference = h.order()
    h.cycle.run_until(lambda: h.get(f"/v1/purchase-orders/{reference}")["status"] == "shipped")
    (notice,) = h.get(f"/v1/purchase-orders/{reference}")["receipts"]
    assert notice["status"] == "noticed"
    return reference, notice["shipment_id"]


SCANS: list[Any] = [
    SAMPLE["ndc-gtin-1"],  # 0: 1 vial, no lot
    f"]d201{VANCO_GTIN}17{YYMMDD}10LOTV1{GS}21SER0001",  # 1: serialised DataMatrix
    f"(01){VANCO_GTIN}(17){YYMMDD}(10)LOTV1(21)SER0002",  # 2: the same, parentheses form
    {"data": f"]C101{VANCO_GTIN}3040{GS}10LOTV2{GS}17{YYMMDD}", "id": "count-40"},  # 3: 40
    f"]C101{VANCO_BOX_GTIN}17{YYMMDD}10LOTB1",  # 4: a box: 10 vials (53 of 60)
    f"]C101{VANCO_BOX_GTIN}17{YYMMDD}10LOTB2",  # 5: another box: over (7 left)
    f"(01){UNKNOWN_GTIN}(17){YYMMDD}(10)ABC123",  # 6: unknown GTIN
    SAMPLE["ndc-gtin-2"],  # 7: the diluent, expired 2026-06-30
    f"]d201{DILUENT_GTIN}17{YYMMDD}10LOTD1{GS}21SND1",  # 8: a known item not ordered
    SAMPLE["bad-check-digit"],  # 9
    SAMPLE["biip-2"],  # 10: lot runs into a best-before: no separator
    SAMPLE["epc-tds-sscc"],  # 11: a pallet label, no GTIN
    f"]d201{VANCO_GTIN}17{YYMMDD}10LOTV1{GS}21SER0001",  # 12: scan 1 again
]


def _grni(h: Harness, correlation_id: str) -> Decimal:
    with h.mb.engine.connect() as conn:
        entries = ledger_store.journal(conn, correlation_id=correlation_id)
    return sum(
        (ln.credit - ln.debit for e in entries for ln in e.lines if ln.account == "2100-H1"),
        Decimal(0),
    )


def _goods_receipts(erp: FakeErp) -> int:
    return sum(1 for c in erp.calls if c.method == "record_goods_receipt" and c.outcome == "ok")


def _status(h: Harness, reference: str) -> str:
    """Read in a closed connection: one left open holds SQLite's write lock (its transaction
    begins IMMEDIATE) until the garbage collector finds it, and the order's workflow waited
    on that lock past its busy timeout (the CI failure "database is locked")."""
    with h.mb.engine.connect() as conn:
        return str(store.order(conn, reference)["status"])  # type: ignore[index]


def _vanco(h: Harness) -> dict[str | None, Decimal]:
    with h.mb.engine.connect() as conn:
        return {b.lot: b.quantity for b in ledger_store.stock(conn, item="VANCO-1G")}


def test_a_ship_notice_received_by_scan_once(harness: Harness) -> None:
    h = harness
    assert isinstance(h.erp, FakeErp)
    reference, shipment = _shipped(h)
    before = _vanco(h)
    body = {"shipment_id": shipment, "session": "DOCK1-A", "dock": "DOCK1", "scans": SCANS}

    counted = h.post("/v1/receiving/scans", body)
    assert counted.status_code == 200, counted.text
    report = counted.json()
    outcomes = [s["outcome"] for s in report["scans"]]
    assert (
        outcomes
        == ["matched"] * 4
        + ["substituted", "over", "unknown", "error"]
        + ["substituted"]
        + ["error"] * 4
    )
    scans = report["scans"]
    assert [s["base_quantity"] for s in scans[:6]] == ["1", "1", "1", "40", "10", "10"]
    assert scans[3]["key"] == "scan:DOCK1-A:count-40"
    assert scans[0]["key"] == "scan:DOCK1-A#0"
    assert scans[1]["key"] == f"serial:{VANCO_GTIN}:SER0001"
    assert scans[4]["received"]
    assert "pack BX" in scans[4]["note"]
    assert not scans[5]["received"]
    assert "7 still expected" in scans[5]["note"]
    assert scans[6]["item"] is None
    assert not scans[6]["received"]
    assert scans[8]["item"] == "DILUENT-10"
    assert not scans[8]["received"]
    errors = {s["index"]: s["error"]["code"] for s in scans if s["outcome"] == "error"}
    assert errors == {
        7: "gs1.expired",
        9: "gs1.bad_check_digit",
        10: "gs1.missing_separator",
        11: "gs1.no_gtin",
        12: "receiving.scanned_twice",
    }
    (line,) = report["lines"]
    assert (line["expected"], line["received"], line["over"], line["remaining"]) == (
        "60",
        "53",
        "10",
        "7",
    )
    assert line["short"] is None
    assert report["receipts"] == []
    h.cycle.pump()
    assert _vanco(h) == before  # counted, not received: the session is not complete
    held = {
        (t["kind"], t["context"]["gtin"])
        for queue in ("procurement", "pharmacy")
        for t in h.get("/v1/work-items", queue=queue)["items"]
        if t["kind"].startswith("scan_")
    }
    assert held == {
        ("scan_over", VANCO_BOX_GTIN),
        ("scan_unknown", UNKNOWN_GTIN),
        ("scan_substituted", DILUENT_GTIN),
    }

    done = h.post("/v1/receiving/scans", body | {"complete": True})
    assert done.status_code == 200, done.text
    final = done.json()
    assert final["lines"][0]["short"] == "7"
    (taken,) = final["receipts"]
    assert taken.startswith(f"{reference}:{shipment}~")
    assert [s["outcome"] for s in final["scans"]] == outcomes  # answered from the records
    h.cycle.run_until(lambda: _status(h, reference) != "shipped" and _vanco(h) != before)
    h.cycle.run_until(lambda: _goods_receipts(h.erp) == 1)  # type: ignore[arg-type]
    po = h.get(f"/v1/purchase-orders/{reference}")
    statuses = {r["reference"]: r["status"] for r in po["receipts"]}
    assert statuses == {f"{reference}:{shipment}": "counted", taken: "received"}  # not awaited
    lots = _vanco(h)
    gained = {lot: lots.get(lot, Decimal(0)) - before.get(lot, Decimal(0)) for lot in lots}
    assert {k: v for k, v in gained.items() if v} == {
        None: 1,
        "LOTV1": 2,
        "LOTV2": 40,
        "LOTB1": 10,
    }
    assert _grni(h, po["correlation_id"]) == Decimal("53") * Decimal("6.85")

    again = h.post("/v1/receiving/scans", body | {"complete": True})  # the terminal resends
    assert again.status_code == 200
    assert again.json() == final
    h.cycle.pump()
    h.cycle.pump()
    assert _vanco(h) == lots
    assert _goods_receipts(h.erp) == 1
    assert _grni(h, po["correlation_id"]) == Decimal("53") * Decimal("6.85")

    late = h.post(
        "/v1/receiving/scans",
        body | {"scans": [*SCANS, f"(01){VANCO_GTIN}(17){YYMMDD}(10)LOTV9(21)SER0003"]},
    )
    assert late.json()["scans"][-1]["error"]["code"] == "receiving.closed"
    reused = h.post("/v1/receiving/scans", body | {"scans": [f"(01){VANCO_GTIN}(10)OTHER"]}).json()
    assert reused["scans"][0]["error"]["code"] == "receiving.key_reused"
    assert _vanco(h) == lots


def test_refusals_name_the_field_and_bound_clients_stay_home(harness: Harness) -> None:
    h = harness
    reference, shipment = _shipped(h)
    post = h.post
    assert post("/v1/receiving/scans", {"session": "S", "scans": ["x"]}).status_code == 422
    nul = post("/v1/receiving/scans", {"order": reference, "session": "S", "scans": ["01\x00"]})
    assert nul.status_code == 422
    assert "scans" in nul.text
    bad_session = post(
        "/v1/receiving/scans", {"order": reference, "session": "a:b", "scans": ["1"]}
    )
    assert bad_session.status_code == 422
    assert "session" in bad_session.text
    wedge = {"order": reference, "session": "W", "scans": [SAMPLE["biip-4"]]}
    (plain,) = post("/v1/receiving/scans", wedge).json()["scans"]
    assert plain["error"]["code"] == "gs1.leftover_data"  # "|" is no GS1 data character
    (read,) = post("/v1/receiving/scans", wedge | {"wedge_separator": "|"}).json()["scans"]
    assert read["error"]["code"] == "gs1.expired"  # decoded: best before 2021-05-26
    letter = post("/v1/receiving/scans", wedge | {"wedge_separator": "A"})
    assert letter.status_code == 422
    assert "wedge_separator" in letter.text
    missing = post("/v1/receiving/scans", {"shipment_id": "NOPE", "session": "S", "scans": ["1"]})
    assert missing.status_code == 404
    assert (
        post("/v1/receiving/scans", {"order": "PO404", "session": "S", "scans": ["1"]}).status_code
        == 404
    )
    key = h.mb.clients.register("dock-h2", Role.PROCUREMENT, facilities=["H2"])
    elsewhere = h.client.post(
        "/v1/receiving/scans",
        json={"shipment_id": shipment, "session": "S", "scans": [SAMPLE["ndc-gtin-1"]]},
        headers={"X-API-Key": key},
    )
    assert elsewhere.status_code == 403
    reader = h.mb.clients.register("reader", Role.READER)
    assert (
        h.client.post(
            "/v1/receiving/scans",
            json={"order": reference, "session": "S", "scans": ["1"]},
            headers={"X-API-Key": reader},
        ).status_code
        == 403
    )


def test_scans_against_an_order_without_notice_receive_what_it_still_expects(
    harness: Harness,
) -> None:
    h = harness
    reference, _ = _shipped(h)
    before = _vanco(h)
    body = {
        "order": reference,
        "session": "DOCK2-B",
        "scans": [f"]C101{VANCO_BOX_GTIN}17{YYMMDD}10LOTB{n}" for n in range(7)],
        "complete": True,
    }
    answer = h.post("/v1/receiving/scans", body)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert [s["outcome"] for s in report["scans"]] == ["substituted"] * 6 + ["over"]
    (receipt,) = report["receipts"]
    assert receipt.startswith(f"{reference}:SCAN~")
    h.cycle.run_until(lambda: _goods_receipts(h.erp) == 1)  # type: ignore[arg-type]
    h.cycle.run_until(lambda: sum(_vanco(h).values()) == sum(before.values()) + 60)
    assert h.post("/v1/receiving/scans", body).json() == report


def test_an_invoice_does_not_wait_for_a_notice_whose_goods_were_scanned_in(
    engine: object, settings: Settings, tmp_path: Path
) -> None:
    """The ship notice's row is ``counted`` once its scans are received under their own
    receipt: the invoice waiting for noticed goods (an hour here, two days by default)
    matches at once. It used to wait out the whole grace."""
    slow = cycle_settings(settings, tmp_path, auto_receive=False, receipt_grace=3600.0)
    h = Harness(slow, Faults(), fake_erp())
    try:
        with h.mb.engine.begin() as conn:
            vanco = h.mb.masterdata.items(conn, ["VANCO-1G"])["VANCO-1G"]
            box = PackConversion(unit="BX", factor=Decimal(10), gtin=VANCO_BOX_GTIN)
            h.mb.masterdata.save_item(conn, vanco.model_copy(update={"packs": (box,)}), actor="t")
        reference, shipment = _shipped(h)
        scans = [f"]C101{VANCO_BOX_GTIN}17{YYMMDD}10LOTC{n}" for n in range(6)]
        body = {"shipment_id": shipment, "session": "DOCK4", "scans": scans, "complete": True}
        answer = h.post("/v1/receiving/scans", body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["lines"][0]["received"] == "60"
        h.until_invoice(f"INV-{reference}-1", "posted")
        receipts = h.get(f"/v1/purchase-orders/{reference}")["receipts"]
        assert {r["status"] for r in receipts} == {"counted", "received"}
    finally:
        h.mb.stop_workers()


def test_a_hand_over_lost_after_the_commit_is_made_by_the_next_request(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    reference, shipment = _shipped(h)
    before = _vanco(h)
    scans = [f"(01){VANCO_GTIN}(17){YYMMDD}(10)LOTC(21)C{n}" for n in range(3)]
    body = {"shipment_id": shipment, "session": "DOCK3", "scans": scans, "complete": True}

    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("the process died before the hand-over")

    monkeypatch.setattr(scan_receiving, "submit_receipt", crash)
    principal = Principal(name="dock", permissions=frozenset({Permission.RECEIVING_WRITE}))
    session = scan_receiving.ScanSession(
        session="DOCK3",
        scans=[scan_receiving.Scan(s) for s in scans],
        shipment_id=shipment,
        complete=True,
    )
    with pytest.raises(RuntimeError):
        scan_receiving.receive_scans(h.mb.engine, h.mb.masterdata, session, principal)
    monkeypatch.undo()
    h.cycle.pump()
    assert _vanco(h) == before  # recorded, not yet received

    again = h.post("/v1/receiving/scans", body)
    assert again.status_code == 200, again.text
    assert [s["outcome"] for s in again.json()["scans"]] == ["matched"] * 3
    h.cycle.run_until(lambda: _vanco(h).get("LOTC") == 3)
    h.cycle.run_until(lambda: _goods_receipts(h.erp) == 1)  # type: ignore[arg-type]
    h.post("/v1/receiving/scans", body)
    h.cycle.pump()
    assert _vanco(h).get("LOTC") == 3
    elsewhere = h.post(
        "/v1/receiving/scans", {"order": reference, "session": "DOCK4", "scans": scans[:1]}
    ).json()
    assert elsewhere["scans"][0]["error"]["code"] == "receiving.duplicate_serial"
