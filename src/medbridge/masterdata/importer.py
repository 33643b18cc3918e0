"""Bulk import of items from a CSV or XLSX file: validated whole, written all-or-nothing,
idempotent, audited, fast.

The columns (a header row; names case-insensitive, in any order; * required):

==============  ==============================================================================
code*           the item code (1-64 characters)
name*           1-200 characters
category*       ``drug`` or ``supply``
base_unit*      a known unit (``units``): the unit stock is counted in
strength        e.g. ``1 g``
ndc             NDCs, ``;``-separated: dashed (any shape) or 11 digits (an undashed 10-digit
                NDC is ambiguous: refused)
gtin            GTIN-8/12/13/14s, ``;``-separated (check digit verified)
packs           ``UNIT:FACTOR[:GTIN];...``: one UNIT is FACTOR base units
                (``BX:10:10312345000018;CA:100``)
supplier_skus   ``SUPPLIER:SKU;...``
erp_ids         ``ERP:ID;...`` (the ERP instance's name, its product id)
local_codes     ``SYSTEM:CODE;...`` (a source system's own code)
==============  ==============================================================================

Semantics: a row states the item's fields and packs as they must be (packs not listed are
removed); its codes are ADDED to the item's cross-references (an import never removes a
code: ``medbridge xref remove`` does). A code that maps to another item already, in the
database or on another row, is a problem, as is a pack GTIN another item's pack has.

Every problem of the file is found (the first ``MAX_PROBLEMS`` reported, each with its row as
in the file, the header being row 1, and its column); any problem and nothing is written. The
file is read whole, the current items, packs and codes are loaded in bulk, the file is diffed
against them in memory, and only what differs is written, in ONE transaction with bulk
statements. A re-import of the same file finds nothing new or changed: it writes nothing, adds
no audit row and leaves the master-data revision alone.

Audit: one ``masterdata.import`` row per import that changed something (actor, file name,
SHA-256 of the file, counts) and one ``masterdata.item.save`` row per new or changed item
(the same before/after state digests ``MasterDataRepository.save_item`` records, the codes it
added in its detail, not one ``xref.item_code.link`` row per code as ``link_code`` writes),
appended in bulk (``store.audit.append_many``, one chained executemany or COPY): 100,000 new
items cost 100,001 rows, about a tenth of the import's time (``benchmarks/masterdata_import``).
A per-code row would have added 480,000 more for the benchmark's file."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from medbridge.canonical.codes import normalize_gtin, normalize_ndc
from medbridge.canonical.masterdata import CodeSystem, Item
from medbridge.domain.audit import changes
from medbridge.masterdata.cache import lock_writers, touch
from medbridge.masterdata.tabular import (
    ImportRejected,
    Problem,
    Problems,
    cell_problem,
    header_problems,
    pairs,
    read_rows,
)
from medbridge.store import audit
from medbridge.store.sql import BulkInsert, chunks
from medbridge.store.tables import item_codes, item_packs, items, units

ITEM_COLUMNS = (
    "code",
    "name",
    "category",
    "base_unit",
    "strength",
    "ndc",
    "gtin",
    "packs",
    "supplier_skus",
    "erp_ids",
    "local_codes",
)
ITEM_REQUIRED = ("code", "name", "category", "base_unit")

_PAIR_COLUMNS = {
    "supplier_skus": (CodeSystem.SUPPLIER_SKU, "supplier SKU"),
    "erp_ids": (CodeSystem.ERP, "ERP id"),
    "local_codes": (CodeSystem.LOCAL, "local code"),
}
_MAX_FACTOR = Decimal(10) ** 12  # QUANTITY: 18 digits, 6 of them decimals

CodeKey = tuple[str, str, str]
"""(system, issuer, code), as ``item_codes`` keys it."""
Pack = tuple[str, Decimal, str | None]


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, ``dry_run``, would do)."""

    kind: str
    file: str
    sha256: str
    rows: int
    new: int
    changed: int
    unchanged: int
    codes_added: int
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": self.file,
            "sha256": self.sha256,
            "rows": self.rows,
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "codes_added": self.codes_added,
            "dry_run": self.dry_run,
            "written": not self.dry_run and (self.new + self.changed) > 0,
        }


