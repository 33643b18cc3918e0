"""Inventory-to-finance posting: the consumer that applies stock movements to the ledger and
posts their journal entries.

One batch = one transaction: the dedup claim, the ledger changes, the applied-movement record,
the journal entries and the pharmacy tasks of stock discrepancies commit together or not at
all. A movement that breaks a rule (a request such as wastage beyond the stock, an account
missing) fails the batch; the consumer loop then redelivers each message alone, so only the
culprit is retried and dead-lettered.

A dispense or a clinical consumption is a fact (DESIGN.md, "Facts, not requests"): it is never
refused for want of stock. When it takes more than the ledger holds (or names a lot the ledger
has never seen), it is applied, leaving a negative balance, posted like any other, and a
``stock_discrepancy`` task is opened in the pharmacy work queue, keyed by the event, in the
same transaction: a redelivery finds the task already there and the event already applied.

The period lock (``domain.period_close``): each batch reads the closed periods once; an event
of a closed period is dated on the first day of the next open one, its description says which
closed period it belongs to, and it is posted on its own (never in a GL summary, whose slice
would be of the closed period). Held movements released later are dated the same way.

Lot quarantine (a recall, ``flows.recall``): the batch reads the quarantined lots of its items
(locking their rows, so a release and a batch of the same item never interleave). A transfer
or receipt naming a quarantined lot is held (``lot_held_movements``), not applied, claimed
all the same: on the lot's release (``release``) the held movements apply, exactly once, in
the order they happened. A dispense or clinical consumption of a quarantined lot is applied
(it was handed out) and opens an URGENT pharmacy task keyed by the event. Issues without a
lot draw quarantined lots last (``domain.ledger``). A wastage or return to supplier of a
quarantined lot applies as usual: that is how recalled stock leaves.

With tracing on, each movement is a ``ledger.post`` span under its delivery, ended when the
batch's transaction ends; the ERP posting outbox row of its journal entry keeps that span's
trace context, so the ERP call, later and elsewhere, joins the same trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import ValidationError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from medbridge.bus.port import BusMessage
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.masterdata import AccountRole, Item
from medbridge.canonical.movements import EVENT_TYPES, MovementKind, StockMovement
from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.domain.errors import InsufficientStock, InvalidMovement
from medbridge.domain.gl_summary import CONSUMPTION
from medbridge.domain.ledger import FACTS, NO_LOT, StockBook, ValuedMovement, from_canonical
from medbridge.domain.period_close import dating, late_note
from medbridge.domain.posting import PostingContext, journal_entry_for
from medbridge.flows.erp_routing import ErpRouter
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.masterdata.validation import ResolvedMovements, check_current
from medbridge.observability import tracing
from medbridge.observability.logging import get_logger
from medbridge.store import audit, dedup, periods, work_items
from medbridge.store import ledger as ledger_store
from medbridge.store import recall as recall_store

CONSUMER = "ledger"
MOVEMENT_EVENTS = frozenset(EVENT_TYPES.values())
DISCREPANCY = "stock_discrepancy"
"""The kind of the pharmacy task a dispense beyond the stock opens."""
QUARANTINED_DISPENSE = "quarantined_lot_dispensed"
"""The kind of the URGENT pharmacy task a dispense from a quarantined lot opens."""
HELD_REFUSED = "held_movement_refused"
"""The kind of the pharmacy task of a held movement the ledger refused on release."""
HELD_KINDS = frozenset({MovementKind.TRANSFER, MovementKind.RECEIPT})
"""The movements of a quarantined lot that are held, not applied, until its release."""

log = get_logger(__name__)


class UnresolvableMovement(Exception):
    """The event names master data that no longer resolves (or is not a movement at all)."""


PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ValidationError,
    UnresolvableMovement,
    InsufficientStock,
    InvalidMovement,
)
"""Retrying cannot help these: dead-letter at once, replay after the fix. Other errors (a
missing GL account, a constraint race) are retried with backoff first. InsufficientStock only
ever comes from a request (wastage, return to supplier, transfer, count loss): a dispense or a
clinical consumption cannot raise it."""

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
"""The database is unreachable or locked: pause the consumer, blame no message."""


class LedgerPosting:
    """The ``ledger`` consumer group's handler."""

    def __init__(
        self,
        engine: Engine,
        masterdata: MasterDataRepository,
        router: ErpRouter | None = None,
        summarised_kinds: frozenset[MovementKind] = CONSUMPTION,
    ) -> None:
        self.engine, self.masterdata = engine, masterdata
        self.router = router or ErpRouter.single()
        self.summarised_kinds = summarised_kinds
        """The entries a destination with summarised GL posting receives in slices."""

    @property
    def name(self) -> str:
        return CONSUMER

    def __call__(self, messages: Sequence[BusMessage]) -> None:
        messages = [m for m in messages if m.type in MOVEMENT_EVENTS]  # demand etc. is not ours
        if not messages:
            return
        with tracing.message_spans("ledger.post", messages) as spans:
            self._post(messages, spans)

    def _post(self, messages: Sequence[BusMessage], spans: tracing.MessageSpans) -> None:
        envelopes = {
            m.event_id: EventEnvelope[StockMovement].model_validate_json(m.payload)
            for m in messages
        }
        # master data from memory, before the write transaction (which must not wait on it)
        resolved, problems, snapshot = check_current(
            self.masterdata, [e.data for e in envelopes.values()]
        )
        if problems:
            first = problems[0]
            raise UnresolvableMovement(
                f"event {messages[first.index].event_id}: {first.field}: {first.message}"
            )
        with self.engine.begin() as conn:
            fresh = dedup.claim(conn, CONSUMER, messages)
            if not fresh:
                return
            movements = [envelopes[m.event_id].data for m in fresh]
            quarantined = recall_store.quarantined(conn, {m.item for m in movements})
            book = ledger_store.load_book(conn, _touched(movements))
            book.quarantined = quarantined
            batch = _Batch(closed=periods.closed(conn, posting=True))  # the period lock
            held = []
            for message in fresh:
                movement = envelopes[message.event_id].data
                if held_by_quarantine(movement, quarantined):
                    held.append((message.event_id, message.correlation_id, movement))
                    continue
                context = (resolved, snapshot.accounts, message.event_id, message.correlation_id)
                self._apply(book, batch, context, movement)
            recall_store.hold(conn, held, datetime.now(UTC))
            opened = self._record(conn, book, batch, spans)
        _announce(opened, held)

    def _apply(
        self,
        book: StockBook,
        batch: _Batch,
        context: _Context,
        movement: StockMovement,
    ) -> None:
        """Apply one movement to ``book`` and add what it makes to ``batch`` (atomic: it
        raises before anything changes when a rule refuses it)."""
        resolved, accounts, event_id, correlation_id = context
        item = resolved.items[movement.item]
        valued = book.apply(from_canonical(movement, item))
        location = resolved.locations[movement.location]
        assert location.facility is not None  # stores and bins sit under a facility
        destination = (
            resolved.locations[movement.to_location]
            if movement.kind is MovementKind.TRANSFER and movement.to_location
            else None
        )
        cost_center = movement.cost_center or location.cost_center
        day = movement.occurred_at.date()
        dated = dating(day, batch.closed)
        entry = journal_entry_for(
            valued,
            PostingContext(
                entry_id=f"JE-{event_id}",
                source_event_id=event_id,
                correlation_id=correlation_id,
                posting_date=dated.posting_date,
                category=item.category,
                facility=location.facility,
                cost_center=cost_center,
                to_facility=destination.facility if destination else None,
                to_cost_center=destination.cost_center if destination else None,
                currency=movement.unit_cost.currency if movement.unit_cost else "USD",
            ),
            accounts,
        )
        batch.applied.append(
            ledger_store.AppliedMovement(
                event_id,
                correlation_id,
                movement.occurred_at,
                valued,
                cost_center=cost_center,
                encounter_ref=movement.encounter_ref,
            )
        )
        if entry is not None and dated.late_for is not None:
            # a late event of a closed period: dated in the next open one, said so, and
            # posted on its own (a summary slice is dated by its events' time)
            note = late_note(entry.description, day, dated.late_for)
            entry = entry.model_copy(update={"description": note})
        if entry is not None:
            batch.entries.append(entry)
            if (
                movement.kind in self.summarised_kinds
                and _one_facility(entry)
                and dated.late_for is None
            ):
                batch.summarisable.add(entry.entry_id)
        if valued.discrepancy is not None:
            task = discrepancy_task(valued, movement, item, event_id, correlation_id)
            batch.tasks.append(task.model_copy(update={"facility": location.facility}))
        recalled = quarantine_task(
            valued, movement, item, event_id, correlation_id, book, cost_center
        )
        if recalled is not None:
            batch.tasks.append(recalled.model_copy(update={"facility": location.facility}))

    def _record(
        self, conn: Connection, book: StockBook, batch: _Batch, spans: tracing.MessageSpans | None
    ) -> list[NewTask]:
        """Save the book, record the batch's movements and entries, open its tasks; the
        tasks newly opened."""
        ledger_store.save_book(conn, book)
        traces = (
            {e.entry_id: spans.headers(e.source_event_id) for e in batch.entries}
            if spans is not None and tracing.enabled()
            else None
        )
        deliveries = self.router.journal(conn, batch.entries, datetime.now(UTC), batch.summarisable)
        ledger_store.record(conn, batch.applied, batch.entries, traces, deliveries=deliveries)
        return [task for task in batch.tasks if work_items.open_task(conn, task)[1]]

    def release(self, item: str, lot: str, actor: str, note: str) -> Release:
        """Release a quarantined lot and apply the movements it held, exactly once, in the
        order they happened, in one transaction with the release and its audit row. A held
        movement the ledger's rules refuse now (a transfer of stock no longer there) is
        marked refused and opens a pharmacy task; the release goes on. Raises NotQuarantined
        when the lot is not in quarantine (nothing changes)."""
        at = datetime.now(UTC)
        with self.engine.begin() as conn:
            # the row lock first: a ledger batch of this item waits for us, or we for it
            if not recall_store.release(conn, item, lot, actor, note, at):
                raise NotQuarantined(item, lot)
            waiting = recall_store.held_movements(conn, item, lot)
            resolved, problems, snapshot = check_current(
                self.masterdata, [h.movement for h in waiting]
            )
            if problems:
                first = problems[0]
                raise UnresolvableMovement(
                    f"held event {waiting[first.index].event_id}: {first.field}: {first.message}"
                )
            book = ledger_store.load_book(conn, _touched(h.movement for h in waiting))
            book.quarantined = recall_store.quarantined(conn, [item])
            batch = _Batch(closed=periods.closed(conn, posting=True))
            applied: list[str] = []
            refused: list[str] = []
            for h in waiting:
                try:
                    context = (resolved, snapshot.accounts, h.event_id, h.correlation_id)
                    self._apply(book, batch, context, h.movement)
                except (InsufficientStock, InvalidMovement) as error:
                    recall_store.settle_held(
                        conn, h.event_id, recall_store.REFUSED, actor, at, str(error)
                    )
                    batch.tasks.append(held_refused_task(h, str(error)))
                    refused.append(h.event_id)
                    continue
                recall_store.settle_held(conn, h.event_id, recall_store.APPLIED, actor, at, None)
                applied.append(h.event_id)
            opened = self._record(conn, book, batch, None)
            audit.append(
                conn,
                actor=actor,
                action="lot.release",
                target_type="lot",
                target_id=f"{item}/{lot}",
                before={"status": recall_store.QUARANTINED},
                after={"status": recall_store.RELEASED},
                detail={"note": note, "applied": applied, "refused": refused},
            )
        _announce(opened, [])
        return Release(item, lot, tuple(applied), tuple(refused))


