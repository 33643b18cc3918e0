"""Generated item files in the import layout (``masterdata.importer``): a hospital's item
master of any size, for the import's tests and benchmark. Deterministic for a seed; every
NDC, GTIN and SKU unique and valid (GTIN check digits computed); units are the demo's."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator

from medbridge.canonical.codes import gs1_check_digit
from medbridge.masterdata.importer import ITEM_COLUMNS

HEADER = [c for c in ITEM_COLUMNS if c != "local_codes"]
"""The import's columns but the source systems' own codes (none here)."""
_FORMS = [("VIAL", "vial"), ("TAB", "tablet"), ("CAP", "capsule"), ("BAG", "bag"), ("EA", "each")]


def gtin(n: int, indicator: int = 0) -> str:
    """A valid GTIN-14 numbered ``n`` (company prefix 0312345, indicator digit for packs)."""
    body = f"{indicator}0312345{n:05d}"[:13] if n < 100_000 else f"{indicator}03{n:010d}"[:13]
    return body + str(gs1_check_digit(body))


def rows(n: int, seed: int = 18, start: int = 0) -> Iterator[list[str]]:
    """``n`` item rows (no header), numbered from ``start`` (another range: other items,
    other codes)."""
    rng = random.Random(seed + start)  # noqa: S311 (made-up data, not a secret)
    for i in range(start, start + n):
        unit, form = _FORMS[i % len(_FORMS)]
        drug = unit != "EA"
        labeler = 10000 + i // 10000
        ndc = f"{labeler:05d}-{i % 10000:04d}-{rng.randrange(100):02d}" if drug else ""
        packs = f"BX:{rng.choice((10, 12, 25, 50))}:{gtin(i, 1)};CA:{rng.choice((100, 200))}"
        yield [
            f"ITM{i:07d}",
            f"Generated {form} item {i}",
            "drug" if drug else "supply",
            unit,
            f"{rng.choice((1, 2, 5, 10, 250, 500))} mg" if drug else "",
            ndc,
            gtin(i),
            packs,
            f"MCK:{100000 + i};MEDSURG:{700000 + i}",
            f"tryton:{i + 1}",
        ]


def items_csv(n: int, seed: int = 18) -> bytes:
    """A CSV file of ``n`` generated items (header included)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows(n, seed))
    return out.getvalue().encode()
