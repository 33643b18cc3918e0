"""The close report as one self-contained HTML page (``GET /v1/periods/{period}/report.html``;
the console's Close page shows the same tables). Every value is escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from medbridge.domain.period_close import CloseReport

STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left}td.n{text-align:right}"
    ".bad{color:#a00}"
)


def _table(head: Sequence[str], rows: Iterable[Sequence[object]], numeric: set[int]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=n' if n in numeric else ''}>{escape('' if v is None else str(v))}</td>"
            for n, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def report_tables(report: CloseReport) -> str:
    """The report's sections: differences, GRNI accrual, PPV, stock vs GL, ERPs."""
    r = report
    state = (
        "no differences"
        if r.balanced
        else f'<span class="bad">{len(r.differences)} difference(s)</span>'
    )
    parts = [
        f"<p>Cut-off {escape(r.cutoff.isoformat())}; report of"
        f" {escape(r.generated_at.isoformat())}: {state};"
        f" {r.late_entries} late entr{'y' if r.late_entries == 1 else 'ies'} moved here.</p>",
        *(f"<p>{escape(note)}</p>" for note in r.notes),
        "<h2>Differences</h2>",
        _table(
            ("kind", "facility", "account", "amount", "owner", "reference", "detail"),
            (
                (d.kind, d.facility, d.account, d.amount, d.owner, d.reference, d.detail)
                for d in r.differences
            ),
            {3},
        ),
        "<h2>GRNI accrual (received, not invoiced, as of the cut-off)</h2>",
        _table(
            ("supplier", "purchase order", "facility", "account", "amount", "first received"),
            (
                (g.supplier, g.order, g.facility, g.account, g.amount, g.first_received)
                for g in r.grni
            ),
            {4},
        ),
        "<h2>Purchase price variance</h2>",
        _table(
            ("supplier", "item", "facility", "amount"),
            ((p.supplier, p.item, p.facility, p.amount) for p in r.ppv),
            {3},
        ),
        "<h2>Stock valuation vs GL inventory</h2>",
        _table(
            ("facility", "account", "stock valuation", "GL inventory", "difference"),
            ((c.facility, c.account, c.stock_value, c.gl_inventory, c.difference) for c in r.stock),
            {2, 3, 4},
        ),
        "<h2>ERP destinations</h2>",
        _table(
            ("ERP", "status", "entries", "ERP moves", "error"),
            ((e.destination, e.status, e.entries, e.moves, e.error) for e in r.erps),
            {2, 3},
        ),
    ]
    return "\n".join(parts)


def report_html(report: CloseReport, state: str) -> str:
    """The whole page; ``state``: the period's (open, closed)."""
    title = f"Close report {report.period} ({state})"
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>\n"
        f"{report_tables(report)}\n</body></html>\n"
    )