_Context = tuple[ResolvedMovements, dict[tuple[str, AccountRole], str], str, str]
"""The master data resolved, the GL accounts, the event id and correlation id of a movement."""


@dataclass
class _Batch:
    """What applying movements made, recorded together."""

    applied: list[ledger_store.AppliedMovement] = field(default_factory=list)
    entries: list[JournalEntry] = field(default_factory=list)
    tasks: list[NewTask] = field(default_factory=list)
    summarisable: set[str] = field(default_factory=set)
    closed: frozenset[str] = frozenset()
    """The closed periods (``YYYY-MM``), read once per batch: the period lock."""


@dataclass(frozen=True)
class Release:
    item: str
    lot: str
    applied: tuple[str, ...]
    """The held events applied now."""
    refused: tuple[str, ...]
    """The held events the ledger refused now (each with a pharmacy task)."""


class NotQuarantined(Exception):
    def __init__(self, item: str, lot: str) -> None:
        super().__init__(f"lot {lot} of {item} is not in quarantine")
        self.item, self.lot = item, lot


def held_by_quarantine(movement: StockMovement, quarantined: frozenset[tuple[str, str]]) -> bool:
    """A transfer or receipt naming a quarantined lot is held until the lot is released."""
    return (
        movement.kind in HELD_KINDS
        and movement.lot is not None
        and (movement.item, movement.lot) in quarantined
    )


