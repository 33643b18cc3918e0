"""The message browser: every message that crossed MedBridge's edge, searchable, one at a time
with its raw form (patient fields masked), its events, its acknowledgement and its trace, and
reprocessed exactly once in effect. The API (``api/messages.py``) and the web console call
this one service; its interface is stable:

``MessageBrowser(engine, reprocessors=None, *, max_reprocess=1000)``
    ``reprocessors``: per connector name (``hl7v2``, ``fhir``, ``x12``, ``x12-folder``,
    ``cxml``), what feeds a stored raw message back through that connector's inbound path
    (``Reprocessor``; ``runtime.processes.message_browser`` wires them).

``search(filters: MessageFilter, after: str | None = None, limit: int = 50) -> MessagePage``
    Newest first on the keyset (received_at, id); ``after`` is the previous page's
    ``next_cursor`` (an opaque string; ``InvalidCursor`` if it is not one). ``limit`` is 1 to
    ``MAX_LIMIT``. Filters (``canonical.messages.MessageFilter``): control_id, business_key,
    sender, protocol, message_type, status (``dead_lettered`` too), direction, connector,
    since (inclusive), until (exclusive), facilities (the caller's scope; None = all).
``get(message_id: str, facilities: frozenset[str] | None = None) -> MessageDetail | None``
    The message (None: unknown, or outside ``facilities``) with its raw form masked
    (``mask``), its canonical events from the event log, the acknowledgement sent, the dead
    letters of its correlation, and ``trace_path`` (``/v1/trace/<correlation_id>``).
``preview(filters: MessageFilter) -> int``
    How many messages a filtered reprocess would take (before ``max_reprocess``).
``reprocess(*, ids=None, filters=None, reason: str, actor: str, facilities=None)
        -> ReprocessReport``
    Feeds each stored raw message (oldest first; ids OR filters; at most ``max_reprocess``)
    back through its connector's inbound path, where its idempotency key is derived from
    the message again, so it is the original key: an applied message comes back
    ``duplicate``, a parked or refused one is applied once its cause is fixed (a parked
    one's rows then say ``applied``). Each attempt writes a new message row
    (``new_message_id``) through its connector's path, then one audit row
    (``message.reprocess``, by ``actor``, with the reason and the outcome) in a transaction
    of its own. A message whose body was pruned, outbound, or whose connector has no
    reprocessor is ``skipped`` with the reason; one its connector failed on is ``failed``.

What they answer (frozen dataclasses):

- ``MessagePage(items: list[MessageSummary], next_cursor: str | None)``
- ``MessageSummary``: id, received_at, direction, protocol, connector, sender,
  message_type, control_id, business_key, facility, status (as stored), dead_lettered,
  correlation_id, idempotency_key, event_count, error; ``effective_status`` is
  ``dead_lettered`` when a dead letter waits, else ``status``.
- ``MessageDetail(message, raw, media_type, ack, events: list[EventView],
  dead_letters: list[DeadLetterView], trace_path)``; ``raw`` None once pruned.
- ``ReprocessReport(selected, outcomes: list[ReprocessOutcome])`` with ``counts()``;
  ``ReprocessOutcome(message_id, outcome, new_message_id, detail)``.

Errors: ``BrowserError`` is the root, with ``field`` naming the input at fault:
``InvalidCursor`` (``after``: a cursor not made here), ``ReprocessRefused`` (``reason``
blank; ``ids`` empty, too many, or given with filters or neither), a ``limit`` out of range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import Engine

from medbridge.canonical.messages import MessageFilter, MessageRecord, MessageStatus
from medbridge.observability.logging import get_logger
from medbridge.store import audit
from medbridge.store import messages as store
from medbridge.store.db import read_only

log = get_logger(__name__)

MAX_LIMIT = 500
MASK = "***"


class BrowserError(Exception):
    """Root of the browser's errors; ``field`` names the input at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class InvalidCursor(BrowserError):
    pass


class ReprocessRefused(BrowserError):
    pass


# --- what the browser answers --------------------------------------------------------------


