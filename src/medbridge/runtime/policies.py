"""The declared policies the settings configure: retries of the consumers, the ERP posting
queue's rate limit, breaker and hold windows, and the procurement workflows' timeouts and
matching tolerances."""

from __future__ import annotations

from datetime import timedelta

from medbridge.bus.port import RetryPolicy
from medbridge.domain.erp_routing import (
    ALL_FACILITIES,
    DEFAULT_DESTINATION,
    Capability,
    ErpDomain,
    Route,
    RoutingTable,
    single,
)
from medbridge.domain.gl_summary import GlPostingMode, SummaryPeriod
from medbridge.domain.matching import Tolerances
from medbridge.flows.contract_catalog import CatalogPolicy
from medbridge.flows.erp_posting import ErpPostingPolicy, PostingWindows
from medbridge.flows.erp_routing import ErpRouter
from medbridge.flows.gl_summary import GlPostingPolicy
from medbridge.flows.ledger_posting import INFRASTRUCTURE_ERRORS, PERMANENT_ERRORS
from medbridge.flows.procurement import ProcurementPolicy
from medbridge.flows.replenishment import PlannerPolicy
from medbridge.settings import ErpDestinationSettings, Settings


def catalog_policy(settings: Settings) -> CatalogPolicy:
    """How partners' 832 catalogs change contract prices: tolerance and our price tier."""
    return CatalogPolicy(settings.contract_price_tolerance, settings.contract_catalog_tier)


def consumer_retry(settings: Settings) -> RetryPolicy:
    """A consumer's retries (the procurement router's: every error is worth a retry)."""
    return RetryPolicy(
        max_attempts=settings.retry_max_attempts,
        initial_backoff=settings.retry_initial_backoff,
        max_backoff=settings.retry_max_backoff,
    )


def ledger_retry(settings: Settings) -> RetryPolicy:
    """The ledger consumer's: bad data dead-letters at once, an outage halts the batch."""
    return RetryPolicy(
        max_attempts=settings.retry_max_attempts,
        initial_backoff=settings.retry_initial_backoff,
        max_backoff=settings.retry_max_backoff,
        permanent=PERMANENT_ERRORS,
        halt_on=INFRASTRUCTURE_ERRORS,
    )


def erp_destinations(settings: Settings) -> dict[str, ErpDestinationSettings]:
    """The named ERPs: ``erps``, or the one of the flat ``erp_*`` settings, named ``tryton``
    (its GL posting mode ``erp_gl_posting``, summarised by default)."""
    if settings.erps:
        return dict(settings.erps)
    s = settings
    one = ErpDestinationSettings.model_construct(
        url=s.erp_url,
        database=s.erp_database,
        user=s.erp_user,
        password=s.erp_password,
        series=s.erp_series,
        capabilities=list(Capability),
        rate_limit=s.erp_rate_limit,
        burst=s.erp_burst,
        batch_size=s.erp_batch_size,
        hold_windows=s.erp_hold_windows,
        hold_timezone=s.erp_hold_timezone,
        breaker_failures=s.erp_breaker_failures,
        breaker_cool_down=s.erp_breaker_cool_down,
        auth_cool_down=s.erp_auth_cool_down,
        retry_initial_backoff=s.erp_retry_initial_backoff,
        retry_max_backoff=s.erp_retry_max_backoff,
        lease=s.erp_lease,
        poll_interval=s.erp_poll_interval,
        gl_posting=s.erp_gl_posting,
        summary_period=s.erp_summary_period,
        summary_grace=s.erp_summary_grace,
        summary_interval=s.erp_summary_interval,
    )
    return {DEFAULT_DESTINATION: one}


def routing_table(settings: Settings) -> RoutingTable:
    """The base routes (``erp_routes``; with one ERP and none given: every domain it offers
    to it). Raises ``RoutingError`` naming the route that does not fit the destinations."""
    destinations = erp_destinations(settings)
    offers = {name: frozenset(d.capabilities) for name, d in destinations.items()}
    if not settings.erp_routes:
        [(name, caps)] = offers.items()
        return single(name, caps)
    base: dict[tuple[ErpDomain, str], Route] = {}
    for domain, route in settings.erp_routes.items():
        base[(domain, ALL_FACILITIES)] = Route(route.record, tuple(route.shadow))
        for facility, own in route.facilities.items():
            base[(domain, facility)] = Route(own.record, tuple(own.shadow))
    return RoutingTable(offers, base)


def erp_router(settings: Settings) -> ErpRouter:
    modes = {name: GlPostingMode(d.gl_posting) for name, d in erp_destinations(settings).items()}
    return ErpRouter(routing_table(settings), modes)


def _retry(settings: Settings, d: ErpDestinationSettings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.retry_max_attempts,
        initial_backoff=d.retry_initial_backoff,
        max_backoff=d.retry_max_backoff,
    )


def erp_posting_policy(settings: Settings, erp_name: str = DEFAULT_DESTINATION) -> ErpPostingPolicy:
    d = erp_destinations(settings)[erp_name]
    return ErpPostingPolicy(
        erp_name=erp_name,
        batch_size=d.batch_size,
        rate_limit=d.rate_limit,
        burst=d.burst,
        failure_threshold=d.breaker_failures,
        cool_down=d.breaker_cool_down,
        auth_cool_down=d.auth_cool_down,
        lease=d.lease,
        windows=PostingWindows.parse(d.hold_windows, d.hold_timezone),
        retry=_retry(settings, d),
    )


def gl_posting_policy(settings: Settings, erp_name: str = DEFAULT_DESTINATION) -> GlPostingPolicy:
    d = erp_destinations(settings)[erp_name]
    return GlPostingPolicy(
        mode=GlPostingMode(d.gl_posting),
        destination=erp_name,
        period=SummaryPeriod(d.summary_period),
        grace=d.summary_grace,
        batch_size=d.batch_size,
        lease=d.lease,
        interval=d.summary_interval,
        windows=PostingWindows.parse(d.hold_windows, d.hold_timezone),
        retry=_retry(settings, d),
    )


def procurement_policy(settings: Settings, *, auto_receive: bool) -> ProcurementPolicy:
    s = settings
    return ProcurementPolicy(
        ack_timeout=s.ack_timeout,
        shipment_timeout=s.shipment_timeout,
        receipt_grace=s.receipt_grace,
        poll=s.task_poll_interval,
        auto_receive=auto_receive,
        tolerances=Tolerances(
            price_percent=s.match_price_percent,
            price_absolute=s.match_price_absolute,
            quantity_percent=s.match_quantity_percent,
            total_absolute=s.match_total_absolute,
        ),
    )


def planner_policy(settings: Settings) -> PlannerPolicy:
    return PlannerPolicy(window=timedelta(seconds=settings.consolidation_window))
