"""The ERP reconciliation checkpoint: MedBridge's journal vs the ERP's moves for a period.

Reads both sides (the journal from the store, the moves through the ``ErpPort``) and compares
them with ``medbridge.domain.reconciliation.reconcile``. An unreachable ERP raises the port's
``ErpUnavailable``: a checkpoint that could not look is not a clean one.
"""

from __future__ import annotations

import calendar
from datetime import date

from sqlalchemy import Engine

from medbridge.canonical.erp import ErpPort
from medbridge.domain.reconciliation import BookLine, Reconciliation, reconcile
from medbridge.store import erp_postings


def period_bounds(period: str) -> tuple[date, date]:
    """``YYYY-MM`` -> its first and last day."""
    try:
        year, month = (int(part) for part in period.split("-"))
        first = date(year, month, 1)
    except ValueError as error:
        raise ValueError(f"period {period!r} is not YYYY-MM") from error
    return first, first.replace(day=calendar.monthrange(year, month)[1])


def reconcile_erp(engine: Engine, erp: ErpPort, start: date, end: date) -> Reconciliation:
    with engine.connect() as conn:
        rows = erp_postings.journal_lines_between(conn, start, end)
    book = [BookLine(r.entry_id, r.account, r.cost_center, r.debit, r.credit) for r in rows]
    return reconcile(book, erp.ledger_lines(start, end))


def reconcile_period(engine: Engine, erp: ErpPort, period: str) -> Reconciliation:
    start, end = period_bounds(period)
    return reconcile_erp(engine, erp, start, end)
