"""Dispense-to-replenish, the planning half: from the stock ledger to purchase orders.

High-volume dispenses stay on the bus and in the ledger; the planner reads the ledger's
result, not the events: every ``interval`` it takes each item x location with a policy
(``replenishment_policies``: par level, optional explicit reorder point / safety stock),
its on-hand stock (``stock_lots``), what is on order (proposed or ordered lines not yet
received), its usage history (the ledger's dispenses, consumptions and wastage), and asks
``domain.replenishment.replenish`` what to do. Then:

- an order line is proposed once per trigger, the last usage event of the position (so the
  dispense that crossed the reorder point is named, and its correlation id becomes the
  purchase order's); what is proposed counts as on order at once, so the next round does not
  propose it again;
- transfers proposed from another location's surplus go to the pharmacy work queue (approve
  moves the stock; reject or close leaves the position to the next round), one task per
  position and day;
- nobody can supply it (no valid contract, suppliers on hold): a pharmacy task;
- ``domain.replenishment.consolidate`` groups the unreleased lines per supplier x facility in
  the consolidation window (STAT lines at once); each released group becomes a purchase order
  (``PO00000001`` ...) claiming its lines in the same transaction. Starting its durable
  workflow is the caller's (``flows.procurement``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from sqlalchemy import Connection, Engine

from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.domain.replenishment import (
    NoSource,
    OrderLineProposal,
    StockPosition,
    TransferProposal,
    Urgency,
    consolidate,
    replenish,
    supply_options,
)
from medbridge.flows.intake import MovementIntake, Submission
from medbridge.flows.work_queue import WorkQueues
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.store import procurement as store
from medbridge.store.work_items import WorkItem

log = get_logger(__name__)


@dataclass(frozen=True)
class PlannerPolicy:
    window: timedelta = timedelta(minutes=30)
    """How long routine lines wait to be consolidated with others of the supplier."""
    history_days: int = 28
    """Usage history for safety stock and reorder points."""


@dataclass(frozen=True)
class PlanReport:
    proposed: int
    released: tuple[str, ...]
    """References of the purchase orders created this round."""
    tasks: int


def wire_unit(unit: str) -> str:
    """The unit an order line travels in: X12/UN-CEFACT two-letter codes (EA, BX, CA) as
    they are; MedBridge's clinical base units (VIAL, CAP, BAG, TAB ...) ship as each (EA)."""
    return unit if len(unit) == 2 and unit.isupper() else "EA"


class ReplenishmentPlanner:
    def __init__(
        self,
        engine: Engine,
        masterdata: MasterDataRepository,
        work_queues: WorkQueues,
        policy: PlannerPolicy | None = None,
    ) -> None:
        self.engine, self.masterdata, self.work_queues = engine, masterdata, work_queues
        self.policy = policy or PlannerPolicy()

    def plan(self, now: datetime | None = None) -> PlanReport:
        now = now or datetime.now(UTC)
        tasks: list[NewTask] = []
        with self.engine.begin() as conn:
            proposed = self._propose(conn, now, tasks)
            released = self._release(conn, now)
        for task in tasks:
            self.work_queues.open(task)
        if proposed or released:
            log.info("replenishment.planned", proposed=proposed, released=released)
        return PlanReport(proposed, tuple(released), len(tasks))

    def _propose(self, conn: Connection, now: datetime, tasks: list[NewTask]) -> int:
        policies = store.policies(conn)
        if not policies:
            return 0
        items = self.masterdata.items(conn, {p.item for p in policies})
        places = self.masterdata.locations(conn, {p.location for p in policies})
        suppliers = self.masterdata.suppliers(conn)
        contracts = self.masterdata.contracts(conn, items)
        on_hand, on_order = store.on_hand(conn), store.on_order(conn)
        usage = store.usage(conn, now, self.policy.history_days)
        positions: dict[str, list[StockPosition]] = defaultdict(list)
        for p in policies:
            key = (p.item, p.location)
            place = places.get(p.location)
            if p.item not in items or place is None:
                continue
            positions[p.item].append(
                StockPosition(
                    item=p.item,
                    location=p.location,
                    facility=place.facility or p.location,
                    on_hand=on_hand.get(key, Decimal(0)),
                    on_order=on_order.get(key, Decimal(0)),
                    par_level=p.par_level,
                    reorder_point=p.reorder_point,
                    safety_stock=p.safety_stock,
                    daily_usage=usage.daily.get(key, ()),
                )
            )
        proposed = 0
        for code, item_positions in positions.items():
            options = supply_options(items[code], contracts, suppliers)
            for position in item_positions:
                trigger = usage.last.get((position.item, position.location))
                if trigger is None:  # nothing used here lately: nothing crossed a threshold
                    continue
                decided = replenish(position, options, now, others=item_positions)
                event_id, correlation = trigger
                subject = f"{position.item} at {position.location}"
                about = {"facility": position.facility}  # the place that needs the stock
                if decided.transfers:
                    task = _transfer_task(decided.transfers, subject, correlation, now)
                    tasks.append(task.model_copy(update=about))
                if isinstance(decided.order, NoSource):
                    task = _no_source_task(decided.order, subject, correlation, now)
                    tasks.append(task.model_copy(update=about))
                elif isinstance(decided.order, OrderLineProposal):
                    proposed += store.propose(
                        conn, _line(decided.order, f"{subject}:{event_id}", correlation)
                    )
        return proposed

    def _release(self, conn: Connection, now: datetime) -> list[str]:
        rows = {r["id"]: r for r in store.unreleased(conn)}
        proposals = {id_: _proposal(r) for id_, r in rows.items()}
        by_proposal = {id(p): id_ for id_, p in proposals.items()}
        released = []
        wanted = {p.item for p in proposals.values()}
        terms = {c.code: c for c in self.masterdata.contracts(conn, wanted)} if wanted else {}
        for order in consolidate(proposals.values(), self.policy.window, now, terms).released:
            parts = [part for line in order.lines for part in line.parts]
            first = rows[by_proposal[id(min(parts, key=lambda p: p.proposed_at))]]
            lines = []
            for n, line in enumerate(order.lines, start=1):
                part = line.parts[0]
                lines.append(
                    {
                        "line": n,
                        "item": line.item,
                        "contract": line.contract,
                        "location": part.location,
                        "unit": line.unit,
                        "wire_unit": wire_unit(line.unit),
                        "quantity": str(line.quantity),
                        "unit_price": str(line.unit_price.amount),
                        "currency": line.unit_price.currency,
                        "pack_factor": str(part.pack_factor),
                    }
                )
            released.append(
                store.create_order(
                    conn,
                    supplier=order.supplier,
                    facility=order.facility,
                    urgency=order.urgency.value,
                    lines=lines,
                    correlation_id=first["correlation_id"],
                    line_ids=[by_proposal[id(p)] for p in parts],
                )
            )
        return released