@dataclass(frozen=True)
class MessageSummary:
    id: str
    received_at: datetime
    direction: str
    protocol: str
    connector: str
    sender: str
    message_type: str
    control_id: str
    business_key: str
    facility: str | None
    status: str
    """As stored: applied, duplicate, parked, refused, sent, acknowledged, failed."""
    dead_lettered: bool
    """A consumer dead-lettered an event of this message's correlation (still waiting)."""
    correlation_id: str | None
    idempotency_key: str | None
    event_count: int
    error: str | None

    @property
    def effective_status(self) -> str:
        return MessageStatus.DEAD_LETTERED.value if self.dead_lettered else self.status


@dataclass(frozen=True)
class MessagePage:
    items: list[MessageSummary]
    next_cursor: str | None
    """Pass as ``after`` for the next page; None when this page is the last."""


@dataclass(frozen=True)
class EventView:
    seq: int
    id: str
    type: str
    subject: str
    correlation_id: str
    time: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class DeadLetterView:
    id: int
    group: str
    event_id: str
    error_type: str
    error: str
    status: str
    dead_at: datetime


@dataclass(frozen=True)
class MessageDetail:
    message: MessageSummary
    raw: str | None
    """The raw message with patient fields masked; None once retention pruned the body."""
    media_type: str | None
    ack: str | None
    events: list[EventView]
    dead_letters: list[DeadLetterView]
    trace_path: str | None


