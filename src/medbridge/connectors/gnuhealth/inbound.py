"""The GNU Health poller: done prescription ``stock.move`` records -> the inbound intake.

GNU Health has no push: MedBridge polls ``stock.move`` over JSON-RPC for records with
``state = done`` whose ``origin`` is a prescription, ordered by ``(write_date, id)``.

Cursor. ``since`` is the largest ``write_date`` handed over (the server's clock, never ours).
Every poll re-reads from ``since - overlap``: a transaction stamps ``write_date`` when it
starts, so a slow one can commit after a later one and land behind the cursor. Records
re-read in that window are skipped by move id (``seen``). Within a poll, pages follow on the
key ``(write_date, id)``, so a record written meanwhile moves behind the page being read and
is read later, never skipped.

Hand-over and durability. Each move goes to ``Intake.receive`` as one message with the frozen
key ``gnuhealth:<database>:stock.move:<id>``; ``receive`` returns once the movement is durably
appended, recognised as a duplicate, or parked in the exception queue. Only after a whole page
is handed over is the cursor written to ``<var>/connectors/gnuhealth/<source>.cursor.json``
(temporary file, fsync, rename). A crash in between re-reads that page; the idempotency key
makes the re-read change nothing. Losing the cursor file costs a re-read from
``initial_since``, never a duplicate.

Failures (``errors.py``): a poll that fails hands over nothing more and leaves the cursor where
it was; ``run`` logs it and tries again after a backoff (longer for a refused login).

Known limits: a move that is never written after its creation (``write_date`` NULL) is not
seen; GNU Health's wizard and Tryton's ``do`` always write it. A return of a dispensed
medicament to the pharmacy (customer -> storage with the same origin) arrives as a dispense
from the customer location, which does not resolve and so parks in the exception queue.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from medbridge.canonical.inbound import InboundMovement
from medbridge.connectors.gnuhealth.client import GnuHealthClient
from medbridge.connectors.gnuhealth.codec import from_utc
from medbridge.connectors.gnuhealth.config import GnuHealthConfig
from medbridge.connectors.gnuhealth.errors import (
    GnuHealthAuthError,
    GnuHealthError,
    GnuHealthProtocolError,
)
from medbridge.connectors.gnuhealth.mapping import (
    MOVE_FIELDS,
    MOVE_MODEL,
    PRESCRIPTION_MODEL,
    idempotency_key,
    modified_at,
    parse,
)
from medbridge.observability import metrics
from medbridge.observability.logging import get_logger
from medbridge.retry import Backoff, retrying

log = get_logger(__name__)

CURSOR_VERSION = 1
MAX_BACKOFF = 300.0


class Intake(Protocol):
    """Where the poller hands movements over (``medbridge.flows.inbound.InboundIntake``).

    ``receive`` returns only once the message is durably appended, known as a duplicate of
    ``idempotency_key``, or parked in the exception queue; it raises if none of these happened.
    """

    def receive(
        self, drafts: Sequence[InboundMovement], *, source: str, idempotency_key: str
    ) -> object: ...


@dataclass
class Cursor:
    since: datetime | None = None
    """The largest ``write_date`` handed over (aware UTC)."""
    seen: dict[int, datetime] = field(default_factory=dict)
    """Move ids handed over whose ``write_date`` is within the overlap window before ``since``."""

    def advance(self, move_id: int, modified: datetime) -> None:
        self.seen[move_id] = modified
        if self.since is None or modified > self.since:
            self.since = modified

    def prune(self, overlap: timedelta) -> None:
        if self.since is not None:
            horizon = self.since - overlap
            self.seen = {k: v for k, v in self.seen.items() if v >= horizon}


@dataclass(frozen=True)
class PollResult:
    handed_over: tuple[str, ...]
    """Idempotency keys handed to the intake, in order."""
    skipped: int
    """Records re-read in the overlap window and already handed over."""
    since: datetime | None


class CursorStore:
    """The cursor as a small JSON file, replaced atomically."""

    def __init__(self, path: Path, config: GnuHealthConfig) -> None:
        self.path, self.config = path, config

    def load(self) -> Cursor:
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != CURSOR_VERSION or data.get("database") != (
                self.config.database
            ):
                raise ValueError("written for another version or database")
            return Cursor(
                since=datetime.fromisoformat(data["since"]) if data.get("since") else None,
                seen={int(k): datetime.fromisoformat(v) for k, v in data["seen"].items()},
            )
        except FileNotFoundError:
            return Cursor()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Safe, if slow: the re-read is deduplicated by the idempotency keys.
            log.warning("gnuhealth.cursor_unreadable", path=str(self.path), error=str(exc)[:200])
            return Cursor()

    def save(self, cursor: Cursor) -> None:
        data = {
            "version": CURSOR_VERSION,
            "source_system": self.config.source_system,
            "database": self.config.database,
            "since": cursor.since.isoformat() if cursor.since else None,
            "seen": {str(k): v.isoformat() for k, v in sorted(cursor.seen.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as handle:
            handle.write(json.dumps(data, indent=1) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class Poller:
    """Polls one GNU Health database and hands each new dispense to the intake."""

    def __init__(
        self,
        config: GnuHealthConfig,
        intake: Intake,
        *,
        client: GnuHealthClient | None = None,
        cursor_store: CursorStore | None = None,
    ) -> None:
        self.config, self.intake = config, intake
        self._owns_client = client is None
        self.client = client or GnuHealthClient(config)
        self.cursors = cursor_store or CursorStore(config.cursor_file, config)
        self.cursor = self.cursors.load()
        self._overlap = timedelta(seconds=config.overlap)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def poll_once(self) -> PollResult:
        """Read every record written since the cursor (minus the overlap) and hand it over."""
        handed: list[str] = []
        skipped = 0
        after: tuple[datetime, int] | None = None
        while True:
            page = self.client.search_read(
                MOVE_MODEL,
                self._domain(after),
                MOVE_FIELDS,
                limit=self.config.page_size,
                order=[("write_date", "ASC"), ("id", "ASC")],
            )
            for record in page:
                move_id, modified = record.get("id"), modified_at(record)
                if not isinstance(move_id, int):
                    raise GnuHealthProtocolError(f"{MOVE_MODEL} record without an integer id")
                after = (modified, move_id)
                if move_id in self.cursor.seen:
                    skipped += 1
                else:
                    handed.append(self._hand_over(record))
                self.cursor.advance(move_id, modified)
            if page:
                self.cursor.prune(self._overlap)
                self.cursors.save(self.cursor)
            if len(page) < self.config.page_size:
                break
        if handed:
            metrics.stage("gnuhealth", "handed_over").inc(len(handed))
        log.info(
            "gnuhealth.polled",
            database=self.config.database,
            handed_over=len(handed),
            skipped=skipped,
            since=self.cursor.since.isoformat() if self.cursor.since else None,
        )
        return PollResult(tuple(handed), skipped, self.cursor.since)

    def run(self, stop: threading.Event) -> None:
        """Poll every ``poll_interval`` until ``stop`` is set. A failed poll (the server, the
        intake or the store) is tried again after a backoff (ten times longer for a refused
        login), never given up while the process runs."""
        poll = retrying(
            "gnuhealth.poll",
            transient=lambda error: isinstance(error, Exception),
            backoff=Backoff(initial=self.config.poll_interval, maximum=MAX_BACKOFF),
            until=stop,
            slower=lambda error: 10.0 if isinstance(error, GnuHealthAuthError) else 1.0,
            on_retry=self._poll_failed,
        )
        while not stop.is_set():
            try:
                poll(self.poll_once)
            except Exception as error:  # still failing when told to stop: report the last one
                self._poll_failed(error, None)
                return
            stop.wait(self.config.poll_interval)

    def _poll_failed(self, error: BaseException, retry_in: float | None) -> None:
        metrics.stage("gnuhealth", "poll_failed").inc()
        if isinstance(error, GnuHealthError):
            log.warning(
                "gnuhealth.poll_failed",
                database=self.config.database,
                error_type=type(error).__name__,
                error=str(error),
                retry_in=retry_in,
            )
        else:  # the intake or the store failed
            log.error(
                "gnuhealth.poll_failed",
                database=self.config.database,
                error_type=type(error).__name__,
                retry_in=retry_in,
                exc_info=error,  # drafts carry no patient data, so neither can this
            )

    def _domain(self, after: tuple[datetime, int] | None) -> list[Any]:
        domain: list[Any] = [
            ("state", "=", "done"),
            ("origin", "like", f"{PRESCRIPTION_MODEL},%"),
            ("write_date", "!=", None),
        ]
        if after is not None:
            stamp, move_id = from_utc(after[0]), after[1]
            domain.append(
                [
                    "OR",
                    ("write_date", ">", stamp),
                    [("write_date", "=", stamp), ("id", ">", move_id)],
                ]
            )
        else:
            lower = (
                self.cursor.since - self._overlap
                if self.cursor.since is not None
                else self.config.initial_since
            )
            if lower is not None:
                domain.append(("write_date", ">=", from_utc(lower)))
        return domain

    def _hand_over(self, record: dict[str, Any]) -> str:
        draft = parse(record, self.config)
        key = idempotency_key(self.config.database, record["id"])
        self.intake.receive([draft], source=self.config.event_source, idempotency_key=key)
        return key
