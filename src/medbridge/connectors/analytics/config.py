"""Typed configuration of the analytics export connector."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

NAME = "analytics"


class AnalyticsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    directory: Path
    """Where the datasets, the DuckDB file and the watermarks live (created if missing)."""
    duckdb_file: str = "medbridge.duckdb"
    views_file: str = "views.sql"
