"""Period close: the rules, pure. The store and the ERPs are read by ``flows.period_close``.

- **Periods** are calendar months, ``YYYY-MM`` (a journal entry's ``period`` is its posting
  date's month; the posting date is its event's own date, as the source stated it). A close's
  cut-off is a moment in UTC.
- **The lock**: once a period is closed nothing more is dated in it. An event whose time falls
  in a closed period (it arrived late) posts to the next period that is still open, dated on
  its first day, and its journal entry says so in its description (``late_note``): the note
  names the closed period the event belongs to and the event's own date.
- **The close report** lists every difference the close found, each with the facility and
  account it is on, its amount and an owner (who clears it):

  ============================  =====================================  ==================
  kind                          what                                   owner
  ============================  =====================================  ==================
  ``stock_vs_gl``               stock valuation (the stock ledger) vs  ``finance``
                                the GL inventory account of a facility
  ``erp_<difference kind>``     MedBridge's journal vs an ERP's ledger ``erp:<name>``
                                (``domain.reconciliation``)
  ``erp_unreachable``           an ERP the close could not read        ``erp:<name>``
  ``grni_aged``                 goods received and not invoiced for    ``procurement``
                                more than ``GRNI_AGE_DAYS`` at cut-off
  ============================  =====================================  ==================

- **Closing with differences** is finance's decision, never a default: a close that finds any
  difference is refused unless it is forced with a reason, which the period keeps (and the
  audit log). A period closes once; closing it again is refused (``PeriodClosed``).
"""

from __future__ import annotations

import calendar
import csv
import io
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

ZERO = Decimal(0)
GRNI_AGE_DAYS = 60
"""Goods received this many days before the cut-off and still not invoiced are a difference
for procurement to chase (the accrual itself is normal; an old one is not)."""

FINANCE, PROCUREMENT = "finance", "procurement"


