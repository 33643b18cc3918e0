"""What the invoice workflow hands to the three-way match (``domain.matching``): the match
book of the orders an invoice names (ordered, received, already invoiced, the supplier's
billing history), the invoice's lines read against those orders (as a person corrected them,
when one did), and the match's result as the JSON the invoice row keeps."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from medbridge.canonical.trade import InvoiceDocument, InvoicePurpose
from medbridge.domain.matching import (
    InvoiceLineIn,
    MatchBook,
    MatchInvoice,
    MatchResult,
    PoLine,
    ReceivedLine,
)
from medbridge.flows.procurement_runtime import dec, order_line_for
from medbridge.store import procurement as store


def match_book(conn: Any, supplier: str, orders: list[str]) -> tuple[MatchBook, dict[str, Any]]:
    po_lines, received = [], []
    by_order = {}
    for reference in orders:
        po = store.order(conn, reference)
        assert po is not None
        by_order[reference] = po
        for ln in po["lines"]:
            po_lines.append(
                PoLine(
                    reference,
                    ln["line"],
                    ln["item"],
                    ln["unit"],
                    dec(ln["quantity"]),
                    dec(ln["unit_price"]),
                    dec(ln["pack_factor"]),
                )
            )
        lines = {ln["line"]: ln for ln in po["lines"]}
        for r in store.receipts(conn, reference):
            if r["status"] != "received":
                continue
            for rl in r["lines"]:
                ln = lines[rl["line"]]
                received.append(
                    ReceivedLine(
                        reference,
                        rl["line"],
                        ln["item"],
                        ln["unit"],
                        dec(rl["quantity"]),
                        dec(ln["pack_factor"]),
                    )
                )
    invoiced: dict[tuple[str, int], Decimal] = {}
    history = []
    for prior in store.billed(conn, supplier):
        history.append((prior["supplier"], prior["number"], dec(prior["total"])))
        for m in prior["result"].get("lines", []):
            po_key = (m["order"], int(m["order_line"]))
            invoiced[po_key] = invoiced.get(po_key, Decimal(0)) + dec(m["base_quantity"])
    return MatchBook.build(po_lines, received, invoiced, history), by_order


def match_lines(
    document: InvoiceDocument,
    by_order: dict[str, Any],
    decision: dict[str, Any] | None,
    flagged: set[int],
) -> tuple[InvoiceLineIn, ...]:
    single = next(iter(by_order)) if len(by_order) == 1 else None
    lines = []
    for il in document.lines:
        order = il.order_number if il.order_number in by_order else single
        po = by_order.get(order) if order else None
        ln = order_line_for(po, il.item, il.order_line or 0) if po else None
        item = ln["item"] if ln else (il.item.buyer_part or il.item.supplier_part or "?")
        unit = ln["unit"] if ln and il.unit == ln["wire_unit"] else il.unit
        quantity, price = il.quantity, il.unit_price
        if decision and il.line_number in flagged:
            if decision.get("quantity") is not None:
                quantity = dec(decision["quantity"])
            if decision.get("unit_price") is not None:
                price = dec(decision["unit_price"])
        lines.append(
            InvoiceLineIn(
                il.line_number,
                order,
                ln["line"] if ln else il.order_line,
                item,
                unit,
                quantity,
                price,
            )
        )
    return tuple(lines)


def match_input(
    document: InvoiceDocument, supplier: str, lines: tuple[InvoiceLineIn, ...], total: Decimal
) -> MatchInvoice:
    return MatchInvoice(
        supplier=supplier,
        number=document.invoice_number,
        invoice_date=document.invoice_date,
        total=total,
        lines=lines,
        tax=document.tax,
        credit_memo=document.purpose is InvoicePurpose.CREDIT_MEMO,
    )


def result_json(result: MatchResult) -> dict[str, Any]:
    return {
        "exceptions": [
            {
                "kind": e.kind.value,
                "reason": e.reason,
                "line": e.line,
                "expected": None if e.expected is None else str(e.expected),
                "actual": None if e.actual is None else str(e.actual),
            }
            for e in result.exceptions
        ],
        "lines": [
            {
                "line": m.line,
                "order": m.po[0],
                "order_line": m.po[1],
                "base_quantity": str(m.base_quantity),
                "amount": str(m.amount),
                "grni": str(m.grni),
            }
            for m in result.lines
        ],
        "posting": None
        if result.posting is None
        else {k: str(getattr(result.posting, k)) for k in ("grni", "ppv", "tax", "ap")},
    }
