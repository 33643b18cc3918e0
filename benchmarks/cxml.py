"""cXML codec throughput: documents parsed (hardened lxml + mapping to the canonical model)
and rendered per second, beside bare ``lxml.etree.fromstring`` of the same bytes.

(a) the shared samples (../shared/samples/cxml): each parsed N times; the ones the connector
    refuses (placeholders, empty confirmID, no item ids ...) count too: refusing is work;
(b) generated documents (orders, acknowledgements, ship notices, invoices with 1-20 lines,
    seeded): rendered, then the rendered bytes parsed back (and checked equal once, untimed).

"vs lxml" is our rate over bare ``etree.fromstring`` (default parser, no mapping) on the same
bytes: the price of hardening plus mapping plus pydantic validation.

    python -m benchmarks.cxml --repeat 3 --generated 400
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from lxml import etree
from rich.console import Console
from rich.table import Table

from medbridge.canonical.trade import (
    AckLine,
    AcknowledgementDocument,
    AckStatus,
    InvoiceDocument,
    InvoiceLine,
    LineStatus,
    OrderDocument,
    OrderLine,
    Pack,
    PartnerItem,
    Party,
    PartyRole,
    ShipLine,
    ShipNoticeDocument,
    ShippedOrder,
)
from medbridge.connectors.cxml import CxmlDocument, CxmlEnvelope, CxmlError, parse, render

ENVELOPE = CxmlEnvelope(
    payload_id="bench@medbridge",
    timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    from_domain="NetworkId",
    from_identity="AN-HOSPITAL",
    to_domain="DUNS",
    to_identity="123456789",
    sender_domain="NetworkId",
    sender_identity="AN-HOSPITAL",
    shared_secret="secret",
    user_agent="MedBridge bench",
)


def shared_samples() -> Path:
    if os.environ.get("MEDBRIDGE_SHARED_DIR"):
        return Path(os.environ["MEDBRIDGE_SHARED_DIR"]) / "samples" / "cxml"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "samples" / "cxml").is_dir():
            return parent / "shared" / "samples" / "cxml"
    sys.exit("no shared/samples/cxml above the checkout: set MEDBRIDGE_SHARED_DIR")


def _item(rng: random.Random, n: int) -> PartnerItem:
    return PartnerItem(
        supplier_part=f"SUP-{rng.randrange(10**6):06d}",
        buyer_part=f"B&{n}" if rng.random() < 0.5 else None,
        gtin=f"{rng.randrange(10**13):014d}" if rng.random() < 0.5 else None,
        description=rng.choice(["Gauze 4x4 <sterile>", "Héparine 5000 UI", "Syringe 10 ml"]),
    )


def _money(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(1, 10**6)) / 100


def generated(count: int, seed: int) -> list[CxmlDocument]:
    rng = random.Random(seed)
    day = date(2026, 1, 1)
    parties = (
        Party(role=PartyRole.SHIP_TO, id="H1-DOCK", name="Hospital 1 dock"),
        Party(role=PartyRole.BILL_TO, id="H1-AP", name="Accounts payable"),
    )
    docs: list[CxmlDocument] = []
    for k in range(count):
        n = rng.randint(1, 20)
        when = day + timedelta(days=k % 300)
        match k % 4:
            case 0:
                docs.append(
                    OrderDocument(
                        order_number=f"PO-{k}",
                        order_date=when,
                        parties=parties,
                        lines=tuple(
                            OrderLine(
                                line_number=i,
                                item=_item(rng, i),
                                quantity=Decimal(rng.randint(1, 50)),
                                unit="EA",
                                unit_price=_money(rng),
                            )
                            for i in range(1, n + 1)
                        ),
                    )
                )
            case 1:
                docs.append(
                    AcknowledgementDocument(
                        acknowledgement_id=f"ACK-{k}",
                        order_number=f"PO-{k}",
                        acknowledged_on=when,
                        status=AckStatus.ACCEPTED_WITH_CHANGES,
                        lines=tuple(
                            AckLine(
                                line_number=i,
                                item=_item(rng, i),
                                status=LineStatus.BACKORDERED if i % 3 else LineStatus.ACCEPTED,
                                quantity=Decimal(rng.randint(1, 50)),
                                unit="BX",
                                unit_price=_money(rng),
                                ship_date=when + timedelta(days=3),
                            )
                            for i in range(1, n + 1)
                        ),
                    )
                )
            case 2:
                lines = [
                    ShipLine(
                        line_number=i,
                        item=_item(rng, i),
                        quantity=Decimal(rng.randint(1, 50)),
                        unit="EA",
                        lot=f"LOT{rng.randrange(10**4)}",
                        expiry=when + timedelta(days=700),
                        serials=tuple(f"SN{i}-{j}" for j in range(rng.randint(0, 3))),
                    )
                    for i in range(1, n + 1)
                ]
                docs.append(
                    ShipNoticeDocument(
                        shipment_id=f"SH-{k}",
                        shipped_on=when,
                        carrier="FDE",
                        tracking_number=f"1Z{k:010d}",
                        parties=parties[:1],
                        orders=(
                            ShippedOrder(
                                order_number=f"PO-{k}",
                                packs=tuple(
                                    Pack(sscc=f"{k:09d}{p:09d}", lines=tuple(lines[p::2]))
                                    for p in range(min(2, n))
                                ),
                            ),
                        ),
                    )
                )
            case _:
                invoice_lines = tuple(
                    InvoiceLine(
                        line_number=i,
                        item=_item(rng, i),
                        quantity=Decimal(rng.randint(1, 50)),
                        unit="EA",
                        unit_price=_money(rng),
                        order_number=f"PO-{k + i % 2}",
                        order_line=i,
                    )
                    for i in range(1, n + 1)
                )
                subtotal = sum((ln.quantity * ln.unit_price for ln in invoice_lines), Decimal(0))
                docs.append(
                    InvoiceDocument(
                        invoice_number=f"INV-{k}",
                        invoice_date=when,
                        parties=parties,
                        lines=invoice_lines,
                        tax=Decimal("1.25"),
                        total=subtotal + Decimal("1.25"),
                    )
                )
    return docs


def rate(fn: Callable[[object], object], inputs: Sequence[object], repeat: int) -> float:
    """Calls per second of ``fn`` over ``inputs``: the median of ``repeat`` runs."""
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for x in inputs:
            fn(x)
        seconds.append(time.perf_counter() - t0)
    return len(inputs) / statistics.median(seconds)


def parse_or_refuse(data: object) -> object:
    try:
        return parse(data)  # type: ignore[arg-type]
    except CxmlError as exc:
        return exc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cxml",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sample-rounds", type=int, default=200, help="parses of each sample")
    parser.add_argument("--generated", type=int, default=400, help="generated documents (400)")
    parser.add_argument("--repeat", type=int, default=3, help="median of R runs (3)")
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    if min(args.sample_rounds, args.generated, args.repeat) < 1:
        parser.error("counts must be positive")
    started = time.perf_counter()
    console = Console(width=140)

    samples = [p.read_bytes() for p in sorted(shared_samples().glob("*.xml"))]
    refused = sum(isinstance(parse_or_refuse(s), CxmlError) for s in samples)
    sample_batch = samples * args.sample_rounds
    docs = generated(args.generated, args.seed)
    rendered = [render(d, envelope=ENVELOPE) for d in docs]
    mismatched = sum(parse(r).document != d for r, d in zip(rendered, docs, strict=True))
    if mismatched:
        sys.exit(f"FAILED: {mismatched} generated documents did not survive render -> parse")

    def bare(data: object) -> object:
        return etree.fromstring(data)

    def render_one(doc: object) -> object:
        return render(doc, envelope=ENVELOPE)  # type: ignore[arg-type]

    table = Table(title="cXML codec: documents per second (median of runs; vs lxml = bare parse)")
    for column in ("corpus", "operation", "docs", "avg size", "docs/s", "vs lxml"):
        left = column in ("corpus", "operation")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for corpus, batch in (
        (f"samples ({len(samples)}, {refused} refused)", sample_batch),
        (f"generated ({len(docs)})", rendered),
    ):
        size = statistics.mean(len(b) for b in batch)
        baseline = rate(bare, batch, args.repeat)
        ours = rate(parse_or_refuse, batch, args.repeat)
        table.add_row(
            corpus,
            "lxml.etree.fromstring",
            f"{len(batch):,}",
            f"{size:,.0f} B",
            f"{baseline:,.0f}",
            "1.00x",
        )
        table.add_row(
            corpus,
            "parse (+ map, validate)",
            f"{len(batch):,}",
            f"{size:,.0f} B",
            f"{ours:,.0f}",
            f"{ours / baseline:.2f}x",
        )
        if batch is rendered:
            out = rate(render_one, docs, args.repeat)
            table.add_row(
                corpus,
                "render",
                f"{len(docs):,}",
                f"{size:,.0f} B",
                f"{out:,.0f}",
                f"{out / baseline:.2f}x",
            )
        table.add_section()
    console.print(table)
    console.print(
        f"generated: orders, acknowledgements, ship notices, invoices of 1-20 lines, all equal"
        f" after render -> parse (checked untimed). lxml={etree.__version__}"
        f" python={sys.version.split()[0]} wall={time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
