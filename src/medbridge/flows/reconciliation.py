"""The ERP reconciliation checkpoint: MedBridge's journal vs the ERP's ledger.

Reads both sides (the journal from the store, the ERP's posted lines through the ``ErpPort``)
and compares them with ``medbridge.domain.reconciliation``: per document for the period (a
journal entry MedBridge posted, or the supplier invoice or credit note the ERP's own document
booked), and the balances of every facility's inventory, GRNI and accounts payable (per
supplier) up to the period's end. Per destination: each ERP is compared with what MedBridge
routed to it (``store.erp_postings.journal_lines_between``). An unreachable ERP raises the
port's ``ErpUnavailable``: a checkpoint that could not look is not a clean one.
"""

from __future__ import annotations

import calendar
from datetime import date

from sqlalchemy import Connection, Engine, select

from medbridge.canonical.erp import GeneralLedgerPort
from medbridge.canonical.masterdata import AccountRole
from medbridge.domain.reconciliation import (
    BookLine,
    Reconciliation,
    WatchedAccount,
    reconcile,
    with_balances,
)
from medbridge.flows.erp_routing import DEFAULT_DESTINATION
from medbridge.store import erp_postings
from medbridge.store.tables import account_assignments

EPOCH = date(1900, 1, 1)
"""Where balances start: every posted line up to the period's end counts."""

WATCHED_ROLES = (AccountRole.INVENTORY, AccountRole.GRNI, AccountRole.ACCOUNTS_PAYABLE)


def period_bounds(period: str) -> tuple[date, date]:
    """``YYYY-MM`` -> its first and last day."""
    try:
        year, month = (int(part) for part in period.split("-"))
        first = date(year, month, 1)
    except ValueError as error:
        raise ValueError(f"period {period!r} is not YYYY-MM") from error
    return first, first.replace(day=calendar.monthrange(year, month)[1])


def watched_accounts(conn: Connection) -> list[WatchedAccount]:
    """Each facility's inventory, GRNI and accounts payable accounts."""
    t = account_assignments
    rows = conn.execute(
        select(t.c.account, t.c.facility, t.c.role).where(
            t.c.role.in_([r.value for r in WATCHED_ROLES])
        )
    )
    return [WatchedAccount(r.account, r.facility, r.role) for r in rows]


def _book(
    conn: Connection, start: date, end: date, accounts: list[str] | None, destination: str
) -> list[BookLine]:
    rows = erp_postings.journal_lines_between(conn, start, end, accounts, destination)
    return [
        BookLine(r.entry_id, r.account, r.cost_center, r.debit, r.credit, r.party, r.erp_document)
        for r in rows
    ]


def reconcile_erp(
    engine: Engine,
    erp: GeneralLedgerPort,
    start: date,
    end: date,
    destination: str = DEFAULT_DESTINATION,
) -> Reconciliation:
    """``erp`` (the destination named ``destination``) against what MedBridge routed to it."""
    with engine.connect() as conn:
        book = _book(conn, start, end, None, destination)
        watched = watched_accounts(conn)
        accounts = sorted({w.account for w in watched})
        history = _book(conn, EPOCH, end, accounts, destination)
    report = reconcile(book, erp.ledger_lines(start, end))
    return with_balances(report, watched, history, erp.ledger_lines(EPOCH, end, accounts))


def reconcile_period(
    engine: Engine,
    erp: GeneralLedgerPort,
    period: str,
    through: str | None = None,
    destination: str = DEFAULT_DESTINATION,
) -> Reconciliation:
    """``period`` (``YYYY-MM``), or the periods from it through ``through``, of the ERP
    ``destination`` (``erp``: its adapter)."""
    start, end = period_bounds(period)
    if through is not None:
        end = period_bounds(through)[1]
        if end < start:
            raise ValueError(f"period {through!r} is before {period!r}")
    return reconcile_erp(engine, erp, start, end, destination)
