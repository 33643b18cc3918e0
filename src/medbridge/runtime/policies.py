"""The declared policies the settings configure: retries of the consumers, the ERP posting
queue's rate limit, breaker and hold windows, and the procurement workflows' timeouts and
matching tolerances."""

from __future__ import annotations

from datetime import timedelta

from medbridge.bus.port import RetryPolicy
from medbridge.domain.gl_summary import GlPostingMode, SummaryPeriod
from medbridge.domain.matching import Tolerances
from medbridge.flows.erp_posting import ErpPostingPolicy, PostingWindows
from medbridge.flows.gl_summary import GlPostingPolicy
from medbridge.flows.ledger_posting import INFRASTRUCTURE_ERRORS, PERMANENT_ERRORS
from medbridge.flows.procurement import ProcurementPolicy
from medbridge.flows.replenishment import PlannerPolicy
from medbridge.settings import Settings


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


def erp_posting_policy(settings: Settings, erp_name: str = "tryton") -> ErpPostingPolicy:
    s = settings
    return ErpPostingPolicy(
        erp_name=erp_name,
        batch_size=s.erp_batch_size,
        rate_limit=s.erp_rate_limit,
        burst=s.erp_burst,
        failure_threshold=s.erp_breaker_failures,
        cool_down=s.erp_breaker_cool_down,
        auth_cool_down=s.erp_auth_cool_down,
        lease=s.erp_lease,
        windows=PostingWindows.parse(s.erp_hold_windows, s.erp_hold_timezone),
        retry=RetryPolicy(
            max_attempts=s.retry_max_attempts,
            initial_backoff=s.erp_retry_initial_backoff,
            max_backoff=s.erp_retry_max_backoff,
        ),
    )


def gl_posting_policy(settings: Settings) -> GlPostingPolicy:
    s = settings
    return GlPostingPolicy(
        mode=GlPostingMode(s.erp_gl_posting),
        period=SummaryPeriod(s.erp_summary_period),
        grace=s.erp_summary_grace,
        batch_size=s.erp_batch_size,
        lease=s.erp_lease,
        interval=s.erp_summary_interval,
        windows=PostingWindows.parse(s.erp_hold_windows, s.erp_hold_timezone),
        retry=RetryPolicy(
            max_attempts=s.retry_max_attempts,
            initial_backoff=s.erp_retry_initial_backoff,
            max_backoff=s.erp_retry_max_backoff,
        ),
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
