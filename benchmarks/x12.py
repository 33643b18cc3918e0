"""X12 parse and render rates, in a few seconds.

(a) parse: every usable sample interchange (../shared/samples/x12; the refused ones are
    skipped: they stop at the ISA), envelopes checked and every set mapped to its canonical
    document, cycled until N documents;
(b) generated 850 / 810 / 856 documents (a few lines each): render (delimiter choice, envelope,
    counts) and parse back, one document per interchange;
(c) baseline: a raw ``str.split`` of the same texts by segment terminator and element
    separator (what any X12 reader must at least do), to show what mapping costs on top.

    python -m benchmarks.x12 --documents 3000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path

from medbridge.canonical.trade import (
    InvoiceDocument,
    InvoiceLine,
    OrderDocument,
    OrderLine,
    Pack,
    PartnerItem,
    Party,
    PartyRole,
    ShipLine,
    ShipNoticeDocument,
    ShippedOrder,
    TradeDocument,
)
from medbridge.connectors.x12 import Envelope, parse_interchange, render
from medbridge.connectors.x12.errors import X12Error

ENVELOPE = Envelope(
    sender_qualifier="ZZ",
    sender_id="MEDBRIDGE",
    receiver_qualifier="01",
    receiver_id="123456789",
    interchange_control=1,
    group_control=1,
    set_control=1,
    sent_on=date(2026, 1, 1),
    sent_at=clock(12, 0),
)


def shared_samples() -> Path:
    """../shared/samples/x12: ``MEDBRIDGE_SHARED_DIR``, else the nearest ``shared/`` above."""
    if os.environ.get("MEDBRIDGE_SHARED_DIR"):
        return Path(os.environ["MEDBRIDGE_SHARED_DIR"]) / "samples" / "x12"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "samples" / "x12").is_dir():
            return parent / "shared" / "samples" / "x12"
    sys.exit("no shared/samples/x12 above the checkout: set MEDBRIDGE_SHARED_DIR")


def generated(n: int, seed: int) -> list[TradeDocument]:
    rng = random.Random(seed)
    out: list[TradeDocument] = []
    for k in range(n):
        day = date(2026, 1, 1) + timedelta(days=rng.randrange(300))
        items = [
            PartnerItem(
                supplier_part=f"SKU-{rng.randrange(10**6)}",
                gtin=f"{rng.randrange(10**13):014d}",
                description=f"ITEM {k}-{j} NITRILE GLOVES, SIZE M*BOX",
            )
            for j in range(rng.randint(1, 6))
        ]
        quantities = [Decimal(rng.randint(1, 500)) for _ in items]
        prices = [Decimal(rng.randint(100, 99999)) / 100 for _ in items]
        parties = (Party(role=PartyRole.SHIP_TO, id=f"WARD-{k % 17}", name="Main ward"),)
        kind = k % 3
        if kind == 0:
            out.append(
                OrderDocument(
                    order_number=f"PO-{k}",
                    order_date=day,
                    parties=parties,
                    lines=tuple(
                        OrderLine(line_number=j + 1, item=i, quantity=q, unit="EA", unit_price=p)
                        for j, (i, q, p) in enumerate(zip(items, quantities, prices, strict=True))
                    ),
                )
            )
        elif kind == 1:
            total = sum((q * p for q, p in zip(quantities, prices, strict=True)), Decimal(0))
            out.append(
                InvoiceDocument(
                    invoice_number=f"INV-{k}",
                    invoice_date=day,
                    parties=parties,
                    lines=tuple(
                        InvoiceLine(
                            line_number=j + 1,
                            item=i,
                            quantity=q,
                            unit="EA",
                            unit_price=p,
                            order_number=f"PO-{k - 1}",
                        )
                        for j, (i, q, p) in enumerate(zip(items, quantities, prices, strict=True))
                    ),
                    total=total,
                )
            )
        else:
            lines = tuple(
                ShipLine(
                    line_number=j + 1,
                    item=i,
                    quantity=q,
                    unit="EA",
                    lot=f"L{rng.randrange(10**5)}",
                    expiry=day + timedelta(days=700),
                )
                for j, (i, q) in enumerate(zip(items, quantities, strict=True))
            )
            out.append(
                ShipNoticeDocument(
                    shipment_id=f"ASN-{k}",
                    shipped_on=day,
                    carrier="UPSN",
                    tracking_number=f"1Z{k:010d}",
                    parties=parties,
                    orders=(
                        ShippedOrder(
                            order_number=f"PO-{k - 2}",
                            packs=(Pack(sscc=f"{rng.randrange(10**17):018d}", lines=lines),),
                        ),
                    ),
                )
            )
    return out


def rate(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """(documents per second, documents per run): the median of ``repeat`` runs."""
    seconds: list[float] = []
    count = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn()
        seconds.append(time.perf_counter() - t0)
    return count / statistics.median(seconds), count


def split_baseline(texts: Sequence[str], documents_per_text: Sequence[int]) -> int:
    n = 0
    for text, docs in zip(texts, documents_per_text, strict=True):
        terminator, separator = text[105], text[3]
        for segment in text.split(terminator):
            segment.strip().split(separator)
        n += docs
    return n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.x12", description=__doc__)
    parser.add_argument("--documents", type=int, default=3000, help="per phase (3000)")
    parser.add_argument("--repeat", type=int, default=3, help="median of R runs (3)")
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    # (a) samples: the usable ones, each parsed whole, cycled to about N documents
    samples: list[tuple[str, bytes, int]] = []
    for path in sorted(shared_samples().glob("*.edi")):
        data = path.read_bytes()
        try:
            parsed = parse_interchange(data)
        except X12Error:
            continue
        sets = sum(len(g.sets) for g in parsed.groups)
        samples.append((path.name, data, sets))
    per_cycle = sum(sets for _, _, sets in samples)
    cycles = max(1, args.documents // per_cycle)
    batch = [data for _, data, _ in samples] * cycles
    counts = [sets for _, _, sets in samples] * cycles

    def parse_samples() -> int:
        n = 0
        for data in batch:
            for group in parse_interchange(data).groups:
                n += len(group.sets)
        return n

    texts = [data.decode("utf-8-sig") for data in batch]
    sample_rate, sample_n = rate(parse_samples, args.repeat)
    sample_base, _ = rate(lambda: split_baseline(texts, counts), args.repeat)

    # (b) generated documents: render, then parse what was rendered
    documents = generated(args.documents, args.seed)
    rendered = [render([d], ENVELOPE) for d in documents]

    def render_all() -> int:
        for document in documents:
            render([document], ENVELOPE)
        return len(documents)

    def parse_all() -> int:
        n = 0
        for text in rendered:
            n += len(parse_interchange(text).documents)
        return n

    render_rate, _ = rate(render_all, args.repeat)
    parse_rate, parsed_n = rate(parse_all, args.repeat)
    if parsed_n != len(documents):
        sys.exit(f"FAILED: {parsed_n} of {len(documents)} generated documents parsed back")
    gen_base, _ = rate(lambda: split_baseline(rendered, [1] * len(rendered)), args.repeat)
    size = statistics.mean(len(t) for t in rendered)

    print(f"x12 samples: {len(samples)} usable files, {sample_n:,} sets per run")
    print(
        f"x12 parse (samples, envelope + mapping): {sample_rate:,.0f} docs/s"
        f"  | str.split baseline {sample_base:,.0f} docs/s"
        f"  | ratio {sample_rate / sample_base:.3f}x"
    )
    print(
        f"x12 parse (generated 850/810/856, {size:,.0f} B avg): {parse_rate:,.0f} docs/s"
        f"  | str.split baseline {gen_base:,.0f} docs/s  | ratio {parse_rate / gen_base:.3f}x"
    )
    print(f"x12 render (generated 850/810/856): {render_rate:,.0f} docs/s")
    print(
        f"median of {args.repeat} runs, python={sys.version.split()[0]}"
        f" wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
