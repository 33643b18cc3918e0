"""Period close (``medbridge close``, ``POST /v1/periods/{period}/close``, the console's Close
page): read the books of a period as of its cut-off, list every difference with an owner
(``domain.period_close``), and lock the period.

The report:

- **GRNI accrual**: goods received and not invoiced as of the cut-off: the balance of every
  facility's GRNI account per purchase order (so per supplier), counting the entries dated up
  to the cut-off's day whose stock movement (for a receipt) happened before the cut-off.
- **PPV**: the purchase price variance booked in the period, per supplier, item (split as
  the three-way match priced the invoice's lines) and facility.
- **Stock valuation vs GL inventory**, per facility: the stock ledger's valuation against
  the balance of the facility's inventory account. The stock ledger keeps no history of its
  valuations, so both sides are compared as they stand at the close; they move together
  with every movement, so any difference is one whatever the moment.
- **Each ERP destination**: ``flows.reconciliation.reconcile_period`` (what MedBridge routed
  to it vs its ledger). An ERP that cannot be reached (or has no connection) does not fail
  the close: it is a difference of its own, owned by that ERP's team (``erp:<name>``).

The close refuses a period that is closed already, a cut-off out of the period or still to
come, and a report with differences unless forced with a reason (finance decides; the reason
is kept with the period and in the audit log). The report the close saw is stored with the
period: ``GET /v1/periods/{period}/report`` of a closed period is that report, unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from medbridge.canonical.erp import ErpError, GeneralLedgerPort
from medbridge.canonical.masterdata import AccountRole
from medbridge.domain.period_close import (
    CloseDifference,
    CloseReport,
    DifferenceKind,
    ErpCheck,
    GrniLine,
    PeriodClosed,
    PeriodError,
    PpvLine,
    StockCheck,
    UnforcedDifferences,
    aged_grni,
    check_cutoff,
    parse_period,
    report_from_json,
    report_json,
    stock_differences,
)
from medbridge.domain.reconciliation import Reconciliation
from medbridge.flows.erp_compare import account_facilities
from medbridge.flows.reconciliation import reconcile_period
from medbridge.observability.logging import get_logger
from medbridge.store import close_reads, erp_postings, periods
from medbridge.store import ledger as ledger_store
from medbridge.store.tables import journal_entries

ErpOf = Callable[[str], GeneralLedgerPort | None]
"""A destination's adapter by name (None: no connection)."""

LATE_PREFIX = "late, belongs to closed "
ZERO = Decimal(0)
REASON_MAX = 1000

