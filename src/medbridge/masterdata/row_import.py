"""Bulk import of the master data that is one row per code: suppliers, cost centers and
locations, from CSV or XLSX, with the items' rules (``masterdata.importer``): the whole file
validated, every problem named by row and column, all or nothing in one transaction, only
what differs written, a re-import changing nothing, audited (one row per new or changed
record, the same state digests as ``MasterDataRepository``'s writes, and one
``masterdata.import`` row).

The columns (* required):

- units: ``code``* (``EA``, ``VIAL``, ``mL``...), ``name``*
- suppliers: ``code``*, ``name``*, ``status`` (``active``, ``on_hold``, ``inactive``; default
  active), ``lead_time_days`` (0 to 3650, default 2)
- cost-centers: ``code``*, ``name``*, ``facility``* (a location of kind facility, known)
- locations: ``code``*, ``name``*, ``kind``* (network, facility, store, bin), ``parent`` (a
  network for a facility, a facility for a store, a store for a bin: known, or in the same
  file), ``cost_center`` (known). The facility of each location follows from its parents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine, Table, bindparam, select, update

from medbridge.canonical.masterdata import (
    LOCATION_PARENT,
    CostCenter,
    Location,
    LocationKind,
    Supplier,
    UnitOfMeasure,
)
from medbridge.domain.audit import changes
from medbridge.masterdata.cache import lock_writers, touch
from medbridge.masterdata.importer import ImportReport
from medbridge.masterdata.repository import follow_facility
from medbridge.masterdata.tabular import (
    ImportRejected,
    Problem,
    Problems,
    cell_problem,
    header_problems,
    read_rows,
)
from medbridge.store import audit
from medbridge.store.sql import BulkInsert
from medbridge.store.tables import (
    cost_centers,
    locations,
    suppliers,
    units,
)

Record = dict[str, Any]
Checker = Callable[[Connection, list[tuple[int, Record]], Problems], None]

_LEVEL = {LocationKind.NETWORK.value: 0, "facility": 1, "store": 2, "bin": 3}


@dataclass(frozen=True)
class Kind:
    name: str
    table: Table
    model: type[BaseModel]
    columns: tuple[str, ...]
    required: tuple[str, ...]
    target_type: str
    fallback: str
    """The column a model-level refusal names."""
    check: Checker


def _suppliers(conn: Connection, rows: list[tuple[int, Record]], problems: Problems) -> None:
    for number, row in rows:
        if row["lead_time_days"] > 3650:
            problems.add(number, "lead_time_days", "at most 3650 days")


def _cost_centers(conn: Connection, rows: list[tuple[int, Record]], problems: Problems) -> None:
    facilities = set(
        conn.execute(
            select(locations.c.code).where(locations.c.kind == LocationKind.FACILITY.value)
        ).scalars()
    )
    for number, row in rows:
        if row["facility"] not in facilities:
            problems.add(number, "facility", f"{row['facility']!r} is no known facility")


def _locations(conn: Connection, rows: list[tuple[int, Record]], problems: Problems) -> None:
    """Parents known (or in the file) and of the right kind; cost centers known; each row's
    ``facility`` derived (rows sorted parents first)."""
    known = {
        r.code: (r.kind, r.facility)
        for r in conn.execute(select(locations.c.code, locations.c.kind, locations.c.facility))
    }
    centers = set(conn.execute(select(cost_centers.c.code)).scalars())
    rows.sort(key=lambda r: _LEVEL[r[1]["kind"]])
    for _, row in rows:
        known[row["code"]] = (row["kind"], None)
    for number, row in rows:
        kind, parent = row["kind"], row["parent"]
        facility = row["code"] if kind == LocationKind.FACILITY.value else None
        if parent is not None:
            found = known.get(parent)
            wanted = LOCATION_PARENT[LocationKind(kind)]
            if found is None:
                problems.add(number, "parent", f"unknown location {parent!r}")
            elif wanted is not None and found[0] != wanted.value:
                problems.add(
                    number,
                    "parent",
                    f"a {kind}'s parent is a {wanted.value}, {parent} is a {found[0]}",
                )
            elif facility is None:
                facility = found[1]
        if row["cost_center"] is not None and row["cost_center"] not in centers:
            problems.add(number, "cost_center", f"unknown cost center {row['cost_center']!r}")
        row["facility"] = facility
        known[row["code"]] = (kind, facility)


def _nothing(conn: Connection, rows: list[tuple[int, Record]], problems: Problems) -> None:
    """Units refer to nothing."""


KINDS = {
    kind.name: kind
    for kind in (
        Kind(
            "units",
            units,
            UnitOfMeasure,
            ("code", "name"),
            ("code", "name"),
            "unit",
            "code",
            _nothing,
        ),
        Kind(
            "suppliers",
            suppliers,
            Supplier,
            ("code", "name", "status", "lead_time_days"),
            ("code", "name"),
            "supplier",
            "code",
            _suppliers,
        ),
        Kind(
            "cost-centers",
            cost_centers,
            CostCenter,
            ("code", "name", "facility"),
            ("code", "name", "facility"),
            "cost_center",
            "code",
            _cost_centers,
        ),
        Kind(
            "locations",
            locations,
            Location,
            ("code", "name", "kind", "parent", "cost_center"),
            ("code", "name", "kind"),
            "location",
            "parent",
            _locations,
        ),
    )
}


def _parse(
    kind: Kind, name: str, data: bytes, problems: Problems
) -> tuple[list[tuple[int, Record]], int]:
    found = read_rows(name, data)
    first = next(found, None)
    if first is None:
        raise ImportRejected([Problem(1, "", "the file is empty: a header row is needed")])
    where, header = header_problems(first[1], kind.columns, kind.required)
    if header:
        raise ImportRejected(header)
    parsed: list[tuple[int, Record]] = []
    seen: dict[str, int] = {}
    count = 0
    for number, cells in found:
        if not any(c.strip() for c in cells):
            continue
        count += 1
        values = {c: (cells[i].strip() if i < len(cells) else "") for c, i in where.items()}
        bad = [(c, why) for c, v in values.items() if (why := cell_problem(v)) is not None]
        for column, why in bad:
            problems.add(number, column, why)
        if bad:
            continue
        try:
            model = kind.model(**{c: v for c, v in values.items() if v})
        except ValidationError as error:
            for e in error.errors():
                loc = str(e["loc"][0]) if e["loc"] else kind.fallback
                problems.add(number, loc if loc in kind.columns else kind.fallback, e["msg"])
            continue
        row = model.model_dump(mode="json")
        if row["code"] in seen:
            problems.add(number, "code", f"{row['code']} is on row {seen[row['code']]} too")
            continue
        seen[row["code"]] = number
        parsed.append((number, row))
    return parsed, count


def import_rows(
    engine: Engine, kind_name: str, name: str, data: bytes, *, actor: str, dry_run: bool = False
) -> ImportReport:
    """Import the ``kind_name`` records (suppliers, cost-centers, locations) of ``data``;
    ImportRejected listing the problems (nothing written), else the counts."""
    kind = KINDS[kind_name]
    problems = Problems()
    parsed, count = _parse(kind, name, data, problems)
    begin = engine.connect if dry_run else engine.begin
    with begin() as conn:
        if not dry_run:
            lock_writers(conn)  # every master-data writer bumps the revision: one at a time
        kind.check(conn, parsed, problems)
        problems.raise_any()
        current = {r.code: dict(r._mapping) for r in conn.execute(select(kind.table))}
        new = [row for _, row in parsed if row["code"] not in current]
        changed = [
            row for _, row in parsed if row["code"] in current and current[row["code"]] != row
        ]
        report = ImportReport(
            kind=kind.name,
            file=name,
            sha256=hashlib.sha256(data).hexdigest(),
            rows=count,
            new=len(new),
            changed=len(changed),
            unchanged=len(parsed) - len(new) - len(changed),
            codes_added=0,
            dry_run=dry_run,
        )
        if dry_run or not (new or changed):
            return report
        touch(conn)
        columns = list(kind.table.c.keys())
        BulkInsert(kind.table, columns, copy=True)(
            conn, [{c: r.get(c) for c in columns} for r in new]
        )
        if changed:
            conn.execute(
                update(kind.table)
                .where(kind.table.c.code == bindparam("b_code"))
                .values({c: bindparam(f"b_{c}") for c in columns if c != "code"}),
                [{f"b_{c}": r.get(c) for c in columns} for r in changed],
            )
            if kind.table is locations:  # a store moved: its bins not in the file follow it
                for r in changed:
                    follow_facility(conn, r["code"], r["facility"], actor=actor)
        action = f"masterdata.{kind.target_type}.save"
        tag = report.sha256[:16]
        rows = [
            audit.Change(
                action=action,
                target_type=kind.target_type,
                target_id=r["code"],
                before=current.get(r["code"]),
                after={c: r.get(c) for c in columns},
                detail={"import": tag, "changes": changes(current.get(r["code"]), r)},
            )
            for r in (*new, *changed)
        ]
        rows.append(
            audit.Change(
                action="masterdata.import",
                target_type="import",
                target_id=f"{kind.name}:{name}",
                detail={
                    k: v for k, v in report.as_dict().items() if k not in ("dry_run", "written")
                },
            )
        )
        audit.append_many(conn, rows, actor=actor)
    return report
