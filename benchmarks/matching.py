"""Three-way match rate (``medbridge.domain.matching``): invoices matched per second, pure CPU.

Generated up front (not timed): N invoices of 1-10 lines, each billing its own purchase order
(items from a pool of 500, each with its own pack: 1 to 100 base units), received in one or
two receipts (the order's unit and base units), billed in the order's unit or in base units.
About 80 % are clean; the rest carry one fault each: a price over tolerance, more than
received, a line on an unknown order line, a unit with no known pack, a line never received,
a wrong total, or a resubmission of an invoice already in the history (same amount or not).
Everything goes into one ``MatchBook``.

Timed: ``book.match`` then ``book.record`` for every invoice, in order. The baseline is a bare
loop over the same invoice lines summing quantity * unit price (Decimal): the floor of any
matcher that reads every line once. The journal lines of the first 20,000 matched invoices
(canonical ``JournalLine`` models, validated by pydantic) are timed separately.

    python -m benchmarks.matching --invoices 100000 --repeat 1
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from medbridge.domain.ledger import money
from medbridge.domain.matching import (
    InvoiceKey,
    InvoiceLineIn,
    MatchBook,
    MatchInvoice,
    MatchResult,
    PoLine,
    PostingAccounts,
    ReceivedLine,
    Tolerances,
    journal_lines,
)

D = Decimal
ITEMS = 500
FACTORS = (1, 2, 4, 5, 10, 12, 20, 24, 25, 50, 100)
FAULTS = (
    "price",
    "quantity",
    "unknown_po",
    "unit",
    "no_receipt",
    "total",
    "duplicate",
    "duplicate_number",
)
CLEAN_SHARE = 0.8
JOURNAL_SAMPLE = 20_000
ACCOUNTS = PostingAccounts(grni="2150", ppv="5950", ap="2100", tax="2300")


@dataclass
class Workload:
    po_lines: list[PoLine]
    receipts: list[ReceivedLine]
    history: list[InvoiceKey]
    invoices: list[MatchInvoice]
    faults: Counter[str]

    @property
    def lines(self) -> int:
        return sum(len(inv.lines) for inv in self.invoices)


def generate(n: int, seed: int) -> Workload:
    rng = random.Random(seed)
    dec: dict[int, Decimal] = {}

    def d(value: int) -> Decimal:  # one Decimal object per integer: less memory
        return dec.get(value) or dec.setdefault(value, D(value))

    cents = [D(c) / 100 for c in range(0, 50_001)]
    packs = [rng.choice(FACTORS) for _ in range(ITEMS)]
    names = [f"ITEM-{i:04d}" for i in range(ITEMS)]
    w = Workload([], [], [], [], Counter())
    for k in range(n):
        order, fault = f"PO-{k:06d}", None
        if rng.random() >= CLEAN_SHARE:
            fault = rng.choice(FAULTS)
        w.faults[fault or "clean"] += 1
        lines: list[InvoiceLineIn] = []
        bad = 0  # the line that carries the fault
        for i in range(1, rng.randint(1, 10) + 1):
            item_no = rng.randrange(ITEMS)
            item, f = names[item_no], packs[item_no]
            unit = "EA" if f == 1 else "BX"
            ordered = rng.randint(1, 40)
            received = rng.randint(1, ordered)
            price = cents[rng.randint(100, 50_000)]
            w.po_lines.append(PoLine(order, i, item, unit, d(ordered), price, d(f)))
            if not (fault == "no_receipt" and i - 1 == bad):
                first = rng.randint(0, received)
                if first:
                    w.receipts.append(ReceivedLine(order, i, item, unit, d(first), d(f)))
                if received > first:
                    rest = (received - first) * f
                    w.receipts.append(ReceivedLine(order, i, item, "EA", d(rest), d(1)))
            qty, bill_unit, bill_f = received, unit, f
            if rng.random() < 0.3 and f > 1:  # billed in base units
                qty, bill_unit, bill_f = received * f, "EA", 1
            bill_price = price * bill_f / f
            if i - 1 == bad:
                if fault == "price":
                    bill_price = (bill_price * D("1.1")).quantize(D("0.0001")) + D("0.06") * bill_f
                elif fault == "quantity":
                    qty += 1
                elif fault == "unit":
                    bill_unit, bill_f = "ZZ", 0  # no pack factor stated, none known
            lines.append(
                InvoiceLineIn(
                    i,
                    order,
                    i if fault != "unknown_po" or i - 1 != bad else 99,
                    item,
                    bill_unit,
                    d(qty),
                    bill_price,
                    d(bill_f) if bill_f else None,
                )
            )
        tax = cents[rng.randint(0, 2_000)]
        total = sum((money(ln.quantity * ln.unit_price) for ln in lines), tax)
        if fault == "total":
            total += D("1.00")
        number = f"INV-{k:06d}"
        if fault == "duplicate":
            w.history.append(("SUP-1", number, total))
        elif fault == "duplicate_number":
            w.history.append(("SUP-1", number, total + D("10.00")))
        w.invoices.append(MatchInvoice("SUP-1", number, date(2026, 3, 1), total, tuple(lines), tax))
    return w


def match_all(w: Workload, tolerances: Tolerances) -> tuple[float, list[MatchResult]]:
    book = MatchBook.build(w.po_lines, w.receipts, None, w.history)  # not timed
    gc.collect()
    gc.freeze()  # the workload and the book are long-lived: the collector need not rescan them
    results = []
    t0 = time.perf_counter()
    for invoice in w.invoices:
        result = book.match(invoice, tolerances)
        book.record(result)
        results.append(result)
    return time.perf_counter() - t0, results


def baseline(w: Workload) -> float:
    t0 = time.perf_counter()
    total = D(0)
    for invoice in w.invoices:
        for ln in invoice.lines:
            total += ln.quantity * ln.unit_price
    seconds = time.perf_counter() - t0
    assert total > 0
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.matching",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--invoices", type=int, default=100_000, help="N (100000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median is shown (1)")
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    if args.invoices < 1 or args.repeat < 1:
        parser.error("--invoices and --repeat must be positive")
    started = time.perf_counter()
    tolerances = Tolerances()
    t0 = time.perf_counter()
    w = generate(args.invoices, args.seed)
    generated = time.perf_counter() - t0

    runs = [match_all(w, tolerances) for _ in range(args.repeat)]
    seconds = statistics.median(s for s, _ in runs)
    results = runs[0][1]
    bare = min(baseline(w) for _ in range(max(3, args.repeat)))  # the least disturbed run

    outcomes: Counter[str] = Counter()
    for result in results:
        outcomes[result.status.value] += 1
        for exception in result.exceptions:
            outcomes[exception.kind.value] += 1
    matched = [r.posting for r in results if r.posting is not None]
    sample = matched[:JOURNAL_SAMPLE]
    t0 = time.perf_counter()
    journal = [journal_lines(p, ACCOUNTS, "F1") for p in sample]
    posting_seconds = time.perf_counter() - t0
    unbalanced = sum(
        1 for lines in journal if sum(ln.debit for ln in lines) != sum(ln.credit for ln in lines)
    )
    expected_clean = w.faults["clean"]
    if outcomes["matched"] != expected_clean or unbalanced:
        sys.exit(
            f"FAILED: {expected_clean} clean invoices generated, {outcomes['matched']} matched,"
            f" {unbalanced} unbalanced journals"
        )

    n, lines = len(w.invoices), w.lines
    print(f"three-way match: {n / seconds:,.0f} invoices/s ({lines / seconds:,.0f} lines/s)")
    print(
        f"  {n:,} invoices, {lines:,} lines in {seconds:.2f} s (match + record, median of"
        f" {args.repeat}); book: {len(w.po_lines):,} PO lines, {len(w.receipts):,} receipts,"
        f" {len(w.history):,} invoices in the history"
    )
    print(
        f"  baseline (bare loop summing quantity x price, same lines, best of 3): {bare:.3f} s,"
        f" {lines / bare:,.0f} lines/s; matching costs {seconds / bare:.1f}x the baseline"
    )
    print(
        f"  journal lines for the first {len(sample):,} matched invoices: {posting_seconds:.2f} s,"
        f" {len(sample) / posting_seconds:,.0f} invoices/s, all balanced"
    )
    print("  generated: " + ", ".join(f"{k} {v:,}" for k, v in w.faults.most_common()))
    print("  outcomes:  " + ", ".join(f"{k} {v:,}" for k, v in outcomes.most_common()))
    print(
        f"  python={sys.version.split()[0]} generate={generated:.1f}s (untimed)"
        f" gc=frozen before timing wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
