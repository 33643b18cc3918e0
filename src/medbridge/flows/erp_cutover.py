"""Cutover and rollback of a domain's system of record (issue 17): one audited command,
effective at a stated moment.

``cut_over`` checks the command (the destination exists and offers what the domain needs,
the facility is one of master data's or ``*``, the moment is not in the past), computes the
route in effect at that moment for (domain, facility), makes ``to`` its system of record
(``Route.cut_over``: the old one kept as a shadow unless told otherwise) and appends the
cutover, audited as ``erp.cutover`` with the route before and after, in one transaction.
A rollback is the same command back (``to`` the old system of record).

What it promises:

* **the past never moves.** Every document is routed when it is queued, by the table read in
  the transaction that queues it (``ErpRouter``): its outbox rows name their destinations and
  keep them. A cutover effective at ``at`` changes the route of what is queued from ``at`` on,
  never of a row already queued, pending or posted. A moment in the past is refused (beyond
  ``CLOCK_SKEW``, a caller's clock running a little late; within it, the cutover takes effect
  now, so the table never claims a route for a moment that has already been routed). "Now"
  is read once every transaction that routed by the old table has committed
  (``store.erp_routes.lock_for_cutover``), so none of them queued a document after it.
* **nothing in flight is lost or doubled.** The outbox is keyed by (document, destination):
  a document queued before the moment is delivered to its old destinations exactly once,
  one queued after it to the new ones exactly once.

The errors are ``ValueError`` subclasses naming the field at fault (``CutoverError.field``)::

    CutoverError (ValueError)
    ├── UnknownDomain           domain: not an ERP domain
    ├── UnknownFacility         facility: neither master data's facility nor "*"
    ├── UnfitDestination        to: no such destination, lacks the capability, or is the
    │                           system of record already
    ├── NotRouted               domain: no destination receives it (nothing to cut over)
    └── InvalidMoment           at: no time zone, or beyond what a date holds
        └── CutoverInPast       at: before now (beyond the clock skew)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, select

from medbridge.canonical.masterdata import LocationKind
from medbridge.domain.erp_routing import (
    ALL_FACILITIES,
    Cutover,
    ErpDomain,
    Route,
    RoutingError,
    RoutingTable,
)
from medbridge.flows.erp_routing import ErpRouter
from medbridge.store import erp_routes
from medbridge.store.erp_routes import CutoverRow
from medbridge.store.tables import locations

CLOCK_SKEW = timedelta(seconds=60)
"""How far in the past a stated moment may be (a caller's clock a little behind ours); such
a cutover takes effect now."""


class CutoverError(ValueError):
    """A cutover that cannot be made as asked; ``field`` names the argument at fault."""

    field = "cutover"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.field}: {message}")
        self.reason = message


class UnknownDomain(CutoverError):
    field = "domain"


class UnknownFacility(CutoverError):
    field = "facility"


class UnfitDestination(CutoverError):
    field = "to"


class NotRouted(CutoverError):
    field = "domain"


class InvalidMoment(CutoverError):
    field = "at"


class CutoverInPast(InvalidMoment):
    pass


@dataclass(frozen=True)
class CutoverMade:
    id: int
    cutover: Cutover
    before: Route
    """The route in effect at the moment, which the cutover replaces."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def known_facilities(conn: Connection) -> set[str]:
    """Master data's facility codes."""
    stmt = select(locations.c.code).where(locations.c.kind == LocationKind.FACILITY.value)
    return {str(code) for code in conn.execute(stmt).scalars()}


def _domain(value: ErpDomain | str) -> ErpDomain:
    try:
        return ErpDomain(value)
    except ValueError:
        known = ", ".join(d.value for d in ErpDomain)
        raise UnknownDomain(f"{value!r} is not an ERP domain ({known})") from None


def cut_over(
    engine: Engine,
    router: ErpRouter,
    domain: ErpDomain | str,
    facility: str,
    to: str,
    at: datetime | None = None,
    *,
    actor: str,
    keep_shadow: bool = True,
    reason: str | None = None,
    now: datetime | None = None,
) -> CutoverMade:
    """From ``at`` (default: now), ``domain``'s documents of ``facility`` (or of every one,
    ``*``) go to ``to`` as their system of record; the old system of record stays a shadow
    unless ``keep_shadow`` is false. Audited as ``erp.cutover`` by ``actor``."""
    the_domain = _domain(domain)
    if at is not None:
        if at.tzinfo is None:
            raise InvalidMoment(f"{at.isoformat()} has no time zone (give one, e.g. Z)")
        try:
            at = at.astimezone(UTC)
        except OverflowError:
            raise InvalidMoment(f"{at.isoformat()} is beyond what a date holds") from None
    with engine.begin() as conn:
        erp_routes.lock_for_cutover(conn)  # every document routed before is committed now
        now = now or _utcnow()
        at = at or now
        if at < now - CLOCK_SKEW:
            raise CutoverInPast(
                f"{at.isoformat()} is in the past (now {now.isoformat()}): a cutover never"
                " re-routes what was queued already"
            )
        effective = max(at, now).astimezone(UTC)
        if facility != ALL_FACILITIES and facility not in known_facilities(conn):
            raise UnknownFacility(f"{facility!r} is not a facility of master data (nor '*')")
        table = router.current(conn)
        before = table.route(the_domain, facility, effective)
        if before is None:
            raise NotRouted(f"no ERP destination receives {the_domain.value}")
        try:
            after = before.cut_over(to, keep_shadow)
            table.check(the_domain, after, f"cutover of {the_domain.value}")
        except RoutingError as error:
            raise UnfitDestination(str(error)) from None
        cutover = Cutover(the_domain, facility, after, effective)
        new_id = erp_routes.record(
            conn, cutover, now=now, actor=actor, reason=reason, before=before
        )
    return CutoverMade(new_id, cutover, before)


@dataclass(frozen=True)
class RouteNow:
    domain: ErpDomain
    facility: str
    """A facility code, or ``*`` (every facility without a route of its own)."""
    route: Route
    since: datetime | None
    """The moment of the cutover that set it; None: the configured route."""


def routes_now(
    conn: Connection,
    router: ErpRouter,
    *,
    now: datetime | None = None,
    facilities: Iterable[str] | None = None,
) -> list[RouteNow]:
    """The route in effect ``now`` of every domain, for ``*`` and for every facility (of
    master data, the settings and the cutovers; only ``facilities`` when given)."""
    now = now or _utcnow()
    table = router.current(conn)
    if facilities is None:
        seen = known_facilities(conn) | {f for (_, f) in table.base}
        seen |= {c.facility for c in table.cutovers}
        shown = [ALL_FACILITIES, *sorted(seen - {ALL_FACILITIES})]
    else:
        shown = sorted(set(facilities))
    rows = []
    for domain in ErpDomain:
        for facility in shown:
            route = table.route(domain, facility, now)
            if route is not None:
                rows.append(RouteNow(domain, facility, route, _since(table, domain, facility, now)))
    return rows


def _since(table: RoutingTable, domain: ErpDomain, facility: str, now: datetime) -> datetime | None:
    found = None
    for cutover in table.cutovers:
        if cutover.effective_at > now:
            break
        if cutover.domain is domain and cutover.facility in (facility, ALL_FACILITIES):
            found = cutover.effective_at
    return found


def history(conn: Connection, facilities: Iterable[str] | None = None) -> list[CutoverRow]:
    """Every cutover, in effective order (only those of ``facilities`` and of ``*``, when
    given: what a client bound to them is routed by)."""
    rows = erp_routes.history(conn)
    if facilities is None:
        return rows
    mine = set(facilities) | {ALL_FACILITIES}
    return [r for r in rows if r.cutover.facility in mine]


__all__ = [
    "CLOCK_SKEW",
    "CutoverError",
    "CutoverInPast",
    "CutoverMade",
    "InvalidMoment",
    "NotRouted",
    "RouteNow",
    "UnfitDestination",
    "UnknownDomain",
    "UnknownFacility",
    "cut_over",
    "history",
    "known_facilities",
    "routes_now",
]