def _announce(opened: Sequence[NewTask], held: Sequence[tuple[str, str, StockMovement]]) -> None:
    """Said once it is committed, never for a rolled-back batch."""
    for task in opened:
        log.warning(
            task.kind.replace("_", "."),
            key=task.key,
            subject=task.subject,
            correlation_id=task.correlation_id,
        )
    for event_id, correlation_id, movement in held:
        log.warning(
            "lot.movement_held",
            event_id=event_id,
            item=movement.item,
            lot=movement.lot,
            kind=movement.kind.value,
            correlation_id=correlation_id,
        )


def _touched(movements: Iterable[StockMovement]) -> list[tuple[str, str]]:
    """The item@location pairs the movements change."""
    pairs = []
    for m in movements:
        pairs.append((m.item, m.location))
        if m.to_location:
            pairs.append((m.item, m.to_location))
    return pairs


def _one_facility(entry: JournalEntry) -> bool:
    """A summary is per facility: an entry spanning two is posted per event."""
    return len({line.facility for line in entry.lines}) == 1


def discrepancy_task(
    valued: ValuedMovement,
    movement: StockMovement,
    item: Item,
    event_id: str,
    correlation_id: str,
) -> NewTask:
    """The pharmacy task of a dispense (or clinical consumption) beyond the stock: applied
    already; a person checks the shelf (``request_count``) or acknowledges it (``close``).
    Keyed by the event: frozen, one task per event however often it is delivered."""
    d = valued.discrepancy
    assert d is not None
    where = f"{d.item}@{d.location}" + (f" lot {d.lot}" if d.lot is not None else "")
    unknown = "" if d.known_lot else ", a lot the ledger has never seen there,"
    owing = f"lot {d.shortfall_lot}" if d.shortfall_lot != NO_LOT else "its stock without lot"
    reason = (
        f"{movement.kind.value} of {_n(d.wanted)} {item.base_unit} of {where}{unknown} with "
        f"{_n(d.held)} on hand: applied, as it happened; the {_n(d.shortfall)} short are a "
        f"negative balance on {owing}. Count the shelf, or close when the cause is known."
    )
    return NewTask(
        key=f"{DISCREPANCY}:{event_id}",
        queue=WorkQueue.PHARMACY,
        kind=DISCREPANCY,
        subject=where[:200],
        reason=reason[:1000],
        context={
            "item": d.item,
            "location": d.location,
            "lot": d.lot,
            "known_lot": d.known_lot,
            "movement_kind": movement.kind.value,
            "quantity": _n(d.wanted),
            "unit": item.base_unit,
            "reported_quantity": _n(movement.quantity),
            "reported_unit": movement.unit,
            "on_hand_before": _n(d.held),
            "shortfall": _n(d.shortfall),
            "shortfall_lot": d.shortfall_lot if d.shortfall_lot != NO_LOT else None,
            "unit_cost": _n(d.unit_cost),
            "cost_basis": d.cost_basis.value,
            "value": str(valued.amount),
            "occurred_at": movement.occurred_at.isoformat(),
            "event_id": event_id,
            "correlation_id": correlation_id,
        },
        actions=(Action.REQUEST_COUNT, Action.CLOSE),
        correlation_id=correlation_id,
    )


