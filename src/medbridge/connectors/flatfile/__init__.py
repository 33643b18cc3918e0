"""Flat files: nightly CSV inventory snapshots from legacy systems, dropped in a watched
folder, reconciled against the event-driven ledger.

``parse`` (codec: bytes -> typed rows, or a refusal naming line and column; a file without its
``#EOF,<rows>`` trailer is incomplete and never applied), ``counted`` / ``count_adjustment``
(mapping), ``WatchedFolder`` (inbound: ``<root>/<source>/incoming/`` -> ``processed/`` or
``rejected/``, each file through its source's ``Reconciler``) and ``VarianceReport``. The
comparison with the ledger is a flow: ``flows.stock_snapshots.SnapshotReconciler`` (one file ->
``VarianceReport``, and optionally signed count adjustments to a movement sink). No peer, so
no fake.
"""

from __future__ import annotations

from medbridge.connectors.flatfile.codec import Snapshot, SnapshotRow, parse
from medbridge.connectors.flatfile.config import ColumnMapping, FlatFileConfig
from medbridge.connectors.flatfile.errors import FlatFileError, Incomplete, SnapshotRefused
from medbridge.connectors.flatfile.inbound import (
    FolderOutcome,
    Reconciler,
    Variance,
    VarianceReport,
    WatchedFolder,
)

NAME = "flatfile"

__all__ = [
    "NAME",
    "ColumnMapping",
    "FlatFileConfig",
    "FlatFileError",
    "FolderOutcome",
    "Incomplete",
    "Reconciler",
    "Snapshot",
    "SnapshotRefused",
    "SnapshotRow",
    "Variance",
    "VarianceReport",
    "WatchedFolder",
    "parse",
]
