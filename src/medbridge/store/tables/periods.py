"""The accounting periods a close has locked (``flows.period_close``)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Integer, String, Table, Text

from medbridge.store.tables.base import metadata
from medbridge.store.types import UTCDateTime

periods = Table(
    "periods",
    metadata,
    Column("period", String(7), primary_key=True),  # YYYY-MM
    Column("state", String(8), nullable=False),  # open | closed (a row exists once closed)
    Column("cutoff", UTCDateTime, nullable=False),  # the moment the close read the books as of
    Column("closed_at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("differences", Integer, nullable=False),  # how many the close report listed
    Column("forced_reason", Text),  # why it was closed with differences (None: it had none)
    Column("report", JSON, nullable=False),  # the close report as it was at the close
)
