"""Which ERP receives what (issue 17): named destinations, their capabilities, and the routing
table per domain and facility with its cutovers. Pure: the settings give the base routes and
the destinations, the store the cutovers (``store.erp_routes``).

- A **destination** is a named ERP (``[erps.legacy]``). It offers some capabilities (general
  ledger, procurement, payables, master data): a domain is routed only to a destination that
  offers what the domain needs (``NEEDS``).
- A **route** says, for one domain, which destination is the system of record and which
  receive a shadow copy (the same documents, for a parallel run).
- The **routing table** answers the route of a document of a domain, of a facility, at a
  moment: the latest cutover in effect at that moment for that facility or for every facility
  (``*``), else the base route of the facility, else the domain's base route. A cutover never
  changes the past: a document keeps the route it was given when it was queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

ALL_FACILITIES = "*"

DEFAULT_DESTINATION = "tryton"
"""The name of the one ERP of the flat ``erp_*`` settings (and of every outbox row written
before destinations existed)."""


class ErpDomain(StrEnum):
    """What is routed: one kind of business document."""

    GL = "gl"
    """MedBridge's journal entries (per event or summarised)."""
    PURCHASE_ORDERS = "purchase_orders"
    """Purchase orders: create, confirm, cancel."""
    RECEIPTS = "receipts"
    """Goods receipts against purchase orders."""
    INVOICES = "invoices"
    """Supplier invoices and credit notes (created and posted: the ERP's own document books
    them)."""
    MASTERDATA = "masterdata"
    """Items, suppliers, accounts (sync both ways)."""


class Capability(StrEnum):
    """What a destination offers (the ERP port's parts, ``canonical.erp``)."""

    GENERAL_LEDGER = "general_ledger"
    PROCUREMENT = "procurement"
    PAYABLES = "payables"
    MASTER_DATA = "master_data"


NEEDS: Mapping[ErpDomain, Capability] = {
    ErpDomain.GL: Capability.GENERAL_LEDGER,
    ErpDomain.PURCHASE_ORDERS: Capability.PROCUREMENT,
    ErpDomain.RECEIPTS: Capability.PROCUREMENT,
    ErpDomain.INVOICES: Capability.PAYABLES,
    ErpDomain.MASTERDATA: Capability.MASTER_DATA,
}
"""The capability a destination must offer to receive a domain's documents."""


class Role(StrEnum):
    RECORD = "record"
    """The system of record: its answer is the one the workflow goes on with."""
    SHADOW = "shadow"
    """A parallel copy, compared with the system of record; never waited for."""


class RoutingError(ValueError):
    """A route names a destination that does not exist or lacks the domain's capability."""


@dataclass(frozen=True)
class Route:
    record: str
    shadows: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.record in self.shadows:
            raise RoutingError(f"{self.record} cannot be both system of record and shadow")
        if len(set(self.shadows)) != len(self.shadows):
            raise RoutingError(f"shadow destinations repeated: {', '.join(self.shadows)}")

    def deliveries(self) -> list[tuple[str, Role]]:
        """Every destination of the route with its role, the system of record first."""
        return [(self.record, Role.RECORD)] + [(s, Role.SHADOW) for s in self.shadows]

    def cut_over(self, to: str, keep_shadow: bool = True) -> Route:
        """The route with ``to`` as system of record; the old one kept as a shadow (so the
        systems stay in step and a rollback finds every document) unless ``keep_shadow`` is
        false."""
        if to == self.record:
            raise RoutingError(f"{to} is the system of record already")
        shadows = [s for s in self.shadows if s != to]
        if keep_shadow:
            shadows.insert(0, self.record)
        return Route(to, tuple(shadows))


@dataclass(frozen=True)
class Cutover:
    """From ``effective_at``, the documents of ``domain`` of ``facility`` (or ``*``) follow
    ``route``."""

    domain: ErpDomain
    facility: str
    route: Route
    effective_at: datetime


@dataclass(frozen=True)
class RoutingTable:
    destinations: Mapping[str, frozenset[Capability]]
    """Every destination by name, with what it offers."""
    base: Mapping[tuple[ErpDomain, str], Route]
    """The configured routes per (domain, facility or ``*``), in effect from the start."""
    cutovers: Sequence[Cutover] = field(default=())

    def __post_init__(self) -> None:
        for (domain, facility), route in self.base.items():
            self.check(domain, route, f"route of {domain.value} for {facility}")
        for cutover in self.cutovers:
            self.check(cutover.domain, cutover.route, f"cutover of {cutover.domain.value}")

    def check(self, domain: ErpDomain, route: Route, what: str) -> None:
        """Raise ``RoutingError`` unless every destination of ``route`` exists and offers
        what ``domain`` needs."""
        for name, _ in route.deliveries():
            offers = self.destinations.get(name)
            if offers is None:
                known = ", ".join(sorted(self.destinations)) or "none"
                raise RoutingError(f"{what}: no ERP destination {name!r} (known: {known})")
            if NEEDS[domain] not in offers:
                raise RoutingError(
                    f"{what}: destination {name!r} does not offer {NEEDS[domain].value}"
                )

    def with_cutovers(self, cutovers: Iterable[Cutover]) -> RoutingTable:
        ordered = sorted(cutovers, key=lambda c: c.effective_at)
        return RoutingTable(self.destinations, self.base, tuple(ordered))

    def route(self, domain: ErpDomain, facility: str | None, at: datetime) -> Route | None:
        """The route of a document of ``domain`` and ``facility`` queued at ``at``; None when
        no destination receives the domain."""
        found: Route | None = None
        for cutover in self.cutovers:  # in effective order: the latest in effect wins
            if cutover.effective_at > at:
                break
            if cutover.domain is domain and cutover.facility in (facility, ALL_FACILITIES):
                found = cutover.route
        if found is not None:
            return found
        if facility is not None and (domain, facility) in self.base:
            return self.base[(domain, facility)]
        return self.base.get((domain, ALL_FACILITIES))

    def destinations_of(self, domain: ErpDomain) -> set[str]:
        """Every destination that receives (or has received) ``domain`` in any role."""
        routes = [r for (d, _), r in self.base.items() if d is domain]
        routes += [c.route for c in self.cutovers if c.domain is domain]
        return {name for route in routes for name, _ in route.deliveries()}


def single(name: str, capabilities: frozenset[Capability] | None = None) -> RoutingTable:
    """One destination receiving every domain it offers (the setup of one ERP)."""
    offers = capabilities if capabilities is not None else frozenset(Capability)
    return RoutingTable(
        {name: offers},
        {(d, ALL_FACILITIES): Route(name) for d in ErpDomain if NEEDS[d] in offers},
    )
