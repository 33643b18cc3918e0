"""Retention of raw message bodies: a body older than its connector's age is archived (if an
archive directory is set) and then deleted; the message's row, its events, the business
records, the ledger and the journals are kept.

Bounded and never in ingest's way: a round reads at most ``max_batches`` batches of ``batch``
bodies, each read without the write lock, archived to its own file outside any transaction
(written and fsynced before anything is deleted), then deleted by id in one short
transaction; between batches it pauses (``pause`` seconds), so that the group commit's
writer takes the lock in between. A crash between archive and delete leaves the body in the
store and its copy in the archive: the next round archives it again (a second file) and
deletes it — the archive may hold a body twice, never miss one.

Archive format: ``<archive_dir>/<connector>/<first received date>/bodies-<first id>.jsonl.gz``,
one JSON object per line: ``message_id``, ``connector``, ``received_at``, ``media_type``,
``body``. The raw bodies hold patient data: the directory must be protected like the
database.
"""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from medbridge.observability.logging import get_logger
from medbridge.store import messages as store
from medbridge.store.db import read_only

log = get_logger(__name__)

EVERY_CONNECTOR = "*"


@dataclass
class PruneReport:
    pruned: dict[str, int] = field(default_factory=dict)
    """Bodies deleted, per connector."""
    archived: list[Path] = field(default_factory=list)
    batches: int = 0
    complete: bool = True
    """False: the round stopped at its batch limit with more to prune (the next continues)."""

    @property
    def total(self) -> int:
        return sum(self.pruned.values())


class MessageRetention:
    """``ages``: per connector name (``EVERY_CONNECTOR`` for the others), how long a body is
    kept."""

    def __init__(
        self,
        engine: Engine,
        ages: Mapping[str, timedelta],
        *,
        archive_dir: Path | None = None,
        batch: int = 1000,
        max_batches: int = 100,
        pause: float = 0.05,
        interval: float = 3600.0,
    ) -> None:
        self.engine, self.reader = engine, read_only(engine)
        self.ages, self.archive_dir = dict(ages), archive_dir
        self.batch, self.max_batches = batch, max_batches
        self.pause, self.interval = pause, interval
        self._stop = threading.Event()

    def prune_once(self, now: datetime | None = None) -> PruneReport:
        """One bounded round over every connector's expired bodies, oldest first."""
        now = now or datetime.now(UTC)
        report = PruneReport()
        named = sorted(c for c in self.ages if c != EVERY_CONNECTOR)
        for connector in [*named, EVERY_CONNECTOR]:
            age = self.ages.get(connector)
            if age is None:
                continue
            selector = None if connector == EVERY_CONNECTOR else connector
            if not self._prune(selector, now - age, named, report):
                report.complete = False
                break
        if report.total:
            log.info("messages.pruned", pruned=report.pruned, batches=report.batches)
        return report

    def _prune(
        self, connector: str | None, before: datetime, others: Sequence[str], report: PruneReport
    ) -> bool:
        """Batches of one selector until none is left (True) or the round's limit (False)."""
        while True:
            if report.batches >= self.max_batches:
                return False
            with self.reader.connect() as conn:
                found = store.expired_bodies(conn, connector, before, self.batch, others)
            if not found:
                return True
            if self.archive_dir is not None:
                report.archived.append(self._archive(found))
            with self.engine.begin() as conn:
                store.drop_bodies(conn, [r.message_id for r in found])
            report.batches += 1
            for r in found:
                report.pruned[r.connector] = report.pruned.get(r.connector, 0) + 1
            if len(found) < self.batch:
                return True
            if self._stop.wait(self.pause):
                return False

    def _archive(self, found: Sequence[Any]) -> Path:
        assert self.archive_dir is not None
        first = found[0]
        day = str(first.received_at.strftime("%Y-%m-%d"))
        folder: Path = self.archive_dir / _safe(first.connector) / day
        folder.mkdir(parents=True, exist_ok=True)
        path: Path = folder / f"bodies-{_safe(first.message_id)}.jsonl.gz"
        partial = path.with_suffix(".gz.partial")
        with partial.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
            for r in found:
                line = {
                    "message_id": r.message_id,
                    "connector": r.connector,
                    "received_at": r.received_at.isoformat(),
                    "media_type": r.media_type,
                    "body": r.body,
                }
                out.write(orjson.dumps(line) + b"\n")
            out.flush()
            raw.flush()
            os.fsync(raw.fileno())
        partial.replace(path)  # whole, or not there: never a half-written archive
        return path

    def run(self, stop: threading.Event) -> None:
        """The worker's loop: a round every ``interval`` seconds (sooner while a round ends
        at its batch limit)."""
        self._stop = stop
        while not stop.is_set():
            try:
                report = self.prune_once()
            except Exception:  # the database away: the next round's
                log.exception("messages.prune_failed")
                report = PruneReport()
            stop.wait(self.pause if not report.complete else self.interval)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "_"


def retention_ages(days: Mapping[str, float]) -> dict[str, timedelta]:
    return {connector: timedelta(days=d) for connector, d in days.items()}
