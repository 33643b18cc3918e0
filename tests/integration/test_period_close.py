"""Period close (issue 18): November closed with no difference; a late November event posted
to December with its note; planted differences (a journal line edited, a move booked by hand
in the ERP) in the close report with their facility and amount; an unreachable ERP recorded,
not fatal; closing twice refused."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from tests.close_support import NOW, movement, november, submit
from tests.ledger_support import record_entries

from medbridge.app import MedBridge
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.movements import MovementKind
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.period_close import (
    PeriodClosed,
    PeriodError,
    PpvLine,
    UnforcedDifferences,
    report_csv,
)
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy
from medbridge.flows.period_close import PeriodClose
from medbridge.flows.reconciliation import reconcile_period
from medbridge.store import audit as audit_store
from medbridge.store import ledger as ledger_store
from medbridge.store import periods as periods_store
from medbridge.store.tables import invoice_matches, journal_lines

pytestmark = pytest.mark.db


def closer(mb: MedBridge, fake: FakeErp | None) -> PeriodClose:
    return PeriodClose(mb.engine, list(mb.erp_slots), lambda _name: fake, clock=lambda: NOW)


def test_november_closes_clean_and_a_late_event_posts_to_december(medbridge: MedBridge) -> None:
    fake = FakeErp()
    order = november(medbridge, fake)
    close = closer(medbridge, fake)

    report = close.close("2026-11", actor="cli:finance")
    assert report.differences == ()
    assert [e.status for e in report.erps] == ["balanced"]
    [grni] = [g for g in report.grni if g.order == order]
    assert (grni.supplier, grni.facility, grni.amount) == ("MCK", "H1", Decimal("274.00"))
    assert {c.facility: c.difference for c in report.stock}["H1"] == 0
    with medbridge.engine.connect() as conn:
        assert periods_store.closed(conn) == {"2026-11"}
        [row] = audit_store.entries(conn, action="period.close")
    assert (row.actor, row.target_id) == ("cli:finance", "2026-11")

    with pytest.raises(PeriodClosed, match="2026-11 is closed already"):
        close.close("2026-11", actor="cli:finance")
    assert close.report("2026-11") == report  # the stored report, unchanged

    # a dispense of 29 November arrives after the close: dated 1 December, with the note
    submit(
        medbridge,
        fake,
        movement(MovementKind.DISPENSE, 2, datetime(2026, 11, 29, 10, tzinfo=UTC)),
    )
    with medbridge.engine.connect() as conn:
        [late] = ledger_store.journal(conn, period="2026-12")
        assert ledger_store.journal(conn, period="2026-11", limit=1000)  # November unchanged
    assert late.posting_date == date(2026, 12, 1)
    assert late.description.startswith("late, belongs to closed 2026-11 (event 2026-11-29): ")
    [move] = fake.moves(late.entry_id)
    assert move.posting_date == date(2026, 12, 1)  # the ERP books it in December too
    assert reconcile_period(medbridge.engine, fake, "2026-11").balanced
    assert reconcile_period(medbridge.engine, fake, "2026-12").balanced
    december = PeriodClose(
        medbridge.engine,
        list(medbridge.erp_slots),
        lambda _name: fake,
        clock=lambda: datetime(2027, 1, 2, tzinfo=UTC),
    ).report("2026-12")
    assert (december.late_entries, december.differences) == (1, ())


def test_planted_differences_are_in_the_report_with_facility_and_amount(
    medbridge: MedBridge,
) -> None:
    fake = FakeErp()
    november(medbridge, fake)
    close = closer(medbridge, fake)
    assert close.report("2026-11").differences == ()

    # a move booked by hand in the ERP on H1's inventory account
    inventory = "1400-H1"
    planted = fake.plant_move(
        "HAND-11",
        date(2026, 11, 15),
        [
            (inventory, None, Decimal("3.00"), Decimal(0)),
            ("5100-H1", None, Decimal(0), Decimal("3.00")),
        ],
    )
    # and a journal line edited in MedBridge's own journal: its GL no longer equals the stock
    with medbridge.engine.begin() as conn:
        first = conn.execute(
            select(journal_lines.c.entry_id, journal_lines.c.line_no)
            .where(journal_lines.c.account == inventory, journal_lines.c.debit > 0)
            .limit(1)
        ).one()
        conn.execute(
            update(journal_lines)
            .where(
                journal_lines.c.entry_id == first.entry_id,
                journal_lines.c.line_no == first.line_no,
            )
            .values(debit=journal_lines.c.debit + Decimal("5.00"))
        )

    report = close.close("2026-11", actor="cli:finance", dry_run=True)
    by_kind = {d.kind: d for d in report.differences}
    stock = by_kind["stock_vs_gl"]
    assert (stock.facility, stock.account, stock.amount, stock.owner) == (
        "H1",
        inventory,
        Decimal("-5.00"),
        "finance",
    )
    hand = by_kind["erp_unexpected_in_erp"]
    assert (hand.facility, hand.reference, hand.amount, hand.owner) == (
        "H1",
        "HAND-11",
        Decimal("-3.00"),
        "erp:tryton",
    )
    assert planted in hand.detail
    edited = by_kind["erp_amount_differs"]
    assert (edited.facility, edited.account, edited.amount) == ("H1", inventory, Decimal("5.00"))

    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    listed = {(r["kind"], r["facility"], r["amount"], r["owner"]) for r in rows}
    assert ("stock_vs_gl", "H1", "-5.00", "finance") in listed
    assert ("erp_unexpected_in_erp", "H1", "-3.00", "erp:tryton") in listed

    with medbridge.engine.connect() as conn:
        assert periods_store.closed(conn) == frozenset()  # a dry run locks nothing
    with pytest.raises(UnforcedDifferences, match="3 difference"):
        close.close("2026-11", actor="cli:finance")
    forced = close.close("2026-11", actor="cli:finance", force_reason="hand move under review")
    assert forced.notes == ("forced: hand move under review",)
    with medbridge.engine.connect() as conn:
        done = periods_store.get(conn, "2026-11")
    assert done is not None
    assert (done.differences, done.forced_reason) == (3, "hand move under review")


def test_an_unreachable_erp_is_a_difference_with_an_owner(medbridge: MedBridge) -> None:
    fake = FakeErp()
    november(medbridge, fake)
    fake.go_down()
    report = closer(medbridge, fake).close("2026-11", actor="cli:finance", dry_run=True)
    [down] = report.differences
    assert (down.kind, down.owner, down.reference) == ("erp_unreachable", "erp:tryton", "tryton")
    assert [e.status for e in report.erps] == ["unreachable"]
    not_connected = closer(medbridge, None).close("2026-11", actor="x", dry_run=True)
    assert "has no connection" in not_connected.differences[0].detail


def test_cutoff_and_period_are_checked(medbridge: MedBridge) -> None:
    close = closer(medbridge, FakeErp())
    with pytest.raises(PeriodError, match="period: '2026-13' is not YYYY-MM"):
        close.close("2026-13", actor="x")
    with pytest.raises(PeriodError, match=r"cutoff: .* is not in 2026-11"):
        close.close("2026-11", actor="x", cutoff=datetime(2026, 12, 2, tzinfo=UTC))
    with pytest.raises(PeriodError, match="2026-12 is not over"):
        close.close("2026-12", actor="x")


def test_grni_as_of_a_cutoff_leaves_out_what_came_after(medbridge: MedBridge) -> None:
    fake = FakeErp()
    november(medbridge, fake)
    close = closer(medbridge, fake)
    before = close.report("2026-11", cutoff=datetime(2026, 11, 5, tzinfo=UTC))
    assert [g for g in before.grni if g.order == "PO-NOV-1"] == []
    after = close.report("2026-11", cutoff=datetime(2026, 11, 10, 9, 30, tzinfo=UTC))
    assert [g.amount for g in after.grni if g.order == "PO-NOV-1"] == [Decimal("274.00")]


def test_an_entry_posted_while_the_report_is_read_is_noted(medbridge: MedBridge) -> None:
    fake = FakeErp()
    november(medbridge, fake)

    def erp_during_a_late_dispense(_name: str) -> FakeErp:
        # the close reads the books; meanwhile a November dispense is posted (still open)
        when = datetime(2026, 11, 30, 8, tzinfo=UTC)
        submit(medbridge, fake, movement(MovementKind.DISPENSE, 1, when))
        return fake

    close = PeriodClose(
        medbridge.engine, list(medbridge.erp_slots), erp_during_a_late_dispense, clock=lambda: NOW
    )
    report = close.close("2026-11", actor="cli:finance", force_reason="posted during the close")
    assert report.notes[-1] == (
        "1 entry of 2026-11 recorded while the report was read: in the period, perhaps not in"
        " this report"
    )


def test_ppv_per_supplier_item_and_facility_and_grni_through_the_invoice(
    medbridge: MedBridge,
) -> None:
    fake = FakeErp()
    order = november(medbridge, fake)
    key = "x12:MCK:INV-881"
    with medbridge.engine.begin() as conn:
        conn.execute(
            invoice_matches.insert().values(
                reference=key,
                supplier="MCK",
                number="INV-881",
                total=Decimal("70.00"),
                order_reference=order,
                status="posted",
                result={
                    "exceptions": [],
                    "lines": [
                        {
                            "line": 1,
                            "order": order,
                            "order_line": 1,
                            "base_quantity": "10",
                            "amount": "70.00",
                            "grni": "68.50",
                        },
                    ],
                    "posting": None,
                },
                correlation_id=str(uuid.uuid4()),
                created_at=NOW,
                updated_at=NOW,
            )
        )
        variance = Decimal("1.50")
        record_entries(
            conn,
            [
                JournalEntry(
                    entry_id=f"ppv:{uuid.uuid5(uuid.NAMESPACE_URL, key)}",
                    posting_date=date(2026, 11, 25),
                    description="price variance, invoice INV-881 of MCK",
                    source_event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ppv:{key}")),
                    correlation_id=str(uuid.uuid4()),
                    lines=(
                        JournalLine(account="5500-H1", debit=variance, facility="H1"),
                        JournalLine(account="2100-H1", credit=variance, facility="H1"),
                    ),
                )
            ],
        )
    ErpPosting(medbridge.engine, fake, ErpPostingPolicy(rate_limit=1000.0)).drain()
    report = closer(medbridge, fake).report("2026-11")
    assert report.ppv == (PpvLine("MCK", "VANCO-1G", "H1", Decimal("1.50")),)
    [grni] = [g for g in report.grni if g.order == order]
    assert (grni.supplier, grni.amount) == ("MCK", Decimal("275.50"))  # its entry, its order
    assert report.differences == ()