class PeriodError(ValueError):
    """A period (or a cut-off) that cannot be closed as asked; ``field`` names the input."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.reason = message


class PeriodClosed(PeriodError):
    """The period is closed already: a close happens once."""


class UnforcedDifferences(PeriodError):
    """The close found differences and was not forced (with a reason); ``report``: what it
    found."""

    def __init__(self, field_name: str, message: str, report: CloseReport) -> None:
        super().__init__(field_name, message)
        self.report = report


def parse_period(period: str) -> tuple[date, date]:
    """``YYYY-MM`` -> its first day and the first day of the next period."""
    try:
        year_s, month_s = period.split("-")
        if len(year_s) != 4 or len(month_s) != 2:
            raise ValueError
        first = date(int(year_s), int(month_s), 1)
        days = calendar.monthrange(first.year, first.month)[1]
        return first, first + timedelta(days=days)
    except (ValueError, OverflowError):
        raise PeriodError("period", f"{period!r} is not YYYY-MM") from None


def period_of(day: date) -> str:
    return f"{day:%Y-%m}"


def next_period(period: str) -> str:
    return period_of(parse_period(period)[1])


def period_end(period: str) -> datetime:
    """The first moment after the period (UTC): its default cut-off."""
    return datetime.combine(parse_period(period)[1], time(), UTC)


def check_cutoff(period: str, cutoff: datetime | None, now: datetime) -> datetime:
    """The cut-off of a close of ``period``: within the period (default: its end), aware,
    and not in the future (a period is closed once it is over)."""
    start = datetime.combine(parse_period(period)[0], time(), UTC)
    end = period_end(period)
    moment = end if cutoff is None else cutoff
    if moment.tzinfo is None:
        raise PeriodError("cutoff", f"{moment.isoformat()} has no time zone (add Z or an offset)")
    try:
        inside = start < moment <= end
    except OverflowError:  # an offset that takes the moment out of the calendar
        inside = False
    if not inside:
        raise PeriodError(
            "cutoff",
            f"{moment.isoformat()} is not in {period} (after {start.isoformat()},"
            f" up to {end.isoformat()})",
        )
    if moment > now:
        raise PeriodError("cutoff", f"{moment.isoformat()} is still to come: {period} is not over")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Dating:
    """Where an entry is dated: its posting date, and the closed period it belongs to when
    the lock moved it (None: it is dated on its event's day)."""

    posting_date: date
    late_for: str | None = None


def dating(event_day: date, closed: Collection[str]) -> Dating:
    """The lock: ``event_day`` if its period is open, else the first day of the next open
    period (``closed``: the closed periods, ``YYYY-MM``)."""
    period = period_of(event_day)
    if period not in closed:
        return Dating(event_day)
    target = next_period(period)
    while target in closed:
        target = next_period(target)
    return Dating(parse_period(target)[0], period)


def late_note(description: str, event_day: date, late_for: str) -> str:
    """The description of a moved entry: the note first (a description is 200 characters)."""
    return f"late, belongs to closed {late_for} (event {event_day.isoformat()}): {description}"[
        :200
    ]


# --- the report ----------------------------------------------------------------------------


class DifferenceKind(StrEnum):
    STOCK_VS_GL = "stock_vs_gl"
    ERP_UNREACHABLE = "erp_unreachable"
    GRNI_AGED = "grni_aged"


@dataclass(frozen=True)
class CloseDifference:
    """One difference of the close: where (facility, account), how much (``amount``: the
    difference, MedBridge's side less the other), who clears it, and what it is."""

    kind: str
    facility: str | None
    account: str | None
    amount: Decimal
    owner: str
    reference: str
    detail: str


@dataclass(frozen=True)
class GrniLine:
    """Received, not invoiced, as of the cut-off: the GRNI balance of one purchase order
    (``order`` None: receipts of no purchase order)."""

    supplier: str | None
    order: str | None
    facility: str
    account: str
    amount: Decimal
    first_received: date


@dataclass(frozen=True)
class PpvLine:
    """The purchase price variance of the period per supplier, item and facility."""

    supplier: str
    item: str
    facility: str
    amount: Decimal


@dataclass(frozen=True)
class StockCheck:
    facility: str
    account: str | None
    stock_value: Decimal
    gl_inventory: Decimal

    @property
    def difference(self) -> Decimal:
        return self.stock_value - self.gl_inventory


@dataclass(frozen=True)
class ErpCheck:
    """One ERP destination's reconciliation: ``status`` ``balanced``, ``differences`` or
    ``unreachable`` (``error``: why)."""

    destination: str
    status: str
    entries: int = 0
    moves: int = 0
    error: str | None = None


@dataclass(frozen=True)
class CloseReport:
    period: str
    cutoff: datetime
    generated_at: datetime
    grni: tuple[GrniLine, ...]
    ppv: tuple[PpvLine, ...]
    stock: tuple[StockCheck, ...]
    erps: tuple[ErpCheck, ...]
    differences: tuple[CloseDifference, ...]
    late_entries: int = 0
    """Entries of this period that the lock moved here from a closed one."""
    notes: tuple[str, ...] = field(default=())

    @property
    def balanced(self) -> bool:
        return not self.differences


def aged_grni(lines: Sequence[GrniLine], cutoff: datetime) -> list[CloseDifference]:
    """The GRNI of goods received ``GRNI_AGE_DAYS`` or more before the cut-off: procurement's."""
    limit = cutoff.date() - timedelta(days=GRNI_AGE_DAYS)
    return [
        CloseDifference(
            DifferenceKind.GRNI_AGED.value,
            g.facility,
            g.account,
            g.amount,
            PROCUREMENT,
            g.order or "(no purchase order)",
            f"received {g.first_received.isoformat()} from {g.supplier or 'unknown supplier'},"
            f" not invoiced by the cut-off",
        )
        for g in lines
        if g.amount and g.first_received <= limit
    ]


def stock_differences(checks: Sequence[StockCheck]) -> list[CloseDifference]:
    return [
        CloseDifference(
            DifferenceKind.STOCK_VS_GL.value,
            c.facility,
            c.account,
            c.difference,
            FINANCE,
            c.facility,
            f"stock valuation {c.stock_value} vs GL inventory {c.gl_inventory}",
        )
        for c in checks
        if c.difference
    ]


# --- the report as JSON and CSV ------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def report_json(report: CloseReport) -> dict[str, Any]:
    """The report as JSON (amounts as strings, moments ISO 8601)."""
    body: dict[str, Any] = _plain(asdict(report))
    for row, check in zip(body["stock"], report.stock, strict=True):
        row["difference"] = str(check.difference)
    body["balanced"] = report.balanced
    return body


def _d(value: str | None) -> Decimal:
    return ZERO if value is None else Decimal(value)


def report_from_json(body: dict[str, Any]) -> CloseReport:
    """A stored report back (what ``report_json`` wrote)."""
    return CloseReport(
        period=body["period"],
        cutoff=datetime.fromisoformat(body["cutoff"]),
        generated_at=datetime.fromisoformat(body["generated_at"]),
        grni=tuple(
            GrniLine(
                g["supplier"],
                g["order"],
                g["facility"],
                g["account"],
                _d(g["amount"]),
                date.fromisoformat(g["first_received"]),
            )
            for g in body["grni"]
        ),
        ppv=tuple(
            PpvLine(p["supplier"], p["item"], p["facility"], _d(p["amount"])) for p in body["ppv"]
        ),
        stock=tuple(
            StockCheck(s["facility"], s["account"], _d(s["stock_value"]), _d(s["gl_inventory"]))
            for s in body["stock"]
        ),
        erps=tuple(
            ErpCheck(e["destination"], e["status"], e["entries"], e["moves"], e["error"])
            for e in body["erps"]
        ),
        differences=tuple(
            CloseDifference(
                d["kind"],
                d["facility"],
                d["account"],
                _d(d["amount"]),
                d["owner"],
                d["reference"],
                d["detail"],
            )
            for d in body["differences"]
        ),
        late_entries=body.get("late_entries", 0),
        notes=tuple(body.get("notes", ())),
    )


CSV_COLUMNS = (
    "section",
    "facility",
    "account",
    "supplier",
    "reference",
    "item",
    "amount",
    "owner",
    "kind",
    "detail",
)


def _row(section: str, **values: Any) -> list[Any]:
    return [section, *(values.get(column, "") or "" for column in CSV_COLUMNS[1:])]


def report_csv(report: CloseReport) -> str:
    """One CSV: every difference (section ``difference``), then the GRNI accrual, the PPV,
    the stock checks and the ERP checks, one row each."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for d in report.differences:
        w.writerow(
            _row(
                "difference",
                facility=d.facility,
                account=d.account,
                reference=d.reference,
                amount=str(d.amount),
                owner=d.owner,
                kind=d.kind,
                detail=d.detail,
            )
        )
    for g in report.grni:
        w.writerow(
            _row(
                "grni",
                facility=g.facility,
                account=g.account,
                supplier=g.supplier,
                reference=g.order,
                amount=str(g.amount),
                detail=f"first received {g.first_received.isoformat()}",
            )
        )
    for p in report.ppv:
        w.writerow(
            _row("ppv", facility=p.facility, supplier=p.supplier, item=p.item, amount=str(p.amount))
        )
    for c in report.stock:
        w.writerow(
            _row(
                "stock",
                facility=c.facility,
                account=c.account,
                amount=str(c.difference),
                detail=f"stock {c.stock_value} vs GL {c.gl_inventory}",
            )
        )
    for e in report.erps:
        w.writerow(_row("erp", reference=e.destination, kind=e.status, detail=e.error))
    return out.getvalue()
