"""Reconcile a legacy system's stock snapshot (``connectors.flatfile``) with the
event-driven ledger.

``SnapshotReconciler.reconcile`` parses the whole file first (the connector's codec), checks
it against master data (its mapping), then compares it with ``store.ledger.stock`` per
item/location/lot: a lot on either side only is a variance too. With ``emit_adjustments``
every variance becomes one signed count adjustment, all handed to the sink in one
all-or-nothing submission. A refused file raises ``SnapshotRefused`` before anything is read
from or handed to anyone. The connector's ``WatchedFolder`` feeds it files.

The comparison is against the ledger as applied when the file is read: movements still on
the bus (not yet drained) show as variances.

Every file is a message of the message store (``flatfile``, its source as sender): applied
(duplicate when every adjustment it emits was emitted before) with its report's summary as
the acknowledgement, or refused with the reason; the row is written once the outcome is
known, after the adjustments' own transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import Engine

from medbridge.canonical.messages import MessageRecord, MessageStatus
from medbridge.canonical.movements import StockMovement
from medbridge.connectors.flatfile import (
    FlatFileConfig,
    FlatFileError,
    SnapshotRefused,
    Variance,
    VarianceReport,
    parse,
)
from medbridge.connectors.flatfile.codec import SnapshotKey
from medbridge.connectors.flatfile.mapping import adjustment_key, count_adjustment, counted
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.store import ledger
from medbridge.store import messages as message_store
from medbridge.store.messages import MAX_BODY_CHARS

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
        record = MessageRecord(
            protocol="flatfile",
            connector="flatfile",
            raw=raw[:MAX_BODY_CHARS].decode(self.config.encoding, "replace"),
            sender=self.config.source,
            message_type="snapshot",
            control_id=name[:200],
            media_type="text/csv",
        )
        try:
            report = self._reconcile_bytes(raw, name)
        except FlatFileError as error:
            record.error = str(error)[:2000]
            record.ack = f"refused: {record.error}"
            record.settle(MessageStatus.REFUSED)
            message_store.MessageRecorder(self.engine).write([record])
            raise
        emitted = report.adjustments_emitted + report.adjustments_duplicate
        record.business_key = report.sha256
        record.idempotency_key = f"flatfile:{self.config.source}:{name}:{report.sha256}"[:200]
        record.event_count = emitted
        record.ack = (
            f"{report.rows} row(s), {len(report.variances)} variance(s),"
            f" {report.adjustments_emitted} adjustment(s) emitted,"
            f" {report.adjustments_duplicate} already emitted"
        )
        duplicate = emitted > 0 and report.adjustments_emitted == 0
        record.settle(MessageStatus.DUPLICATE if duplicate else MessageStatus.APPLIED)
        message_store.MessageRecorder(self.engine).write([record])
        return report

    def _reconcile_bytes(self, raw: bytes, name: str) -> VarianceReport:
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
