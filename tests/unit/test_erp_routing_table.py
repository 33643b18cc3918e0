"""The routing table with cutovers (``domain.erp_routing``): which route a document of a
domain and facility is given at a moment, before, at and after a cutover; a facility's own
cutover against one of every facility (``*``); a rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from medbridge.domain.erp_routing import (
    ALL_FACILITIES,
    Capability,
    Cutover,
    ErpDomain,
    Route,
    RoutingError,
    RoutingTable,
)

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
GL = ErpDomain.GL
LEGACY = Route("legacy")


def table(*cutovers: Cutover) -> RoutingTable:
    base = RoutingTable(
        {
            "legacy": frozenset(Capability),
            "cloud": frozenset({Capability.GENERAL_LEDGER}),
        },
        {(d, ALL_FACILITIES): LEGACY for d in ErpDomain},
    )
    return base.with_cutovers(cutovers)


def test_a_cutover_routes_from_its_moment_on_and_never_before() -> None:
    to_cloud = Cutover(GL, "H1", LEGACY.cut_over("cloud"), T0)
    t = table(to_cloud)
    assert t.route(GL, "H1", T0 - SECOND) == LEGACY
    assert t.route(GL, "H1", T0) == Route("cloud", ("legacy",))  # at the moment: the new route
    assert t.route(GL, "H1", T0 + timedelta(days=30)) == Route("cloud", ("legacy",))


def test_a_facilitys_cutover_leaves_other_facilities_and_domains_alone() -> None:
    t = table(Cutover(GL, "H1", LEGACY.cut_over("cloud"), T0))
    later = T0 + SECOND
    assert t.route(GL, "H2", later) == LEGACY
    assert t.route(GL, None, later) == LEGACY  # an entry of no facility follows '*'
    assert t.route(ErpDomain.INVOICES, "H1", later) == LEGACY


def test_a_cutover_of_every_facility_applies_to_each_and_the_latest_in_effect_wins() -> None:
    everywhere = Cutover(GL, ALL_FACILITIES, LEGACY.cut_over("cloud", keep_shadow=False), T0)
    h1_back = Cutover(GL, "H1", Route("legacy", ("cloud",)), T0 + 10 * SECOND)
    t = table(h1_back, everywhere)  # any order: the table sorts them by their moment
    assert t.route(GL, "H1", T0 + SECOND) == Route("cloud")
    assert t.route(GL, "H2", T0 + SECOND) == Route("cloud")
    assert t.route(GL, "H1", T0 + 10 * SECOND) == Route("legacy", ("cloud",))
    assert t.route(GL, "H2", T0 + 10 * SECOND) == Route("cloud")
    assert t.route(GL, ALL_FACILITIES, T0 + 10 * SECOND) == Route("cloud")


def test_a_facilitys_base_route_yields_to_a_later_cutover_of_every_facility() -> None:
    base = RoutingTable(
        {"legacy": frozenset(Capability), "cloud": frozenset(Capability)},
        {(GL, ALL_FACILITIES): LEGACY, (GL, "H2"): Route("cloud")},
    )
    assert base.route(GL, "H2", T0) == Route("cloud")
    t = base.with_cutovers([Cutover(GL, ALL_FACILITIES, Route("legacy", ("cloud",)), T0)])
    assert t.route(GL, "H2", T0 - SECOND) == Route("cloud")
    assert t.route(GL, "H2", T0) == Route("legacy", ("cloud",))


def test_a_rollback_is_the_same_cutover_back_and_routes_as_before_from_its_moment() -> None:
    forth = LEGACY.cut_over("cloud")
    back = forth.cut_over("legacy")
    assert (forth, back) == (Route("cloud", ("legacy",)), Route("legacy", ("cloud",)))
    t = table(Cutover(GL, "H1", forth, T0), Cutover(GL, "H1", back, T0 + 60 * SECOND))
    assert [t.route(GL, "H1", T0 + s * SECOND).record for s in (-1, 0, 59, 60, 61)] == [
        "legacy",
        "cloud",
        "cloud",
        "legacy",
        "legacy",
    ]
    # without the shadow kept, a rollback leaves the cloud with nothing new
    assert forth.cut_over("legacy", keep_shadow=False) == Route("legacy")


def test_a_cutover_to_the_system_of_record_or_to_an_unfit_destination_is_refused() -> None:
    with pytest.raises(RoutingError, match="system of record already"):
        LEGACY.cut_over("legacy")
    t = table()
    with pytest.raises(RoutingError, match="does not offer procurement"):
        t.check(ErpDomain.PURCHASE_ORDERS, LEGACY.cut_over("cloud"), "cutover")
    with pytest.raises(RoutingError, match="no ERP destination 'nowhere'"):
        t.check(GL, LEGACY.cut_over("nowhere"), "cutover")
    with pytest.raises(RoutingError):
        table(Cutover(ErpDomain.RECEIPTS, "H1", Route("cloud"), T0))
