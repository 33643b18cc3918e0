"""Master data and cross-references resolved from memory, kept fresh on change.

Resolving an inbound message used to cost a dozen small queries (item, codes, packs,
location, cross-references ...); under load that was most of the ingest path's time and held
the database's connection pool. A ``MasterDataSnapshot`` holds every table the intake and the
resolver read, in dicts, loaded in bulk in one read transaction; a ``MasterDataCache`` hands
out the current snapshot and replaces it when master data changed.

Freshness, stated:

- Every write of master data or of a cross-reference (``MasterDataRepository`` and
  ``CrossReferences``) increments the one-row ``masterdata_revision`` in its own transaction,
  and notes locally that a change is on its way (``note_local_change``).
- ``snapshot()`` compares the stored revision with the loaded one on every call for
  ``settle`` seconds after this process wrote master data, and otherwise at most every
  ``interval`` seconds; a changed revision reloads everything. A write in this process is
  therefore seen by the first resolution after its commit; a write in another process within
  ``interval`` seconds.
- A snapshot is immutable: a resolution never sees half of a change.
- A reload happens on one thread; the others wait for it only when they must see the change
  (``fresh``, or within ``settle`` of this process's write). A periodic look while another
  thread reloads goes on with the snapshot in hand: after a bulk import of 100,000 items the
  reload takes seconds, and every resolution of every process used to wait for it. So a
  write in another process is seen within ``interval`` seconds plus one reload.

``snapshot(fresh=True)`` looks at the revision now, whatever the interval (one small query;
a reload only if it changed): a replay after a fix, and any resolution that found a problem
with the cached snapshot, look again before they park or refuse anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, insert, select, update

from medbridge.canonical.masterdata import (
    AccountRole,
    CodeSystem,
    Item,
    ItemCategory,
    LocationKind,
    PackConversion,
)
from medbridge.store.db import read_only
from medbridge.store.tables import (
    account_assignments,
    cost_center_xrefs,
    cost_centers,
    item_codes,
    item_packs,
    items,
    location_xrefs,
    locations,
    masterdata_revision,
    unit_xrefs,
)

_last_local_change = float("-inf")


def note_local_change() -> None:
    """This process is writing master data: look at the revision on every resolution for
    the next ``settle`` seconds (the write commits in that time, or was rolled back)."""
    global _last_local_change
    _last_local_change = time.monotonic()


def touch(conn: Connection) -> None:
    """Bump the master-data revision in the writer's transaction (call on every write)."""
    note_local_change()
    bumped = conn.execute(
        update(masterdata_revision)
        .where(masterdata_revision.c.id == 1)
        .values(revision=masterdata_revision.c.revision + 1)
    )
    if not bumped.rowcount:  # a schema made without the migration's first row
        conn.execute(insert(masterdata_revision).values(id=1, revision=1))


