"""Reconcile a snapshot file with the event-driven ledger, and the watched folder that feeds it.

``SnapshotReconciler.reconcile`` parses the whole file first (``codec``), checks it against
master data (``mapping``), then compares it with ``store.ledger.stock`` per item/location/lot:
a lot on either side only is a variance too. With ``emit_adjustments`` every variance becomes
one signed count adjustment, all handed to the sink in one all-or-nothing submission. A
refused file raises ``SnapshotRefused`` before anything is read from or handed to anyone.

The comparison is against the ledger as applied when the file is read: movements still on
the bus (not yet drained) show as variances.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import Engine

from medbridge.canonical.movements import StockMovement
from medbridge.connectors.flatfile.codec import SnapshotKey, digest, is_complete, parse
from medbridge.connectors.flatfile.config import FlatFileConfig
from medbridge.connectors.flatfile.errors import FlatFileError, SnapshotRefused
from medbridge.connectors.flatfile.mapping import adjustment_key, count_adjustment, counted
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.store import ledger

log = get_logger(__name__)


@dataclass(frozen=True)
class Adjustment:
    """One submission for the sink (the shape of ``flows.intake.Submission``)."""

    movement: StockMovement
    idempotency_key: str
    correlation_id: UUID | None = None
    causation_id: UUID | None = None


class AcceptedLike(Protocol):
    @property
    def duplicate(self) -> bool: ...


class MovementSink(Protocol):
    """Validate and append every submission durably, all or nothing, idempotent by
    ``source`` + ``idempotency_key`` (a repeated key is answered ``duplicate``); raise if
    nothing was stored. ``flows.intake.MovementIntake`` fits. Submissions are ``Adjustment``s."""

    def submit(self, submissions: Sequence[Any], source: str) -> Sequence[AcceptedLike]: ...


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


class SnapshotReconciler:
    def __init__(
        self,
        engine: Engine,
        masterdata: MasterDataRepository,
        config: FlatFileConfig,
        sink: MovementSink | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if config.emit_adjustments and sink is None:
            raise ValueError("emit_adjustments needs a movement sink")
        self.engine, self.masterdata, self.config = engine, masterdata, config
        self.sink, self.clock = sink, clock

    def reconcile(self, path: Path) -> VarianceReport:
        raw = path.read_bytes()
        return self.reconcile_bytes(raw, path.name)

    def reconcile_bytes(self, raw: bytes, name: str) -> VarianceReport:
        config = self.config
        if len(raw) > config.max_bytes:
            raise SnapshotRefused(f"file over {config.max_bytes} bytes")
        snapshot = parse(raw, config, name)
        file_locations = {r.location for r in snapshot.rows}
        scope = sorted(file_locations | config.locations)
        with self.engine.connect() as conn:
            items = self.masterdata.items(conn, {r.item for r in snapshot.rows})
            known = set(self.masterdata.locations(conn, set(scope)))
            counts = counted(snapshot.rows, items, known, config)
            unknown = sorted(set(config.locations) - known)
            if unknown:
                raise SnapshotRefused(f"configured locations unknown: {', '.join(unknown)}")
            on_hand: dict[SnapshotKey, Decimal] = {}
            for location in scope:
                for row in _all_stock(conn, location):
                    on_hand[(row.item, row.location, row.lot)] = row.quantity
            ledger_items = self.masterdata.items(conn, {k[0] for k in on_hand} - set(items))
        base_units = {code: item.base_unit for code, item in {**items, **ledger_items}.items()}

        variances: list[Variance] = []
        for key in sorted(set(counts) | set(on_hand), key=lambda k: (k[0], k[1], k[2] or "")):
            expected = on_hand.get(key, Decimal(0))
            count = counts.get(key)
            found = Decimal(0) if count is None else count.quantity
            if abs(found - expected) > config.tolerance:
                variances.append(
                    Variance(
                        item=key[0],
                        location=key[1],
                        lot=key[2],
                        unit=base_units[key[0]],
                        expected=expected,
                        counted=found,
                        line=None if count is None else count.line,
                    )
                )
        report = VarianceReport(
            source=config.source,
            file=name,
            sha256=snapshot.sha256,
            rows=len(snapshot.rows),
            locations=tuple(scope),
            variances=tuple(variances),
        )
        if config.emit_adjustments and variances:
            assert self.sink is not None
            occurred_at = self.clock()
            submissions = [
                Adjustment(
                    movement=count_adjustment(
                        v.key,
                        v.difference,
                        v.unit,
                        None if (c := counts.get(v.key)) is None else c.expiry,
                        occurred_at,
                        name,
                    ),
                    idempotency_key=adjustment_key(config.source, name, snapshot.sha256, v.key),
                )
                for v in variances
            ]
            accepted = self.sink.submit(submissions, f"flatfile:{config.source}")
            duplicates = sum(1 for a in accepted if a.duplicate)
            report = _replace_counts(report, len(accepted) - duplicates, duplicates)
        log.info(
            "flatfile.reconciled",
            source=config.source,
            file=name,
            rows=report.rows,
            variances=len(report.variances),
            emitted=report.adjustments_emitted,
            duplicates=report.adjustments_duplicate,
        )
        return report


def _replace_counts(report: VarianceReport, emitted: int, duplicate: int) -> VarianceReport:
    return replace(report, adjustments_emitted=emitted, adjustments_duplicate=duplicate)


def _all_stock(conn: Any, location: str) -> list[ledger.StockRow]:
    rows: list[ledger.StockRow] = []
    page = 1000
    while True:
        batch = ledger.stock(conn, location=location, limit=page, offset=len(rows))
        rows.extend(batch)
        if len(batch) < page:
            return rows


# --- the watched folder ----------------------------------------------------------------------


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
        reconcilers: Mapping[str, SnapshotReconciler],
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

    def _one(self, source: str, reconciler: SnapshotReconciler, path: Path) -> FolderOutcome:
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
