"""A dispense is a fact (DESIGN.md, "Facts, not requests"): the ledger consumer applies a
dispense or clinical consumption of stock it does not show, posts it, and opens one pharmacy
task per event in the same transaction; nothing is dead-lettered. A later receipt brings the
balance back, and the stock ledger still equals the GL inventory per facility."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from medbridge.app import MedBridge
from medbridge.bus.port import DeadLetterFilter
from medbridge.canonical.base import Money
from medbridge.canonical.masterdata import AccountRole
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.tasks import Action, Decision, TaskStatus, WorkQueue
from medbridge.flows.intake import Submission
from medbridge.flows.ledger_posting import DISCREPANCY
from medbridge.flows.work_queue import ActionNotAllowed, WorkQueues
from medbridge.store import ledger as ledger_store
from medbridge.store import work_items
from medbridge.store.tables import bus_events, stock_valuations
from medbridge.store.work_items import WorkItem

pytestmark = pytest.mark.db

ITEM, STORE = "AMPI-250", "H2-ED"


def movement(kind: MovementKind, quantity: str, **extra: object) -> StockMovement:
    return StockMovement(
        kind=kind,
        item=ITEM,
        location=STORE,
        quantity=Decimal(quantity),
        unit="CAP",
        occurred_at=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
        **extra,
    )


def receipt(quantity: str, unit_cost: str, **extra: object) -> StockMovement:
    return movement(MovementKind.RECEIPT, quantity, unit_cost=Money(amount=unit_cost), **extra)


def submit(mb: MedBridge, *movements: tuple[StockMovement, str]) -> None:
    mb.intake.submit([Submission(m, key) for m, key in movements], "test")
    mb.consumers["ledger"].drain()


def lots(mb: MedBridge) -> dict[str | None, Decimal]:
    with mb.engine.connect() as conn:
        return {r.lot: r.quantity for r in ledger_store.stock(conn, item=ITEM, location=STORE)}


def valuation(mb: MedBridge) -> tuple[Decimal, Decimal]:
    with mb.engine.connect() as conn:
        row = conn.execute(
            select(stock_valuations).where(
                stock_valuations.c.item == ITEM, stock_valuations.c.location == STORE
            )
        ).one()
    return row.quantity, row.value


def tasks(mb: MedBridge) -> list[WorkItem]:
    with mb.engine.connect() as conn:
        return [
            t
            for t in work_items.listing(conn, queue=WorkQueue.PHARMACY, status=None)
            if t.kind == DISCREPANCY
        ]


def assert_ledger_equals_gl(mb: MedBridge) -> None:
    with mb.engine.connect() as conn:
        accounts = mb.masterdata.account_map(conn)
        inventory = {f: a for (f, role), a in accounts.items() if role is AccountRole.INVENTORY}
        checks = ledger_store.facility_checks(conn, inventory)
    assert checks
    assert {c.facility: c.difference for c in checks} == {c.facility: 0 for c in checks}


def test_a_dispense_beyond_the_stock_is_applied_posted_and_a_pharmacy_task_opened(
    medbridge: MedBridge,
) -> None:
    submit(
        medbridge,
        (receipt("3", "0.40", lot="A1"), "r1"),
        (movement(MovementKind.DISPENSE, "5", lot="A1"), "d1"),
    )

    assert medbridge.bus.dead_letter_count("ledger") == 0
    assert lots(medbridge) == {"A1": Decimal(-2)}
    assert valuation(medbridge) == (Decimal(-2), Decimal("-0.80"))
    with medbridge.engine.connect() as conn:
        entries = ledger_store.journal(conn)
    dispensed = [e for e in entries if e.description.startswith("dispense")]
    assert [line.credit for e in dispensed for line in e.lines if line.credit] == [
        Decimal("2.00")  # the 3 held at 0.40 and the 2 short at the same cost
    ]
    assert_ledger_equals_gl(medbridge)

    [task] = tasks(medbridge)
    assert task.status is TaskStatus.OPEN
    assert task.subject == f"{ITEM}@{STORE} lot A1"
    assert task.actions == (Action.REQUEST_COUNT, Action.CLOSE)
    assert task.correlation_id == dispensed[0].correlation_id
    assert task.key == f"{DISCREPANCY}:{dispensed[0].source_event_id}"
    context = task.context
    assert (context["item"], context["location"], context["lot"]) == (ITEM, STORE, "A1")
    assert (context["quantity"], context["on_hand_before"], context["shortfall"]) == (
        "5",
        "3",
        "2",
    )
    assert (context["movement_kind"], context["known_lot"]) == ("dispense", True)
    assert (context["unit_cost"], context["cost_basis"]) == ("0.4", "average")
    assert context["correlation_id"] == task.correlation_id
    assert "applied" in task.reason


def test_an_unknown_lot_and_a_consumption_without_lot_each_open_their_own_task_once(
    medbridge: MedBridge,
) -> None:
    submit(
        medbridge,
        (receipt("4", "0.50", lot="A1"), "r1"),
        (movement(MovementKind.DISPENSE, "1", lot="GHOST"), "d1"),
        (movement(MovementKind.CLINICAL_CONSUMPTION, "6"), "c1"),
    )

    assert lots(medbridge) == {"GHOST": Decimal(-1), None: Decimal(-2)}  # A1 emptied
    ghost, lotless = tasks(medbridge)
    assert (ghost.context["lot"], ghost.context["known_lot"]) == ("GHOST", False)
    assert "never seen" in ghost.reason
    assert (lotless.context["lot"], lotless.context["shortfall_lot"]) == (None, None)
    assert lotless.context["movement_kind"] == "clinical_consumption"
    assert (lotless.context["on_hand_before"], lotless.context["shortfall"]) == ("4", "2")

    # redelivered (a consumer restarted before its position moved): nothing changes
    with medbridge.engine.connect() as conn:
        seqs = conn.execute(select(bus_events.c.seq).order_by(bus_events.c.seq)).scalars().all()
    medbridge.consumers["ledger"].handler(
        [medbridge.bus.get(seq) for seq in seqs]  # type: ignore[misc]
    )
    assert len(tasks(medbridge)) == 2
    assert lots(medbridge) == {"GHOST": Decimal(-1), None: Decimal(-2)}  # A1 emptied
    assert medbridge.bus.dead_letter_count("ledger") == 0


def test_a_refused_request_in_the_batch_rolls_back_nothing_of_the_fact(
    medbridge: MedBridge,
) -> None:
    submit(
        medbridge,
        (movement(MovementKind.DISPENSE, "2"), "d1"),
        (movement(MovementKind.WASTAGE, "1", reason="dropped"), "w1"),  # a request: refused
    )

    [dead] = medbridge.bus.dead_letters(DeadLetterFilter(group="ledger"))
    assert dead.error_type == "InsufficientStock"
    assert dead.event_type == "inventory.wasted.v1"
    [task] = tasks(medbridge)  # the dispense, applied alone after the batch failed
    assert task.context["cost_basis"] == "none"  # never held, no standard cost: zero
    assert lots(medbridge) == {None: Decimal(-2)}
    assert valuation(medbridge) == (Decimal(-2), Decimal(0))


def test_a_receipt_brings_the_balance_back_at_its_own_cost_and_the_books_still_agree(
    medbridge: MedBridge,
) -> None:
    submit(
        medbridge,
        (receipt("2", "0.40"), "r1"),
        (movement(MovementKind.DISPENSE, "2"), "d1"),  # emptied: last cost 0.40
        (movement(MovementKind.DISPENSE, "10"), "d2"),  # all short, at the last known cost
    )
    [task] = tasks(medbridge)
    assert (task.context["cost_basis"], task.context["value"]) == ("last_known", "4.00")
    assert valuation(medbridge) == (Decimal(-10), Decimal("-4.00"))
    assert_ledger_equals_gl(medbridge)

    submit(medbridge, (receipt("25", "0.60"), "r2"))

    assert lots(medbridge) == {None: Decimal(15)}
    assert valuation(medbridge) == (Decimal(15), Decimal("9.00"))  # 15 at 0.60, unskewed
    with medbridge.engine.connect() as conn:
        restock = ledger_store.journal(conn)[-1]
        accounts = medbridge.masterdata.account_map(conn)
    inventory, grni, expense = (
        accounts[("H2", role)]
        for role in (AccountRole.INVENTORY, AccountRole.GRNI, AccountRole.DRUG_EXPENSE)
    )
    # what the supplier is owed, and the 10 dispensed corrected from 0.40 to 0.60 each
    assert [(line.account, line.debit, line.credit) for line in restock.lines] == [
        (inventory, Decimal("15.00"), 0),
        (grni, 0, Decimal("15.00")),
        (expense, Decimal("2.00"), 0),
        (inventory, 0, Decimal("2.00")),
    ]
    assert_ledger_equals_gl(medbridge)
    assert medbridge.bus.dead_letter_count("ledger") == 0


def test_a_pharmacist_requests_a_count_or_closes_the_task(medbridge: MedBridge) -> None:
    submit(
        medbridge,
        (movement(MovementKind.DISPENSE, "1"), "d1"),
        (movement(MovementKind.DISPENSE, "1"), "d2"),
    )
    first, second = tasks(medbridge)
    queues = WorkQueues(medbridge.engine)

    with pytest.raises(ActionNotAllowed):
        queues.decide(first.id, Decision(action=Action.APPROVE), decided_by="pharmacist")
    counted = queues.decide(
        first.id, Decision(action=Action.REQUEST_COUNT), decided_by="pharmacist"
    )
    closed = queues.decide(
        second.id, Decision(action=Action.CLOSE, note="cabinet restocked"), decided_by="rph"
    )

    assert counted.decision is not None
    assert counted.decision.action is Action.REQUEST_COUNT
    assert (closed.status, closed.decided_by) == (TaskStatus.DECIDED, "rph")