def quarantine_task(
    valued: ValuedMovement,
    movement: StockMovement,
    item: Item,
    event_id: str,
    correlation_id: str,
    book: StockBook,
    cost_center: str | None = None,
) -> NewTask | None:
    """The URGENT pharmacy task of a dispense (or clinical consumption) that took units of a
    quarantined lot, or None. Applied already (it was handed out); keyed by the event: one
    task per event however often it is delivered. Urgency is said in the subject, the reason
    and ``context.urgency`` (tasks have no priority of their own). No encounter pseudonym in
    the task (the console shows a task's context to every ``work:read``): the lot's trace
    gives it to those who may see it."""
    if movement.kind not in FACTS:
        return None
    taken = [
        c
        for c in valued.lot_changes
        if c.quantity < 0 and (movement.item, c.lot) in book.quarantined
    ]
    if not taken:
        return None
    lots = ", ".join(c.lot for c in taken)
    where = f"{movement.item}@{movement.location}"
    reason = (
        f"URGENT: {movement.kind.value} at {movement.location} of "
        f"{_n(sum((-c.quantity for c in taken), Decimal(0)))} {item.base_unit} of {movement.item} "
        f"lot {lots}, which is in quarantine (a recall): applied, as it was handed out. The "
        "lot's trace names the encounter (for encounters:read); follow the recall procedure "
        "and close when done."
    )
    return NewTask(
        key=f"{QUARANTINED_DISPENSE}:{event_id}",
        queue=WorkQueue.PHARMACY,
        kind=QUARANTINED_DISPENSE,
        subject=f"URGENT quarantined lot {lots} dispensed: {where}"[:200],
        reason=reason[:1000],
        context={
            "urgency": "urgent",
            "item": movement.item,
            "location": movement.location,
            "lots": {c.lot: _n(-c.quantity) for c in taken},
            "unit": item.base_unit,
            "movement_kind": movement.kind.value,
            "cost_center": cost_center,
            "occurred_at": movement.occurred_at.isoformat(),
            "event_id": event_id,
            "correlation_id": correlation_id,
        },
        actions=(Action.CLOSE,),
        correlation_id=correlation_id,
    )


