"""Analytics platforms: plain rows (arrow tables) to Parquet partitioned by day, and a DuckDB
file of views over them. Outbound only: ``ParquetExport`` (``outbound``) writes one day of a
dataset at a time, whole, so a day written again replaces what was there and never adds a
duplicate; it keeps each dataset's watermark beside the data (``_export_state.json``).

It takes what it is given: what may leave the hospital's systems (no patient identity, no
encounter pseudonym) is decided by the flow that reads the store
(``medbridge.flows.analytics_export``).
"""

from __future__ import annotations

from medbridge.connectors.analytics.config import NAME, AnalyticsConfig
from medbridge.connectors.analytics.errors import AnalyticsError, ExportDirectoryError
from medbridge.connectors.analytics.outbound import ExportState, ParquetExport

__all__ = [
    "NAME",
    "AnalyticsConfig",
    "AnalyticsError",
    "ExportDirectoryError",
    "ExportState",
    "ParquetExport",
]
