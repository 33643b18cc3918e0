"""Inventory-to-finance posting: the consumer that applies stock movements to the ledger and
posts their journal entries.

One batch = one transaction: the dedup claim, the ledger changes, the applied-movement record
and the journal entries commit together or not at all. A movement that breaks a rule
(insufficient stock, an account missing) fails the batch; the consumer loop then redelivers
each message alone, so only the culprit is retried and dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from medbridge.bus.port import BusMessage
from medbridge.canonical.events import EventEnvelope
from medbridge.canonical.movements import EVENT_TYPES, MovementKind, StockMovement
from medbridge.domain.errors import InsufficientStock, InvalidMovement
from medbridge.domain.ledger import from_canonical
from medbridge.domain.posting import PostingContext, journal_entry_for
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.masterdata.validation import check_current
from medbridge.store import dedup
from medbridge.store import ledger as ledger_store

CONSUMER = "ledger"
MOVEMENT_EVENTS = frozenset(EVENT_TYPES.values())


class UnresolvableMovement(Exception):
    """The event names master data that no longer resolves (or is not a movement at all)."""


PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ValidationError,
    UnresolvableMovement,
    InsufficientStock,
    InvalidMovement,
)
"""Retrying cannot help these: dead-letter at once, replay after the fix. Other errors (a
missing GL account, a constraint race) are retried with backoff first."""

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
"""The database is unreachable or locked: pause the consumer, blame no message."""


class LedgerPosting:
    """The ``ledger`` consumer group's handler."""

    def __init__(self, engine: Engine, masterdata: MasterDataRepository) -> None:
        self.engine, self.masterdata = engine, masterdata

    @property
    def name(self) -> str:
        return CONSUMER

    def __call__(self, messages: Sequence[BusMessage]) -> None:
        messages = [m for m in messages if m.type in MOVEMENT_EVENTS]  # demand etc. is not ours
        if not messages:
            return
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
            applied, entries = [], []
            for message in fresh:
                envelope = envelopes[message.event_id]
                movement = envelope.data
                valued = book.apply(from_canonical(movement, resolved.items[movement.item]))
                location = resolved.locations[movement.location]
                assert location.facility is not None  # stores and bins sit under a facility
                to_facility = (
                    resolved.locations[movement.to_location].facility
                    if movement.kind is MovementKind.TRANSFER and movement.to_location
                    else None
                )
                entry = journal_entry_for(
                    valued,
                    PostingContext(
                        entry_id=f"JE-{message.event_id}",
                        source_event_id=message.event_id,
                        correlation_id=message.correlation_id,
                        posting_date=movement.occurred_at.date(),
                        category=resolved.items[movement.item].category,
                        facility=location.facility,
                        cost_center=movement.cost_center or location.cost_center,
                        to_facility=to_facility,
                        currency=movement.unit_cost.currency if movement.unit_cost else "USD",
                    ),
                    accounts,
                )
                applied.append(
                    ledger_store.AppliedMovement(
                        message.event_id, message.correlation_id, movement.occurred_at, valued
                    )
                )
                if entry is not None:
                    entries.append(entry)
            ledger_store.save_book(conn, book)
            ledger_store.record(conn, applied, entries)
