"""Flat files: nightly CSV inventory snapshots from legacy systems, dropped in a watched
folder, reconciled against the event-driven ledger.

``parse`` (codec: bytes -> typed rows, or a refusal naming line and column; a file without its
``#EOF,<rows>`` trailer is incomplete and never applied), ``counted`` / ``count_adjustment``
(mapping), ``SnapshotReconciler`` (inbound: one file -> ``VarianceReport``, and optionally
signed count adjustments to a movement sink) and ``WatchedFolder`` (inbound:
``<root>/<source>/incoming/`` -> ``processed/`` or ``rejected/``). No peer, so no fake.
"""

from __future__ import annotations

from medbridge.connectors.flatfile.codec import Snapshot, SnapshotRow, parse
from medbridge.connectors.flatfile.config import ColumnMapping, FlatFileConfig
from medbridge.connectors.flatfile.errors import FlatFileError, Incomplete, SnapshotRefused
from medbridge.connectors.flatfile.inbound import (
    Adjustment,
    FolderOutcome,
    MovementSink,
    SnapshotReconciler,
    Variance,
    VarianceReport,
    WatchedFolder,
)

NAME = "flatfile"

__all__ = [
    "NAME",
    "Adjustment",
    "ColumnMapping",
    "FlatFileConfig",
    "FlatFileError",
    "FolderOutcome",
    "Incomplete",
    "MovementSink",
    "Snapshot",
    "SnapshotReconciler",
    "SnapshotRefused",
    "SnapshotRow",
    "Variance",
    "VarianceReport",
    "WatchedFolder",
    "parse",
]