def _line(order: OrderLineProposal, trigger: str, correlation: str) -> dict[str, object]:
    return {
        "trigger": trigger[:120],
        "item": order.item,
        "location": order.location,
        "facility": order.facility,
        "supplier": order.supplier,
        "contract": order.contract,
        "unit": order.unit,
        "quantity": order.quantity,
        "unit_price": order.unit_price.amount,
        "currency": order.unit_price.currency,
        "pack_factor": order.pack_factor,
        "pack_multiple": order.pack_multiple,
        "minimum_order_quantity": order.minimum_order_quantity,
        "lead_time_days": order.lead_time_days,
        "urgency": order.urgency.value,
        "correlation_id": correlation,
        "proposed_at": order.proposed_at,
    }


def _proposal(row: dict[str, object]) -> OrderLineProposal:
    r = row
    return OrderLineProposal(
        item=str(r["item"]),
        location=str(r["location"]),
        facility=str(r["facility"]),
        supplier=str(r["supplier"]),
        contract=str(r["contract"]),
        unit=str(r["unit"]),
        quantity=Decimal(str(r["quantity"])),
        unit_price=Money(amount=Decimal(str(r["unit_price"])), currency=str(r["currency"])),
        pack_factor=Decimal(str(r["pack_factor"])),
        pack_multiple=Decimal(str(r["pack_multiple"])),
        minimum_order_quantity=Decimal(str(r["minimum_order_quantity"])),
        lead_time_days=int(str(r["lead_time_days"])),
        urgency=Urgency(str(r["urgency"])),
        proposed_at=r["proposed_at"],  # type: ignore[arg-type]
    )


def _transfer_task(
    transfers: tuple[TransferProposal, ...], subject: str, correlation: str, now: datetime
) -> NewTask:
    moves = [
        {"item": t.item, "from": t.from_location, "to": t.to_location, "quantity": str(t.quantity)}
        for t in transfers
    ]
    text = ", ".join(f"{m['quantity']} from {m['from']}" for m in moves)
    key = f"transfer:{subject}:{now:%Y-%m-%d}"
    return NewTask(
        key=key,
        queue=WorkQueue.PHARMACY,
        kind="transfer_proposed",
        subject=subject,
        reason=f"{subject} is at or below its reorder point; surplus elsewhere: {text}",
        context={"transfers": moves},
        actions=(Action.APPROVE, Action.REJECT),
        correlation_id=correlation,
    )


def _no_source_task(order: NoSource, subject: str, correlation: str, now: datetime) -> NewTask:
    return NewTask(
        key=f"no_source:{subject}:{now:%Y-%m-%d}",
        queue=WorkQueue.PHARMACY,
        kind="no_source",
        subject=subject,
        reason=(
            f"{subject} needs {order.base_quantity} base units ({order.urgency.value}) and "
            f"nobody can supply it: {order.reason.value}"
        ),
        context={"reason": order.reason.value, "base_quantity": str(order.base_quantity)},
        actions=(Action.CLOSE,),
        correlation_id=correlation,
    )


def execute_transfer(
    intake: MovementIntake, masterdata: MasterDataRepository, item: WorkItem
) -> None:
    """An approved transfer proposal: the stock moves, keyed by the task (once, whichever
    process decided it: the API's, the CLI's)."""
    transfers = item.context.get("transfers", [])
    with intake.engine.connect() as conn:
        units = {
            i.code: i.base_unit
            for i in masterdata.items(conn, {t["item"] for t in transfers}).values()
        }
    at = datetime.now(UTC)
    intake.submit(
        [
            Submission(
                StockMovement(
                    kind=MovementKind.TRANSFER,
                    item=t["item"],
                    location=t["from"],
                    to_location=t["to"],
                    quantity=Decimal(str(t["quantity"])),
                    unit=units[t["item"]],
                    occurred_at=at,
                    reason=f"transfer approved by {item.decided_by} (task {item.id})",
                ),
                idempotency_key=f"task:{item.id}:{n}",
                correlation_id=UUID(item.correlation_id) if item.correlation_id else None,
            )
            for n, t in enumerate(transfers, start=1)
        ],
        source="replenishment",
    )
    log.info("replenishment.transferred", task=item.id, moves=len(transfers))
