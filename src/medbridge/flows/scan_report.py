"""What receiving by scan answers and what it leaves to people: the report of a request
(``scan_report`` per scan, ``session_report`` per request: scans in request order, lines,
receipts) and the tasks of the scans held at the dock (``park_held``). Rows are
``receiving_scans`` rows as dicts (``medbridge.flows.scan_receiving``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.domain.scan_matching import Tally
from medbridge.flows.procurement_runtime import dec
from medbridge.store import work_items

_HELD = {
    "unknown": (
        WorkQueue.PROCUREMENT,
        "GTIN {gtin} is in no item and no pack of the master data: parked, not received."
        " Link it to its item (or pack) and scan it again, or return it.",
    ),
    "over": (
        WorkQueue.PROCUREMENT,
        "{count} scan(s) of {item} (GTIN {gtin}) beyond what line {line} still expects: held"
        " at the dock, not received. Receive them (POST /v1/purchase-orders/{order}/receipts)"
        " or return them.",
    ),
    "substituted": (
        WorkQueue.PHARMACY,
        "{item} (GTIN {gtin}) is not on this order: held at the dock, not received as the"
        " ordered item. Receive it as what it is, or refuse it.",
    ),
}


def park_held(
    conn: Any, po: dict[str, Any], shipment: str | None, rows: list[dict[str, Any]]
) -> None:
    """A task per (outcome, GTIN) of the scans held at the dock: unknown, over, another item
    (in the scans' transaction; one task per key: a rescan does not open another)."""
    held: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if not r["received"]:
            held.setdefault((r["outcome"], r["gtin"]), []).append(r)
    reference = po["reference"]
    for (outcome, gtin), scans in held.items():
        queue, reason = _HELD[outcome]
        first = scans[0]
        work_items.open_task(
            conn,
            NewTask(
                key=f"{reference}:{shipment or 'SCAN'}:scan_{outcome}:{gtin}",
                queue=queue,
                kind=f"scan_{outcome}",
                subject=f"purchase order {reference}"
                + (f", shipment {shipment}" if shipment else ""),
                reason=reason.format(
                    gtin=gtin,
                    count=len(scans),
                    item=first["item"],
                    line=first["line"],
                    order=reference,
                ),
                context={
                    "order": reference,
                    "shipment_id": shipment,
                    "gtin": gtin,
                    "session": first["session"],
                    "scans": [r["key"] for r in scans],
                },
                actions=(Action.CLOSE,),
                correlation_id=po["correlation_id"],
                facility=po["facility"],
            ),
        )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return f"{dec(value).normalize():f}"


def scan_report(row: dict[str, Any]) -> dict[str, Any]:
    expiry = row["expiry"]
    return {
        "key": row["key"],
        "outcome": row["outcome"],
        "received": bool(row["received"]),
        "gtin": row["gtin"],
        "item": row["item"],
        "unit": row["unit"],
        "quantity": _text(row["quantity"]),
        "base_quantity": _text(row["base_quantity"]),
        "line": row["line"],
        "lot": row["lot"],
        "expiry": expiry.isoformat() if expiry else None,
        "serial": row["serial"],
        "receipt": row["receipt"],
        "note": row["note"],
    }


def session_report(
    about: tuple[str, int, bool],
    po: dict[str, Any],
    shipment: str | None,
    tally: Tally,
    rows: list[dict[str, Any]],
    answered: dict[int, dict[str, Any]],
    errors: dict[int, dict[str, str]],
) -> dict[str, Any]:
    """The answer to a request: each of its scans (``answered`` from its row, or its error),
    each line the notice (or order) expects with what the scans ``rows`` received of it, and
    the receipts they made. ``about``: the session, its number of scans, ``complete``."""
    scans = []
    session, count, complete = about
    for index in range(count):
        if index in errors:
            scans.append({"index": index, "outcome": "error", "error": errors[index]})
        else:
            scans.append({"index": index, **answered[index]})
    lines = []
    for n, ln in tally.lines.items():
        received = sum(
            (dec(r["base_quantity"]) for r in rows if r["received"] and r["line"] == n),
            Decimal(0),
        )
        over = sum(
            (dec(r["base_quantity"]) for r in rows if r["outcome"] == "over" and r["line"] == n),
            Decimal(0),
        )
        left = max(ln.expected - received, Decimal(0))
        lines.append(
            {
                "line": n,
                "item": ln.item,
                "unit": ln.base_unit,
                "expected": _text(ln.expected),
                "received": _text(received),
                "over": _text(over),
                "remaining": _text(left),
                "short": _text(left) if complete and left > 0 else None,
            }
        )
    receipts = sorted({r["receipt"] for r in rows if r["receipt"]})
    return {
        "order": po["reference"],
        "shipment_id": shipment,
        "session": session,
        "complete": complete,
        "scans": scans,
        "lines": lines,
        "receipts": receipts,
    }