@dataclass(frozen=True)
class ReprocessOutcome:
    message_id: str
    outcome: str
    """The new attempt's status (applied, duplicate, parked, refused), or skipped/failed."""
    new_message_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class ReprocessReport:
    selected: int
    outcomes: list[ReprocessOutcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for o in self.outcomes:
            found[o.outcome] = found.get(o.outcome, 0) + 1
        return found


class Reprocessor(Protocol):
    """Feeds ``raw`` (as stored, of ``media_type``) back through a connector's inbound path,
    as if ``original`` had come again; returns the new attempt's record (None: not
    recorded). ``flows.message_reprocessors`` has HL7 v2's, FHIR's, X12's and cXML's."""

    def __call__(
        self, raw: str, media_type: str, original: MessageSummary
    ) -> MessageRecord | None: ...


# --- masking -------------------------------------------------------------------------------

_HL7_MASKED = {
    "PID": {2, 3, 4, 5, 6, 7, 9, 11, 12, 13, 14, 18, 19, 20, 21, 23, 26, 29},
    "PD1": {1, 2, 3, 4},
    "NK1": set(range(2, 40)),
    "GT1": set(range(2, 60)),
    "IN1": {16, 18, 19, 36, 49},
    "IN2": set(range(1, 80)),
    "MRG": set(range(1, 8)),
    "PV1": {19, 50},  # visit number, alternate visit id
}
"""Per segment, the fields naming, locating or identifying a patient (or kin, guarantor,
insured): names, birth date, address, phone, identifiers, account and licence numbers."""

_FHIR_MASKED = {
    "subject",
    "patient",
    "name",
    "birthDate",
    "address",
    "telecom",
    "contact",
    "identifier",
    "receiver",
}
_FHIR_PERSONS = {"Patient", "RelatedPerson", "Person"}


def mask_hl7(text: str) -> str:
    """``text`` with every patient field of ``_HL7_MASKED`` replaced by ``***``."""
    if len(text) < 8 or not text.startswith("MSH"):
        return text
    sep = text[3]
    segments = re.split(r"\r\n|\r|\n", text)
    out = []
    for segment in segments:
        fields = segment.split(sep)
        masked = _HL7_MASKED.get(fields[0])
        if masked:
            fields = [MASK if n in masked and value else value for n, value in enumerate(fields)]
        out.append(sep.join(fields))
    return "\r".join(out)


def _mask_json(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("resourceType") in _FHIR_PERSONS:
            return {"resourceType": value["resourceType"], "id": MASK}
        return {k: (MASK if k in _FHIR_MASKED else _mask_json(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v) for v in value]
    return value


def mask(protocol: str, media_type: str, raw: str) -> str:
    """The raw message as a browser may show it: HL7 patient fields and FHIR patient
    references, names, birth dates, addresses, phones and identifiers masked; a FHIR body
    that is not JSON (XML) is withheld whole; other protocols carry no patient data."""
    if protocol == "hl7v2":
        return mask_hl7(raw)
    if protocol == "fhir":
        try:
            return orjson.dumps(_mask_json(orjson.loads(raw)), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            return f"({media_type} body withheld: it cannot be masked field by field)"
    return raw


# --- the service ---------------------------------------------------------------------------


def _summary(row: Any, dead: set[str]) -> MessageSummary:
    return MessageSummary(
        id=row.id,
        received_at=row.received_at,
        direction=row.direction,
        protocol=row.protocol,
        connector=row.connector,
        sender=row.sender,
        message_type=row.message_type,
        control_id=row.control_id,
        business_key=row.business_key,
        facility=row.facility,
        status=row.status,
        dead_lettered=bool(row.correlation_id) and row.correlation_id in dead,
        correlation_id=row.correlation_id,
        idempotency_key=row.idempotency_key,
        event_count=row.event_count,
        error=row.error,
    )


class MessageBrowser:
    """See the module docstring: the interface is stable."""

    def __init__(
        self,
        engine: Engine,
        reprocessors: Mapping[str, Reprocessor] | None = None,
        *,
        max_reprocess: int = 1000,
    ) -> None:
        self.engine = engine
        self.reader = read_only(engine)
        self.reprocessors = dict(reprocessors or {})
        self.max_reprocess = max_reprocess

    def search(
        self, filters: MessageFilter, after: str | None = None, limit: int = 50
    ) -> MessagePage:
        if not 1 <= limit <= MAX_LIMIT:
            raise BrowserError(f"limit is 1 to {MAX_LIMIT}, not {limit}", "limit")
        try:
            cursor = store.Cursor.decode(after) if after else None
        except ValueError as error:
            raise InvalidCursor(str(error), "after") from error
        with self.reader.connect() as conn:
            rows = store.search(conn, filters, cursor, limit)
        items = [_summary(r, {r.correlation_id} if r.dead_lettered else set()) for r in rows]
        next_cursor = None
        if len(rows) == limit:
            next_cursor = store.Cursor(rows[-1].received_at, rows[-1].id).encode()
        return MessagePage(items, next_cursor)

    def get(
        self, message_id: str, facilities: frozenset[str] | None = None
    ) -> MessageDetail | None:
        with self.reader.connect() as conn:
            row = store.get(conn, message_id)
            if row is None or (facilities is not None and row.facility not in facilities):
                return None
            body = store.body(conn, message_id)
            letters = store.dead_letters_of(conn, row.correlation_id) if row.correlation_id else []
            events = self._events(conn, row)
        dead = {row.correlation_id} if any(d.status == "dead" for d in letters) else set()
        return MessageDetail(
            message=_summary(row, dead),
            raw=None if body is None else mask(row.protocol, body.media_type, body.body),
            media_type=None if body is None else body.media_type,
            ack=row.ack,
            events=events,
            dead_letters=[
                DeadLetterView(
                    d.id, d.group, d.event_id, d.error_type, d.error, d.status, d.dead_at
                )
                for d in letters
            ],
            trace_path=f"/v1/trace/{row.correlation_id}" if row.correlation_id else None,
        )

    @staticmethod
    def _events(conn: Any, row: Any) -> list[EventView]:
        return [
            EventView(
                seq=e.seq,
                id=e.id,
                type=e.type,
                subject=e.subject,
                correlation_id=e.correlation_id,
                time=e.time,
                payload=orjson.loads(e.payload),
            )
            for e in store.events_of(conn, row)
        ]

    def preview(self, filters: MessageFilter) -> int:
        with self.reader.connect() as conn:
            return store.count(conn, filters)

    def _applied(self, row: Any, record: MessageRecord | None) -> None:
        """A parked message applied by its reprocess: its parked rows say applied now (its
        exception, if still open, replays as a duplicate)."""
        if record is None or not row.idempotency_key or not record.correlation_id:
            return
        with self.engine.begin() as conn:
            store.applied_after_park(
                conn, row.idempotency_key, record.correlation_id, record.event_count
            )

    def reprocess(
        self,
        *,
        ids: Sequence[str] | None = None,
        filters: MessageFilter | None = None,
        reason: str,
        actor: str,
        facilities: frozenset[str] | None = None,
    ) -> ReprocessReport:
        reason = reason.strip()
        if not reason:
            raise ReprocessRefused("a reprocess needs a reason", "reason")
        if (ids is None) == (filters is None):
            raise ReprocessRefused("give either ids or a filter, not both or neither", "ids")
        if ids is not None and not ids:
            raise ReprocessRefused("no message ids given", "ids")
        if ids is not None and len(ids) > self.max_reprocess:
            raise ReprocessRefused(f"at most {self.max_reprocess} ids at once", "ids")
        with self.reader.connect() as conn:
            if filters is not None:
                scoped = filters
                if facilities is not None:
                    own = facilities if filters.facilities is None else filters.facilities
                    scoped = _with_scope(filters, own & facilities)
                selected = store.ids(conn, scoped, self.max_reprocess)
            else:
                assert ids is not None
                selected = list(dict.fromkeys(ids))
        report = ReprocessReport(len(selected))
        for message_id in selected:
            outcome = self._one(message_id, reason, actor, facilities)
            report.outcomes.append(outcome)
        log.info("messages.reprocessed", actor=actor, counts=report.counts())
        return report

    def _one(
        self, message_id: str, reason: str, actor: str, facilities: frozenset[str] | None
    ) -> ReprocessOutcome:
        with self.reader.connect() as conn:
            row = store.get(conn, message_id)
            body = store.body(conn, message_id) if row is not None else None
        if row is None or (facilities is not None and row.facility not in facilities):
            return ReprocessOutcome(message_id, "skipped", detail="no such message")
        original = _summary(row, set())
        reprocessor = self.reprocessors.get(row.connector)
        if body is None:
            outcome = ReprocessOutcome(message_id, "skipped", detail="its body was pruned")
        elif row.direction != "in" or reprocessor is None:
            why = f"no inbound path to feed a {row.direction} {row.connector} message back to"
            outcome = ReprocessOutcome(message_id, "skipped", detail=why)
        else:
            try:
                record = reprocessor(body.body, body.media_type, original)
            except Exception as error:  # the message stays as it was; the audit says why
                log.error("messages.reprocess_failed", message_id=message_id, error=str(error))
                outcome = ReprocessOutcome(message_id, "failed", detail=str(error)[:500])
            else:
                status = str(record.status) if record and record.status else "unrecorded"
                if row.status == MessageStatus.PARKED and status == MessageStatus.APPLIED:
                    self._applied(row, record)
                outcome = ReprocessOutcome(
                    message_id,
                    status,
                    new_message_id=record.id if record else None,
                    detail=(record.error or "") if record else "",
                )
        with self.engine.begin() as conn:
            audit.append(
                conn,
                actor=actor,
                action="message.reprocess",
                target_type="message",
                target_id=message_id,
                detail={
                    "reason": reason[:500],
                    "outcome": outcome.outcome,
                    "new_message_id": outcome.new_message_id,
                    "detail": outcome.detail[:500],
                },
            )
        return outcome


def _with_scope(filters: MessageFilter, facilities: frozenset[str]) -> MessageFilter:
    return MessageFilter(**{**filters.__dict__, "facilities": facilities})


__all__ = [
    "MAX_LIMIT",
    "BrowserError",
    "DeadLetterView",
    "EventView",
    "InvalidCursor",
    "MessageBrowser",
    "MessageDetail",
    "MessageFilter",
    "MessagePage",
    "MessageSummary",
    "ReprocessOutcome",
    "ReprocessRefused",
    "ReprocessReport",
    "Reprocessor",
    "mask",
]
