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
would be of the closed period).

With tracing on, each movement is a ``ledger.post`` span under its delivery, ended when the
batch's transaction ends; the ERP posting outbox row of its journal entry keeps that span's
trace context, so the ERP call, later and elsewhere, joins the same trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from medbridge.bus.port import BusMessage
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.masterdata import Item
from medbridge.canonical.movements import EVENT_TYPES, MovementKind, StockMovement
from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.domain.errors import InsufficientStock, InvalidMovement
from medbridge.domain.gl_summary import CONSUMPTION
from medbridge.domain.ledger import NO_LOT, ValuedMovement, from_canonical
from medbridge.domain.period_close import dating, late_note
from medbridge.domain.posting import PostingContext, journal_entry_for
from medbridge.flows.erp_routing import ErpRouter
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.masterdata.validation import check_current
from medbridge.observability import tracing
from medbridge.observability.logging import get_logger
from medbridge.store import dedup, periods, work_items
from medbridge.store import ledger as ledger_store

CONSUMER = "ledger"
MOVEMENT_EVENTS = frozenset(EVENT_TYPES.values())
DISCREPANCY = "stock_discrepancy"
"""The kind of the pharmacy task a dispense beyond the stock opens."""

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
        accounts = snapshot.accounts
        with self.engine.begin() as conn:
            fresh = dedup.claim(conn, CONSUMER, messages)
            if not fresh:
                return
            movements = [envelopes[m.event_id].data for m in fresh]
            book = ledger_store.load_book(
                conn,
                [(m.item, m.location) for m in movements]
                + [(m.item, m.to_location) for m in movements if m.to_location],
            )
            applied, entries, tasks = [], [], []
            summarisable: set[str] = set()
            closed = periods.closed(conn, posting=True)  # the period lock: once per batch
            for message in fresh:
                envelope = envelopes[message.event_id]
                movement = envelope.data
                item = resolved.items[movement.item]
                valued = book.apply(from_canonical(movement, item))
                location = resolved.locations[movement.location]
                assert location.facility is not None  # stores and bins sit under a facility
                destination = (
                    resolved.locations[movement.to_location]
                    if movement.kind is MovementKind.TRANSFER and movement.to_location
                    else None
                )
                day = movement.occurred_at.date()
                dated = dating(day, closed)
                entry = journal_entry_for(
                    valued,
                    PostingContext(
                        entry_id=f"JE-{message.event_id}",
                        source_event_id=message.event_id,
                        correlation_id=message.correlation_id,
                        posting_date=dated.posting_date,
                        category=item.category,
                        facility=location.facility,
                        cost_center=movement.cost_center or location.cost_center,
                        to_facility=destination.facility if destination else None,
                        to_cost_center=destination.cost_center if destination else None,
                        currency=movement.unit_cost.currency if movement.unit_cost else "USD",
                    ),
                    accounts,
                )
                applied.append(
                    ledger_store.AppliedMovement(
                        message.event_id, message.correlation_id, movement.occurred_at, valued
                    )
                )
                if entry is not None and dated.late_for is not None:
                    # a late event of a closed period: dated in the next open one, said so,
                    # and posted on its own (a summary slice is dated by its events' time)
                    note = late_note(entry.description, day, dated.late_for)
                    entry = entry.model_copy(update={"description": note})
                if entry is not None:
                    entries.append(entry)
                    if (
                        movement.kind in self.summarised_kinds
                        and _one_facility(entry)
                        and dated.late_for is None
                    ):
                        summarisable.add(entry.entry_id)
                if valued.discrepancy is not None:
                    task = discrepancy_task(valued, movement, item, message)
                    tasks.append(task.model_copy(update={"facility": location.facility}))
            ledger_store.save_book(conn, book)
            traces = (
                {e.entry_id: spans.headers(e.source_event_id) for e in entries}
                if tracing.enabled()
                else None
            )
            deliveries = self.router.journal(conn, entries, datetime.now(UTC), summarisable)
            ledger_store.record(conn, applied, entries, traces, deliveries=deliveries)
            opened = [task for task in tasks if work_items.open_task(conn, task)[1]]
        for task in opened:  # said once it is committed, never for a rolled-back batch
            log.warning(
                "stock.discrepancy",
                key=task.key,
                subject=task.subject,
                correlation_id=task.correlation_id,
            )


def _one_facility(entry: JournalEntry) -> bool:
    """A summary is per facility: an entry spanning two is posted per event."""
    return len({line.facility for line in entry.lines}) == 1


def discrepancy_task(
    valued: ValuedMovement, movement: StockMovement, item: Item, message: BusMessage
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
        key=f"{DISCREPANCY}:{message.event_id}",
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
            "event_id": message.event_id,
            "correlation_id": message.correlation_id,
        },
        actions=(Action.REQUEST_COUNT, Action.CLOSE),
        correlation_id=message.correlation_id,
    )


def _n(number: Decimal) -> str:
    """A quantity or cost as people write it (no exponent, no trailing zeros)."""
    return f"{number.normalize():f}"