@dataclass
class _Row:
    number: int
    item: Item
    codes: list[tuple[CodeKey, str]] = field(default_factory=list)
    """Each code with the column it came from."""
    fields: tuple[str, str, str, str | None] = field(init=False)
    """name, category, base unit, strength: what ``items`` holds besides the code."""
    packs: tuple[Pack, ...] = field(init=False)
    """Sorted by unit. (Plain attributes: ``cached_property`` takes a lock per read on
    Python 3.11, 9% of an import's samples.)"""

    def __post_init__(self) -> None:
        i = self.item
        self.fields = (i.name, i.category.value, i.base_unit, i.strength)
        self.packs = tuple(sorted((p.unit, p.factor, p.gtin) for p in i.packs))

    def values(self, prefix: str = "") -> dict[str, Any]:
        """The ``items`` row (keys prefixed by ``prefix``)."""
        i = self.item
        row: dict[str, Any] = {"code": i.code, "name": i.name, "category": i.category.value}
        row |= {"base_unit": i.base_unit, "strength": i.strength}
        return {prefix + k: v for k, v in row.items()}


def _packs(value: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        bits = [b.strip() for b in part.split(":")]
        if len(bits) not in (2, 3) or not bits[0] or not bits[1]:
            raise ValueError(f"{part!r}: a pack is UNIT:FACTOR or UNIT:FACTOR:GTIN")
        try:
            factor = Decimal(bits[1])
        except InvalidOperation:
            raise ValueError(f"{part!r}: factor {bits[1]!r} is no number") from None
        if not factor.is_finite() or factor <= 0 or factor >= _MAX_FACTOR:
            raise ValueError(f"{part!r}: the factor is a number over 0 and under 10^12")
        exponent = factor.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -6:
            raise ValueError(f"{part!r}: the factor has more than 6 decimal places")
        gtin = bits[2] if len(bits) == 3 and bits[2] else None  # checked by PackConversion
        found.append({"unit": bits[0], "factor": factor, "gtin": gtin})
    return found


def _codes(column: str, value: str) -> list[CodeKey]:
    parts = [p.strip() for p in value.split(";") if p.strip()]
    if column == "ndc":
        return [(CodeSystem.NDC.value, "", normalize_ndc(p)) for p in parts]
    if column == "gtin":
        return [(CodeSystem.GTIN.value, "", normalize_gtin(p)) for p in parts]
    system, what = _PAIR_COLUMNS[column]
    return [(system.value, issuer, code) for issuer, code in pairs(value, what)]


def _parse(rows: Iterator[tuple[int, list[str]]], problems: Problems) -> tuple[list[_Row], int]:
    """The valid rows and the number of data rows; what is wrong goes to ``problems``."""
    first = next(rows, None)
    if first is None:
        raise ImportRejected([Problem(1, "", "the file is empty: a header row is needed")])
    where, header = header_problems(first[1], ITEM_COLUMNS, ITEM_REQUIRED)
    if header:
        raise ImportRejected(header)
    code_columns = [c for c in ("ndc", "gtin", *_PAIR_COLUMNS) if c in where]
    parsed: list[_Row] = []
    count = 0
    for number, cells in rows:
        if not any(c.strip() for c in cells):
            continue  # a blank line
        count += 1
        values = {name: (cells[i].strip() if i < len(cells) else "") for name, i in where.items()}
        bad = False
        for name, value in values.items():
            why = cell_problem(value)
            if why is not None:
                problems.add(number, name, why)
                bad = True
        if bad:
            continue
        try:
            packs = _packs(values.get("packs", ""))
        except ValueError as error:
            problems.add(number, "packs", str(error))
            packs = []
            bad = True
        codes: list[tuple[CodeKey, str]] = []
        for column in code_columns:
            try:
                codes += [(key, column) for key in _codes(column, values[column])]
            except ValueError as error:  # CodeError is one
                problems.add(number, column, str(error))
                bad = True
        try:
            item = Item(
                code=values["code"],
                name=values["name"],
                category=values["category"].lower(),
                base_unit=values["base_unit"],
                strength=values.get("strength") or None,
                packs=packs,
            )
        except ValidationError as error:
            for e in error.errors():
                loc = e["loc"][0] if e["loc"] else "packs"
                problems.add(number, str(loc) if loc in ITEM_COLUMNS else "packs", e["msg"])
            continue
        if not bad:
            parsed.append(_Row(number, item, list(dict.fromkeys(codes))))
    return parsed, count


@dataclass
class _Current:
    units: set[str]
    fields: dict[str, tuple[str, str, str, str | None]]
    packs: dict[str, tuple[Pack, ...]]
    codes: dict[CodeKey, str]

    @classmethod
    def load(cls, conn: Connection) -> _Current:
        packs: dict[str, list[Pack]] = {}
        for r in conn.execute(
            select(item_packs.c.item, item_packs.c.unit, item_packs.c.factor, item_packs.c.gtin)
        ):
            packs.setdefault(r.item, []).append((r.unit, r.factor, r.gtin))
        return cls(
            units=set(conn.execute(select(units.c.code)).scalars()),
            fields={
                r.code: (r.name, r.category, r.base_unit, r.strength)
                for r in conn.execute(
                    select(
                        items.c.code,
                        items.c.name,
                        items.c.category,
                        items.c.base_unit,
                        items.c.strength,
                    )
                )
            },
            packs={item: tuple(sorted(p)) for item, p in packs.items()},
            codes={
                (r.system, r.issuer, r.code): r.item
                for r in conn.execute(
                    select(
                        item_codes.c.system,
                        item_codes.c.issuer,
                        item_codes.c.code,
                        item_codes.c.item,
                    )
                )
            },
        )


def _check(parsed: list[_Row], current: _Current, problems: Problems) -> None:
    """What no row shows alone: duplicates in the file, unknown units, codes and pack GTINs
    of other items."""
    first_row: dict[str, int] = {}
    code_owner: dict[CodeKey, tuple[str, int]] = {}
    in_file = {row.item.code for row in parsed}
    gtin_owner: dict[str, tuple[str, int]] = {
        gtin: (item, 0)
        for item, packs in current.packs.items()
        if item not in in_file
        for _, _, gtin in packs
        if gtin
    }
    for row in parsed:
        item = row.item
        if item.code in first_row:
            problems.add(
                row.number, "code", f"item {item.code} is on row {first_row[item.code]} too"
            )
            continue
        first_row[item.code] = row.number
        if item.base_unit not in current.units:
            problems.add(row.number, "base_unit", f"unknown unit {item.base_unit!r}")
        for pack in item.packs:
            if pack.unit not in current.units:
                problems.add(row.number, "packs", f"unknown unit {pack.unit!r}")
            if pack.gtin:
                owner = gtin_owner.setdefault(pack.gtin, (item.code, row.number))
                if owner[0] != item.code:
                    where = f"on row {owner[1]}" if owner[1] else "already"
                    problems.add(
                        row.number, "packs", f"pack GTIN {pack.gtin} is {owner[0]}'s {where}"
                    )
        for key, column in row.codes:
            mapped = current.codes.get(key)
            if mapped is not None and mapped != item.code:
                problems.add(
                    row.number,
                    column,
                    f"{key[0]} {key[2]} already maps to {mapped}"
                    " (remove that cross-reference first: medbridge xref remove)",
                )
                continue
            owner = code_owner.setdefault(key, (item.code, row.number))
            if owner[0] != item.code:
                problems.add(
                    row.number, column, f"{key[0]} {key[2]} is {owner[0]}'s on row {owner[1]}"
                )


def _state(
    code: str, fields: tuple[str, str, str, str | None], packs: Iterable[Pack]
) -> dict[str, Any]:
    """An item as ``MasterDataRepository.save_item`` audits it (same digest)."""
    name, category, base_unit, strength = fields
    return {
        "code": code,
        "name": name,
        "category": category,
        "base_unit": base_unit,
        "strength": strength,
        "packs": [{"unit": u, "factor": f, "gtin": g} for u, f, g in sorted(packs)],
    }


_ITEMS = BulkInsert(items, ("code", "name", "category", "base_unit", "strength"), copy=True)
_PACKS = BulkInsert(item_packs, ("item", "unit", "factor", "gtin"), copy=True)
_CODES = BulkInsert(item_codes, ("system", "issuer", "code", "item"), copy=True)


def import_items(
    engine: Engine,
    name: str,
    data: bytes,
    *,
    actor: str,
    dry_run: bool = False,
) -> ImportReport:
    """Import the items of ``data`` (a CSV or XLSX file called ``name``); ImportRejected
    listing the problems (nothing written), else what was (``dry_run``: would be) done."""
    sha256 = hashlib.sha256(data).hexdigest()
    problems = Problems()
    parsed, count = _parse(read_rows(name, data), problems)
    begin = engine.connect if dry_run else engine.begin
    with begin() as conn:
        if not dry_run:
            lock_writers(conn)  # every master-data writer bumps the revision: one at a time
        current = _Current.load(conn)
        _check(parsed, current, problems)
        problems.raise_any()
        new: list[_Row] = []
        changed: list[tuple[_Row, bool, bool]] = []  # row, fields changed, packs changed
        added: dict[str, list[CodeKey]] = {}
        for row in parsed:
            code = row.item.code
            fresh = [key for key, _ in row.codes if key not in current.codes]
            if fresh:
                added[code] = fresh
            if code not in current.fields:
                new.append(row)
                continue
            fields_differ = current.fields[code] != row.fields
            packs_differ = current.packs.get(code, ()) != row.packs
            if fields_differ or packs_differ or fresh:
                changed.append((row, fields_differ, packs_differ))
        report = ImportReport(
            kind="items",
            file=name,
            sha256=sha256,
            rows=count,
            new=len(new),
            changed=len(changed),
            unchanged=len(parsed) - len(new) - len(changed),
            codes_added=sum(len(v) for v in added.values()),
            dry_run=dry_run,
        )
        if dry_run or not (new or changed):
            return report
        _write(conn, current, new, changed, added, report, actor)
    return report


def _write(
    conn: Connection,
    current: _Current,
    new: list[_Row],
    changed: list[tuple[_Row, bool, bool]],
    added: dict[str, list[CodeKey]],
    report: ImportReport,
    actor: str,
) -> None:
    touch(conn)
    _ITEMS(conn, [r.values() for r in new])
    updates = [r for r, fields_differ, _ in changed if fields_differ]
    if updates:
        conn.execute(
            update(items)
            .where(items.c.code == bindparam("b_code"))
            .values(
                name=bindparam("b_name"),
                category=bindparam("b_category"),
                base_unit=bindparam("b_base_unit"),
                strength=bindparam("b_strength"),
            ),
            [r.values("b_") for r in updates],
        )
    repacked = [r for r, _, packs_differ in changed if packs_differ]
    for chunk in chunks([r.item.code for r in repacked]):
        conn.execute(delete(item_packs).where(item_packs.c.item.in_(chunk)))
    _PACKS(
        conn,
        [
            {"item": r.item.code, "unit": u, "factor": f, "gtin": g}
            for r in (*new, *repacked)
            for u, f, g in r.packs
        ],
    )
    _CODES(
        conn,
        [
            {"system": s, "issuer": i, "code": c, "item": item}
            for item, keys in added.items()
            for s, i, c in keys
        ],
    )
    tag = report.sha256[:16]
    rows = [
        audit.Change(
            action="masterdata.item.save",
            target_type="item",
            target_id=r.item.code,
            before=None,
            after=_state(r.item.code, r.fields, r.packs),
            detail={
                "import": tag,
                "codes_added": ["/".join(k) for k in added.get(r.item.code, ())],
            },
        )
        for r in new
    ]
    for r, _, _ in changed:
        code = r.item.code
        before = _state(code, current.fields[code], current.packs.get(code, ()))
        after = _state(code, r.fields, r.packs)
        rows.append(
            audit.Change(
                action="masterdata.item.save",
                target_type="item",
                target_id=code,
                before=before,
                after=after,
                detail={
                    "import": tag,
                    "changes": changes(before, after),
                    "codes_added": ["/".join(k) for k in added.get(code, ())],
                },
            )
        )
    rows.append(
        audit.Change(
            action="masterdata.import",
            target_type="import",
            target_id=f"items:{report.file}",
            detail={
                k: v for k, v in report.as_dict().items() if k not in ("dry_run", "written", "kind")
            }
            | {"kind": "items"},
        )
    )
    audit.append_many(conn, rows, actor=actor)