def lock_writers(conn: Connection) -> None:
    """Take the master-data writers' turn for this transaction (PostgreSQL: the revision row
    every writer bumps, locked first); a bulk import reads the current state after it."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(masterdata_revision.c.revision)
            .where(masterdata_revision.c.id == 1)
            .with_for_update()
        )


def current_revision(conn: Connection) -> int:
    found = conn.execute(
        select(masterdata_revision.c.revision).where(masterdata_revision.c.id == 1)
    ).scalar_one_or_none()
    return int(found or 0)


@dataclass(frozen=True)
class LocationInfo:
    code: str
    kind: LocationKind
    facility: str | None
    cost_center: str | None


@dataclass(frozen=True)
class MasterDataSnapshot:
    """Every table the intake and the resolver read, as of one revision."""

    revision: int
    item_by_code: dict[str, Item] = field(default_factory=dict)
    codes: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(system, issuer, code) -> item."""
    pack_gtins: dict[str, tuple[str, str]] = field(default_factory=dict)
    """pack GTIN -> (item, unit)."""
    location_by_code: dict[str, LocationInfo] = field(default_factory=dict)
    cost_center_codes: frozenset[str] = frozenset()
    location_xrefs: dict[tuple[str, str], str] = field(default_factory=dict)
    unit_xrefs: dict[tuple[str, str], str] = field(default_factory=dict)
    cost_center_xrefs: dict[tuple[str, str], str] = field(default_factory=dict)
    accounts: dict[tuple[str, AccountRole], str] = field(default_factory=dict)

    # the reads of MasterDataRepository, from memory
    def items(self, codes: Iterable[str]) -> dict[str, Item]:
        return {c: self.item_by_code[c] for c in set(codes) if c in self.item_by_code}

    def item_for(self, system: CodeSystem, code: str, issuer: str = "") -> str | None:
        return self.codes.get((system.value, issuer, code))

    def locations(self, codes: Iterable[str]) -> dict[str, LocationInfo]:
        return {c: self.location_by_code[c] for c in set(codes) if c in self.location_by_code}

    def cost_centers(self, codes: Iterable[str]) -> set[str]:
        return {c for c in codes if c in self.cost_center_codes}

    @classmethod
    def load(cls, conn: Connection) -> MasterDataSnapshot:
        """Everything, in bulk (a handful of queries in the caller's read transaction)."""
        revision = current_revision(conn)
        packs: dict[str, list[PackConversion]] = {}
        pack_gtins: dict[str, tuple[str, str]] = {}
        for row in conn.execute(select(item_packs)):
            packs.setdefault(row.item, []).append(
                PackConversion(unit=row.unit, factor=row.factor, gtin=row.gtin)
            )
            if row.gtin:
                pack_gtins[row.gtin] = (row.item, row.unit)
        by_code = {
            row.code: Item(
                code=row.code,
                name=row.name,
                category=ItemCategory(row.category),
                base_unit=row.base_unit,
                strength=row.strength,
                packs=tuple(packs.get(row.code, ())),
            )
            for row in conn.execute(select(items))
        }
        return cls(
            revision=revision,
            item_by_code=by_code,
            codes={(r.system, r.issuer, r.code): r.item for r in conn.execute(select(item_codes))},
            pack_gtins=pack_gtins,
            location_by_code={
                r.code: LocationInfo(r.code, LocationKind(r.kind), r.facility, r.cost_center)
                for r in conn.execute(select(locations))
            },
            cost_center_codes=frozenset(conn.execute(select(cost_centers.c.code)).scalars()),
            location_xrefs={
                (r.source_system, r.code): r.location for r in conn.execute(select(location_xrefs))
            },
            unit_xrefs={
                (r.source_system, r.code): r.unit for r in conn.execute(select(unit_xrefs))
            },
            cost_center_xrefs={
                (r.source_system, r.code): r.cost_center
                for r in conn.execute(select(cost_center_xrefs))
            },
            accounts={
                (r.facility, AccountRole(r.role)): r.account
                for r in conn.execute(select(account_assignments))
            },
        )


class MasterDataCache:
    """The current ``MasterDataSnapshot`` of one database, thread-safe."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float = 1.0,
        settle: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.interval, self.settle, self._clock = (
            read_only(engine),
            interval,
            settle,
            clock,
        )
        self._lock = threading.Lock()
        self._snapshot: MasterDataSnapshot | None = None
        self._next_check = float("-inf")

    def snapshot(self, *, fresh: bool = False) -> MasterDataSnapshot:
        now = self._clock()
        current = self._snapshot
        if (
            current is not None
            and not fresh
            and now < self._next_check
            and now - _last_local_change >= self.settle
        ):
            return current
        settled = now - _last_local_change >= self.settle
        if current is not None and not fresh and settled:
            # a periodic look: while another thread reloads, go on with the snapshot in hand
            # rather than wait (a reload of 100,000 items takes seconds; see the docstring)
            if not self._lock.acquire(blocking=False):
                return current
            self._lock.release()
        with self._lock:
            with self.engine.connect() as conn:
                revision = current_revision(conn)
                current = self._snapshot
                if current is None or revision != current.revision:
                    current = MasterDataSnapshot.load(conn)
                    self._snapshot = current
            self._next_check = now + self.interval
            return current

    def invalidate(self) -> None:
        """Reload on the next call (tests that write tables directly)."""
        self._snapshot = None
