"""Typed configuration of the analytics export connector."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

NAME = "analytics"


class AnalyticsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    directory: Path
    """Where the datasets, the DuckDB file and the watermarks live (created if missing)."""
    duckdb_file: str = "medbridge.duckdb"
    views_file: str = "views.sql"
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    """Parquet page compression; ``none`` leaves every value readable in the file's bytes
    (what a test greps for a canary)."""
