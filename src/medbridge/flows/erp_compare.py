"""The shadow run's comparison on the store and the ERPs: what two destinations hold for a
period (``domain.erp_compare``), side by side.

Each destination's posted ledger lines of the period are read through its adapter (the GL
port's ``ledger_lines``); where each reference belongs (domain, facility) comes from the
outbox, the GL summaries and the journal (``store.erp_postings.document_origins``), a
reference MedBridge never sent from its accounts (``account_assignments``).

Which pairs: ``left`` and ``right`` when named (every domain), else each domain's system of
record against each of its shadows, as the routing table (base routes and cutovers) names
them; a pair reports the domains it was routed for (and the references of no domain). An
unreachable ERP raises the port's ``ErpUnavailable``: a comparison that could not look is no
clean one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select

from medbridge.canonical.erp import ErpLedgerLine, GeneralLedgerPort
from medbridge.domain.erp_compare import ErpComparison, Origin, compare
from medbridge.domain.erp_routing import RoutingTable
from medbridge.flows.erp_routing import ErpRouter
from medbridge.flows.reconciliation import period_bounds
from medbridge.store import erp_postings
from medbridge.store.tables import account_assignments


class CompareError(ValueError):
    """The comparison cannot be asked so: ``argument`` names what is wrong (``period``,
    ``left``, ``right``)."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


@dataclass(frozen=True)
class Pair:
    """Two destinations to compare; ``domains``: the domains to report (None: all)."""

    left: str
    right: str
    domains: frozenset[str] | None = None


def shadow_pairs(table: RoutingTable) -> list[Pair]:
    """Each system of record against each of its shadows, over every route of the table
    (base and cutovers); a pair met both ways (a cutover) once, in its first direction."""
    domains: dict[tuple[str, str], set[str]] = defaultdict(set)
    routes = [(d, r) for (d, _), r in table.base.items()]
    routes += [(c.domain, c.route) for c in table.cutovers]
    for domain, route in routes:
        for shadow in route.shadows:
            key = (route.record, shadow)
            if (shadow, route.record) in domains:
                key = (shadow, route.record)
            domains[key].add(domain.value)
    return [Pair(left, right, frozenset(found)) for (left, right), found in domains.items()]


def account_facilities(conn: Connection) -> dict[str, str]:
    """Each account assigned to exactly one facility, with it."""
    t = account_assignments
    rows = list(conn.execute(select(t.c.account, t.c.facility).distinct()))
    seen = Counter(r.account for r in rows)
    return {r.account: r.facility for r in rows if seen[r.account] == 1}


ErpOf = Callable[[str], GeneralLedgerPort | None]
"""A destination's adapter by name (None: not configured)."""


class ErpCompare:
    """Compares destinations (``router`` knows them and their routes; ``erp_of`` gives each
    one's adapter)."""

    def __init__(self, engine: Engine, router: ErpRouter, erp_of: ErpOf) -> None:
        self.engine, self.router, self.erp_of = engine, router, erp_of

    def pairs(self, left: str | None = None, right: str | None = None) -> list[Pair]:
        """The pair named, or the default pairs (``shadow_pairs``); ``CompareError`` for a
        destination that does not exist or one side named without the other."""
        known = self.router.names
        for argument, name in (("left", left), ("right", right)):
            if name is not None and name not in known:
                raise CompareError(
                    argument, f"no ERP destination {name!r} (known: {', '.join(known)})"
                )
        if (left is None) != (right is None):
            missing = "right" if right is None else "left"
            raise CompareError(missing, "name both sides, or neither (every shadow)")
        if left is not None and right is not None:
            if left == right:
                raise CompareError("right", f"{right!r} is the left side too")
            return [Pair(left, right)]
        with self.engine.connect() as conn:
            return shadow_pairs(self.router.current(conn))

    def compare(
        self, period: str, left: str | None = None, right: str | None = None
    ) -> list[ErpComparison]:
        """The comparison of each pair (``pairs``) for ``period`` (``YYYY-MM``)."""
        try:
            start, end = period_bounds(period)
        except ValueError as error:
            raise CompareError("period", str(error)) from error
        pairs = self.pairs(left, right)
        if not pairs:
            return []
        lines: dict[str, Sequence[ErpLedgerLine]] = {}
        for name in sorted({n for p in pairs for n in (p.left, p.right)}):
            erp = self.erp_of(name)
            if erp is None:
                side = "left" if any(p.left == name for p in pairs) else "right"
                raise CompareError(
                    side,
                    f"ERP destination {name!r} has no connection"
                    f" (set erps.{name}.url, database, password)",
                )
            lines[name] = erp.ledger_lines(start, end)
        references = sorted({ln.reference for found in lines.values() for ln in found})
        with self.engine.connect() as conn:
            found_origins = erp_postings.document_origins(conn, references)
            accounts = account_facilities(conn)
        origins = {ref: Origin(o.domain.value, o.facility) for ref, o in found_origins.items()}
        return [
            compare(p.left, lines[p.left], p.right, lines[p.right], origins, accounts, p.domains)
            for p in pairs
        ]