log = get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class PeriodClose:
    """The close of the books of ``destinations`` (every ERP destination, by name)."""

    def __init__(
        self,
        engine: Engine,
        destinations: Sequence[str],
        erp_of: ErpOf,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.engine, self.destinations, self.erp_of, self.clock = (
            engine,
            list(destinations),
            erp_of,
            clock,
        )

    # --- reading -------------------------------------------------------------------------

    def report(self, period: str, cutoff: datetime | None = None) -> CloseReport:
        """The close report: of a closed period, as the close stored it; of an open one, as
        a close would find it now (a dry run; ``cutoff`` checked as a close checks it)."""
        parse_period(period)
        with self.engine.connect() as conn:
            stored = periods.stored_report(conn, period)
        if stored is not None:
            return report_from_json(stored)
        return self._report(period, check_cutoff(period, cutoff, self.clock()))

    def _report(self, period: str, cutoff: datetime) -> CloseReport:
        as_of = (cutoff - timedelta(microseconds=1)).date()
        with self.engine.connect() as conn:
            grni = _grni(
                close_reads.role_lines(conn, AccountRole.GRNI, through=as_of, before=cutoff)
            )
            ppv = _ppv(
                close_reads.role_lines(conn, AccountRole.PURCHASE_PRICE_VARIANCE, period=period)
            )
            inventory = close_reads.role_accounts(conn, AccountRole.INVENTORY)
            stock = tuple(
                StockCheck(c.facility, inventory.get(c.facility), c.ledger_value, c.gl_inventory)
                for c in ledger_store.facility_checks(conn, inventory)
            )
            late = conn.execute(
                select(func.count())
                .select_from(journal_entries)
                .where(
                    journal_entries.c.period == period,
                    journal_entries.c.description.startswith(LATE_PREFIX),
                )
            ).scalar_one()
        checks, erp_differences = self._erps(period)
        differences = stock_differences(stock) + erp_differences + aged_grni(grni, cutoff)
        return CloseReport(
            period=period,
            cutoff=cutoff,
            generated_at=self.clock(),
            grni=tuple(grni),
            ppv=tuple(ppv),
            stock=stock,
            erps=tuple(checks),
            differences=tuple(differences),
            late_entries=late,
        )

    def _erps(self, period: str) -> tuple[list[ErpCheck], list[CloseDifference]]:
        checks: list[ErpCheck] = []
        differences: list[CloseDifference] = []
        for name in self.destinations:
            owner = f"erp:{name}"
            erp = self.erp_of(name)
            error: str | None = None
            report: Reconciliation | None = None
            if erp is None:
                error = f"ERP {name} has no connection (erps.{name}: url, database, password)"
            else:
                try:
                    report = reconcile_period(self.engine, erp, period, destination=name)
                except ErpError as failure:  # unreachable, refused credentials...: recorded
                    error = f"ERP {name} could not be read: {failure}"
            if erp is None or report is None:
                checks.append(ErpCheck(name, "unreachable", error=error))
                differences.append(
                    CloseDifference(
                        DifferenceKind.ERP_UNREACHABLE.value,
                        None,
                        None,
                        ZERO,
                        owner,
                        name,
                        error or "",
                    )
                )
                continue
            status = "balanced" if report.balanced else "differences"
            checks.append(ErpCheck(name, status, report.entries, report.moves))
            differences += self._erp_differences(name, erp, period, report)
        return checks, differences

    def _erp_differences(
        self, name: str, erp: GeneralLedgerPort, period: str, report: Reconciliation
    ) -> list[CloseDifference]:
        """Each difference at its facility: the document's (as MedBridge routed it), else
        the account's, else (a move MedBridge never sent) its first line's on an account of
        one facility, as the ERP holds it."""
        if report.balanced:
            return []
        with self.engine.connect() as conn:
            origins = erp_postings.document_origins(conn, [d.reference for d in report.differences])
            accounts = account_facilities(conn)
        moved: dict[str, str] = {}
        if any(d.reference not in origins and d.account is None for d in report.differences):
            first, after = parse_period(period)
            try:
                for line in erp.ledger_lines(first, after - timedelta(days=1)):
                    if line.account in accounts:
                        moved.setdefault(line.reference, line.account)
            except ErpError as failure:  # the report says where it could not tell
                log.warning("period_close.erp_lines", erp=name, error=str(failure))
        found = []
        for d in report.differences:
            origin = origins.get(d.reference)
            account = d.account or moved.get(d.reference)
            facility = (origin.facility if origin else None) or accounts.get(account or "")
            mine, theirs = d.medbridge_amount or ZERO, d.erp_amount or ZERO
            move = f", ERP move {d.move_id}" if d.move_id else ""
            found.append(
                CloseDifference(
                    f"erp_{d.kind.value}",
                    facility,
                    account,
                    mine - theirs,
                    f"erp:{name}",
                    d.reference,
                    f"{name}: MedBridge {mine}, ERP {theirs}{move}",
                )
            )
        return found

    # --- closing -------------------------------------------------------------------------

    def close(
        self,
        period: str,
        *,
        actor: str,
        cutoff: datetime | None = None,
        force_reason: str | None = None,
        dry_run: bool = False,
    ) -> CloseReport:
        """Close ``period``: the report, then the lock (unless ``dry_run``). ``PeriodClosed``
        when it is closed already; ``UnforcedDifferences`` when the report has differences and
        no ``force_reason``; ``PeriodError`` for a bad period or cut-off."""
        parse_period(period)
        reason = (force_reason or "").strip() or None
        if reason is not None and len(reason) > REASON_MAX:
            raise PeriodError("reason", f"at most {REASON_MAX} characters")
        with self.engine.connect() as conn:
            done = periods.get(conn, period)
        if done is not None:
            raise _closed(done)
        moment = check_cutoff(period, cutoff, self.clock())
        started = _now()  # the store's clock (created_at), whatever ``clock`` says
        report = self._report(period, moment)
        if dry_run:
            return report
        if report.differences and reason is None:
            raise UnforcedDifferences(
                "force",
                f"{len(report.differences)} difference(s) in {period}: clear them, or close"
                " with a reason (finance decides)",
                report,
            )
        notes: tuple[str, ...] = (f"forced: {reason}",) if report.differences else ()
        try:
            with self.engine.begin() as conn:
                periods.lock_for_close(conn)
                raced = _recorded_since(conn, period, started)
                if raced:  # posted while the report was read: in the period, not in the report
                    notes += (
                        f"{raced} entr{'y' if raced == 1 else 'ies'} of {period} recorded while"
                        " the report was read: in the period, perhaps not in this report",
                    )
                report = replace(report, notes=notes)
                periods.close(
                    conn,
                    period,
                    cutoff=moment,
                    closed_at=self.clock(),
                    actor=actor,
                    differences=len(report.differences),
                    forced_reason=reason if report.differences else None,
                    report=report_json(report),
                )
        except IntegrityError:  # another close of it committed first
            with self.engine.connect() as conn:
                done = periods.get(conn, period)
            if done is None:
                raise
            raise _closed(done) from None
        log.info("period.closed", period=period, differences=len(report.differences), actor=actor)
        return report


def _recorded_since(conn: Connection, period: str, since: datetime) -> int:
    e = journal_entries
    found = conn.execute(
        select(func.count()).select_from(e).where(e.c.period == period, e.c.created_at > since)
    ).scalar_one()
    return int(found)


def _closed(done: periods.Period) -> PeriodClosed:
    when = done.closed_at.isoformat() if done.closed_at else "?"
    return PeriodClosed("period", f"{done.period} is closed already (at {when} by {done.actor})")


def _grni(lines: Sequence[close_reads.RoleLine]) -> list[GrniLine]:
    """The GRNI balance per facility, account and purchase order (credit positive: owed)."""
    owed: dict[tuple[str, str, str | None], Decimal] = defaultdict(Decimal)
    first: dict[tuple[str, str, str | None], date] = {}
    supplier: dict[tuple[str, str, str | None], str | None] = {}
    for line in lines:
        key = (line.facility, line.account, line.order.reference if line.order else None)
        owed[key] -= line.net
        first[key] = min(first.get(key, line.posting_date), line.posting_date)
        supplier[key] = line.order.supplier if line.order else None
    return [
        GrniLine(supplier[key], key[2], key[0], key[1], amount, first[key])
        for key, amount in sorted(owed.items(), key=lambda kv: (kv[0][0], kv[0][2] or ""))
        if amount
    ]


def _ppv(lines: Sequence[close_reads.RoleLine]) -> list[PpvLine]:
    """The period's PPV per supplier, item and facility. A price variance entry is split by
    its invoice's matched lines (billed less the GRNI each clears); what no line explains (a
    credit memo, an approved total difference, rounding) is the item ``(invoice)``."""
    totals: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for line in lines:
        invoice, order = line.invoice, line.order
        who = invoice.supplier if invoice else (order.supplier if order else "(unknown)")
        rest = line.net
        if invoice is not None and line.entry_id.startswith("ppv:") and order is not None:
            for m in invoice.lines:
                try:
                    variance = Decimal(m["amount"]) - Decimal(m["grni"])
                    item = str(order.lines[int(m["order_line"]) - 1]["item"])
                except (KeyError, IndexError, ValueError, TypeError, ArithmeticError):
                    continue
                totals[(who, item, line.facility)] += variance
                rest -= variance
        if rest:
            totals[(who, "(invoice)", line.facility)] += rest
    return [PpvLine(s, i, f, amount) for (s, i, f), amount in sorted(totals.items()) if amount]
