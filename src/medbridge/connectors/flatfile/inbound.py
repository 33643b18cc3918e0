"""The watched folder of snapshot files, and the variance report a reconciled file yields.

``WatchedFolder`` hands each finished file to the reconciler of its source (``Reconciler``:
``flows.stock_snapshots.SnapshotReconciler`` compares it with the ledger) and files it under
``processed/`` with its ``VarianceReport``, or under ``rejected/`` with the reason.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from medbridge.connectors.flatfile.codec import SnapshotKey, digest, is_complete
from medbridge.connectors.flatfile.config import FlatFileConfig
from medbridge.connectors.flatfile.errors import FlatFileError
from medbridge.observability.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Variance:
    item: str
    location: str
    lot: str | None
    unit: str
    expected: Decimal
    """On hand in the ledger (base unit)."""
    counted: Decimal
    """In the file (base unit)."""
    line: int | None
    """The file's line, ``None`` for a ledger lot the file does not list."""

    @property
    def difference(self) -> Decimal:
        """counted - expected: the signed adjustment that would correct the ledger."""
        return self.counted - self.expected

    @property
    def key(self) -> SnapshotKey:
        return (self.item, self.location, self.lot)


@dataclass(frozen=True)
class VarianceReport:
    source: str
    file: str
    sha256: str
    rows: int
    locations: tuple[str, ...]
    variances: tuple[Variance, ...]
    adjustments_emitted: int = 0
    adjustments_duplicate: int = 0
    reconciled_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, datetime | date):
                return value.isoformat()
            return value

        body = {k: plain(v) for k, v in asdict(self).items() if k != "variances"}
        body["locations"] = list(self.locations)
        body["variances"] = [
            {**{k: plain(v) for k, v in asdict(x).items()}, "difference": str(x.difference)}
            for x in self.variances
        ]
        return body


class Reconciler(Protocol):
    """Reconciles one source's files: ``reconcile_bytes`` returns the file's report, or
    raises ``FlatFileError`` (the file is refused: it is moved to ``rejected/``); any other
    error leaves the file for the next scan."""

    @property
    def config(self) -> FlatFileConfig: ...

    def reconcile_bytes(self, raw: bytes, name: str) -> VarianceReport: ...


@dataclass(frozen=True)
class FolderOutcome:
    source: str
    file: str
    status: str
    """``processed``, ``rejected`` or ``waiting`` (no trailer yet, within the grace period)."""
    report: VarianceReport | None = None
    error: FlatFileError | None = None


class WatchedFolder:
    """``<root>/<source>/incoming/`` per configured source. A finished file is reconciled and
    moved to ``processed/`` with ``<file>.report.json`` beside it; a refused one to
    ``rejected/`` with ``<file>.reason.json``. The JSON is written first (to a temporary name,
    then renamed), the file is renamed last: a crash in between leaves the file in incoming/,
    and processing it again applies nothing twice (idempotency keys). A file whose last line
    is not the trailer is not touched while younger than the source's
    ``incomplete_grace_seconds`` (it may still be being written); after that it is rejected
    as truncated. Hidden files (``.name``) are ignored: senders may write there and rename.
    Any other failure (database down) propagates and leaves the file for the next scan.
    """

    def __init__(
        self,
        root: Path,
        reconcilers: Mapping[str, Reconciler],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root, self.reconcilers, self.clock = root, dict(reconcilers), clock

    def ensure_folders(self) -> None:
        for source in self.reconcilers:
            for sub in ("incoming", "processed", "rejected"):
                (self.root / source / sub).mkdir(parents=True, exist_ok=True)

    def scan(self) -> list[FolderOutcome]:
        self.ensure_folders()
        outcomes: list[FolderOutcome] = []
        for source, reconciler in sorted(self.reconcilers.items()):
            incoming = self.root / source / "incoming"
            for path in sorted(p for p in incoming.iterdir() if p.is_file()):
                if path.name.startswith("."):
                    continue
                outcomes.append(self._one(source, reconciler, path))
        return outcomes

    def _one(self, source: str, reconciler: Reconciler, path: Path) -> FolderOutcome:
        config = reconciler.config
        stat = path.stat()
        raw = path.read_bytes()
        if not is_complete(raw, config) and (
            self.clock() - stat.st_mtime < config.incomplete_grace_seconds
        ):
            return FolderOutcome(source, path.name, "waiting")
        try:
            report = reconciler.reconcile_bytes(raw, path.name)
        except FlatFileError as exc:
            target = self._target(source, "rejected", path.name, digest(raw))
            body = {"source": source, "file": path.name, "sha256": digest(raw), **exc.as_dict()}
            _write_json(target.with_name(target.name + ".reason.json"), body)
            os.replace(path, target)
            log.warning("flatfile.rejected", source=source, file=path.name, reason=str(exc))
            return FolderOutcome(source, path.name, "rejected", error=exc)
        target = self._target(source, "processed", path.name, report.sha256)
        _write_json(target.with_name(target.name + ".report.json"), report.as_dict())
        os.replace(path, target)
        return FolderOutcome(source, path.name, "processed", report=report)

    def _target(self, source: str, folder: str, name: str, sha256: str) -> Path:
        target = self.root / source / folder / name
        if target.exists():  # the same name sent again: keep both
            target = target.with_name(f"{target.stem}.{sha256[:12]}{target.suffix}")
        return target


def _write_json(path: Path, body: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
