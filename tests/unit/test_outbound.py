"""Delivery mechanics of outbound calls: rate limiter, circuit breaker, hold windows, and the
pure ERP reconciliation. Time is injected: no test here sleeps."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from medbridge.bus.outbound import BreakerState, CircuitBreaker, RateLimiter
from medbridge.canonical.erp import ErpLedgerLine
from medbridge.domain.reconciliation import BookLine, DifferenceKind, reconcile
from medbridge.flows.erp_posting import HoldWindow, PostingWindows


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The most calls in any half-open window ``[t, t + width)`` (t at a call)."""
    return max((sum(1 for u in times if t <= u < t + width) for t in times), default=0)


@pytest.mark.parametrize(("rate", "burst"), [(4, 1), (8, 1), (4, 3)])
def test_rate_limiter_never_exceeds_rate_plus_burst(rate: int, burst: int) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, burst, clock=clock.now, sleep=clock.sleep)
    times = []
    for _ in range(50):
        limiter.acquire()
        times.append(clock.now())
    assert max_in_window(times) == rate + burst - 1


def test_rate_limiter_refills_while_idle_but_not_beyond_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 2, clock=clock.now, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()
    clock.t += 100  # a long idle period banks at most `burst` tokens
    start = clock.now()
    for _ in range(4):
        limiter.acquire()
    assert clock.now() - start == pytest.approx(1.0)


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = FakeClock()
    seen: list[BreakerState] = []
    breaker = CircuitBreaker(3, 10.0, clock=clock.now, on_change=seen.append)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(10.0)
    clock.t += 10
    assert breaker.allow()  # the trial call
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # one trial at a time
    breaker.failure()  # the trial failed: open again, a new cool-down
    assert breaker.state is BreakerState.OPEN
    clock.t += 10
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED
    assert seen == [
        BreakerState.CLOSED,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_breaker_success_resets_the_failure_count_and_trip_opens_at_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 1.0, clock=clock.now)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.trip(60.0)
    assert breaker.state is BreakerState.OPEN
    clock.t += 30
    assert not breaker.allow()
    clock.t += 30
    assert breaker.allow()


def test_hold_windows_cross_midnight_in_their_timezone() -> None:
    window = HoldWindow.parse("23:30-00:30")
    assert window.holds(time(23, 45))
    assert window.holds(time(0, 10))
    assert not window.holds(time(0, 30))
    assert not window.holds(time(12, 0))
    windows = PostingWindows.parse(["23:30-00:30", "12:00-12:15"], "Europe/Berlin")
    assert windows.held(datetime(2026, 11, 20, 22, 45, tzinfo=UTC))  # 23:45 in Berlin
    assert not windows.held(datetime(2026, 11, 20, 23, 45, tzinfo=UTC))  # 00:45
    assert windows.held(datetime(2026, 11, 20, 11, 5, tzinfo=UTC))
    with pytest.raises(ValueError, match="HH:MM"):
        HoldWindow.parse("nightly")


# --- reconciliation (pure) -----------------------------------------------------------------

DAY = date(2026, 11, 20)


def book(entry_id: str, amount: str, cc: str | None = "CC1") -> list[BookLine]:
    a = Decimal(amount)
    return [
        BookLine(entry_id, "5100", cc, a, Decimal(0)),
        BookLine(entry_id, "1300", None, Decimal(0), a),
    ]


def move(reference: str, move_id: str, amount: str, cc: str | None = "CC1") -> list[ErpLedgerLine]:
    a = Decimal(amount)
    return [
        ErpLedgerLine(reference, move_id, DAY, "5100", cc, a, Decimal(0)),
        ErpLedgerLine(reference, move_id, DAY, "1300", None, Decimal(0), a),
    ]


def test_reconcile_matching_sides_have_no_difference() -> None:
    report = reconcile(
        book("JE-1", "10") + book("JE-2", "5"), move("JE-1", "m1", "10") + move("JE-2", "m2", "5")
    )
    assert report.balanced
    assert (report.entries, report.moves) == (2, 2)
    assert {(t.account, t.cost_center, t.medbridge, t.erp) for t in report.totals} == {
        ("5100", "CC1", Decimal(15), Decimal(15)),
        ("1300", None, Decimal(-15), Decimal(-15)),
    }


def test_reconcile_types_every_difference() -> None:
    report = reconcile(
        book("JE-1", "10") + book("JE-2", "5") + book("JE-3", "7"),
        move("JE-1", "m1", "10")
        + move("JE-1", "m9", "10")  # posted twice
        + move("JE-2", "m2", "5", cc="CC2")  # booked on another cost center
        + move("HAND-1", "m5", "3"),  # nobody at MedBridge booked this
    )
    kinds = [(d.kind, d.reference, d.move_id) for d in report.differences]
    assert kinds == [
        (DifferenceKind.DUPLICATE_IN_ERP, "JE-1", "m9"),
        (DifferenceKind.AMOUNT_DIFFERS, "JE-2", "m2"),
        (DifferenceKind.AMOUNT_DIFFERS, "JE-2", "m2"),
        (DifferenceKind.MISSING_IN_ERP, "JE-3", None),
        (DifferenceKind.UNEXPECTED_IN_ERP, "HAND-1", "m5"),
    ]
    differs = {(d.cost_center, d.medbridge_amount, d.erp_amount) for d in report.differences[1:3]}
    assert differs == {("CC1", Decimal(5), Decimal(0)), ("CC2", Decimal(0), Decimal(5))}
    assert report.differences[3].medbridge_amount == Decimal(7)
