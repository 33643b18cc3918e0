"""``make bench``: the bulk import of items (issue 18, "Done when" 1: 100,000 items in under a
minute, a re-import changes nothing).

A fresh database (a SQLite file with MedBridge's own engine settings, or with ``--pg URL`` a
new PostgreSQL database), migrated, with the demo's units. A generated item file
(``demo.item_files``: NDC, GTIN, two packs, two supplier SKUs and an ERP id per item) is
imported by ``masterdata.importer.import_items`` as ``medbridge import items`` does:

- first import: every item new (items, packs, codes and one audit row per item written);
- second import of the same file: 0 new, 0 changed (nothing written).

Baseline, same run, same database: the per-item path, ``MasterDataRepository.save_item`` (what
``PUT /v1/items/{code}`` calls), over ``--sample`` other items in one transaction, first new,
then saved again unchanged. The ratio is the import's items/s over the baseline's.

    python -m benchmarks.masterdata_import --items 100000 [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from medbridge.canonical.codes import normalize_ndc
from medbridge.canonical.masterdata import CodeSystem, Item, ItemCode, PackConversion
from medbridge.demo.item_files import items_csv, rows
from medbridge.demo.network import UNITS
from medbridge.masterdata.importer import import_items
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.store import migrate
from medbridge.store.db import create_db_engine, normalize_url
from medbridge.store.tables import audit_log, items

TARGET_SECONDS = 60.0
ACTOR = "system:bench"


def sample_items(n: int, start: int) -> list[Item]:
    """Items of the generator's range ``start``.. (no code shared with the file's)."""
    found = []
    for code, name, category, base_unit, strength, ndc, gtin, packs, skus, erp in rows(
        n, start=start
    ):
        codes = [ItemCode(system=CodeSystem.GTIN, code=gtin)]
        if ndc:
            codes.append(ItemCode(system=CodeSystem.NDC, code=normalize_ndc(ndc)))
        for system, pairs in ((CodeSystem.SUPPLIER_SKU, skus), (CodeSystem.ERP, erp)):
            for pair in pairs.split(";"):
                issuer, _, value = pair.partition(":")
                codes.append(ItemCode(system=system, code=value, issuer=issuer))
        conversions = []
        for pack in packs.split(";"):
            bits = pack.split(":")
            conversions.append(
                PackConversion(
                    unit=bits[0], factor=Decimal(bits[1]), gtin=bits[2] if len(bits) > 2 else None
                )
            )
        found.append(
            Item(
                code=code,
                name=name,
                category=category,  # type: ignore[arg-type]
                base_unit=base_unit,
                strength=strength or None,
                packs=tuple(conversions),
                codes=tuple(codes),
            )
        )
    return found


def baseline(engine: Engine, sample: list[Item]) -> float:
    """Seconds of ``save_item`` over ``sample`` in one transaction."""
    repo = MasterDataRepository(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        for item in sample:
            repo.save_item(conn, item, actor=ACTOR)
    return time.perf_counter() - started


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def run(engine: Engine, n: int, sample_size: int, console: Console, label: str) -> bool:
    with engine.begin() as conn:
        MasterDataRepository(engine).save_units(conn, UNITS)
    data = items_csv(n)
    sample = sample_items(sample_size, start=n)
    base_new = baseline(engine, sample)
    base_again = baseline(engine, sample)

    audit_before = count(engine, audit_log)
    started = time.perf_counter()
    first = import_items(engine, "items.csv", data, actor=ACTOR)
    first_s = time.perf_counter() - started
    audit_first = count(engine, audit_log) - audit_before
    started = time.perf_counter()
    second = import_items(engine, "items.csv", data, actor=ACTOR)
    second_s = time.perf_counter() - started
    audit_second = count(engine, audit_log) - audit_before - audit_first

    table = Table(title=f"Item import, {n:,} items ({len(data) / 1e6:.1f} MB CSV) on {label}")
    for column in ("run", "new", "changed", "seconds", "items/s", "baseline items/s", "ratio"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for name, report, seconds, base in (
        ("first import", first, first_s, base_new),
        ("re-import", second, second_s, base_again),
    ):
        rate = n / seconds
        base_rate = sample_size / base
        table.add_row(
            name,
            f"{report.new:,}",
            f"{report.changed:,}",
            f"{seconds:.1f}",
            f"{rate:,.0f}",
            f"{base_rate:,.0f}",
            f"{rate / base_rate:.1f}x",
        )
    console.print(table)
    console.print(
        f"baseline: save_item over {sample_size:,} other items in one transaction (new, then"
        f" unchanged); audit rows written: {audit_first:,} by the first import,"
        f" {audit_second} by the re-import; items stored: {count(engine, items):,}"
    )
    ok = (
        first.new == n
        and second.new == second.changed == 0
        and audit_second == 0
        and first_s < TARGET_SECONDS
        and second_s < TARGET_SECONDS
    )
    verdict = "within" if ok else "NOT within"
    console.print(
        f"{verdict} the target: {n:,} items under {TARGET_SECONDS:.0f} s, re-import 0 changed"
    )
    return ok


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=500, help="items of the baseline")
    parser.add_argument("--pg", default=None, help="a PostgreSQL server (a database is made)")
    args = parser.parse_args(argv)
    console = Console(width=110)
    if args.pg is None:
        with tempfile.TemporaryDirectory(prefix="bench-masterdata-") as tmp:
            engine = create_db_engine(
                f"sqlite:///{Path(tmp) / 'masterdata.db'}", sqlite_synchronous="NORMAL"
            )
            migrate.upgrade(engine)
            try:
                run(engine, args.items, args.sample, console, "SQLite")
            finally:
                engine.dispose()
        return
    name = f"bench_masterdata_{os.getpid()}"
    admin = create_engine(normalize_url(args.pg), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_url(args.pg)).set(database=name).render_as_string(False)
    engine = create_db_engine(url)
    try:
        migrate.upgrade(engine)
        run(engine, args.items, args.sample, console, "PostgreSQL")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