def held_refused_task(held: recall_store.HeldMovement, error: str) -> NewTask:
    """A movement held by a quarantine that the ledger refused on release."""
    m = held.movement
    return NewTask(
        key=f"{HELD_REFUSED}:{held.event_id}",
        queue=WorkQueue.PHARMACY,
        kind=HELD_REFUSED,
        subject=f"held {m.kind.value} of {m.item} lot {m.lot} refused on release"[:200],
        reason=(
            f"the {m.kind.value} of {_n(m.quantity)} {m.unit} of {m.item} lot {m.lot} at "
            f"{m.location}, held while the lot was in quarantine, could not apply on its "
            f"release: {error}. Nothing of it was applied; count the shelf or close."
        )[:1000],
        context={
            "item": m.item,
            "lot": m.lot,
            "movement_kind": m.kind.value,
            "location": m.location,
            "to_location": m.to_location,
            "quantity": _n(m.quantity),
            "unit": m.unit,
            "error": error[:500],
            "event_id": held.event_id,
            "correlation_id": held.correlation_id,
        },
        actions=(Action.REQUEST_COUNT, Action.CLOSE),
        correlation_id=held.correlation_id,
    )


def _n(number: Decimal) -> str:
    """A quantity or cost as people write it (no exponent, no trailing zeros)."""
    return f"{number.normalize():f}"
