"""Delivery mechanics of outbound calls to systems that throttle or fail (DESIGN.md, "Delivery
semantics"): a token-bucket ``RateLimiter`` and a ``CircuitBreaker``.

They live in ``bus`` because they are delivery policy, like ``RetryPolicy``: no I/O, no
metrics, nothing specific to an ERP; every outbound flow (ERP postings today, supplier portals
tomorrow) and connector can use them, and ``observability`` is wired by the caller through the
breaker's ``on_change`` callback. Time is injected (``clock``, ``sleep``) so tests are
deterministic.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum


class RateLimiter:
    """Token bucket: ``rate`` calls per second, at most ``burst`` at once.

    ``acquire()`` blocks (through ``sleep``) until a token is available. With ``burst`` 1 (the
    default) calls are spaced at least ``1/rate`` s apart, so no half-open window of one second
    holds more than ``ceil(rate)`` calls; a larger ``burst`` allows ``burst - 1`` more.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (calls per second)")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def acquire(self) -> None:
        with self._lock:  # callers queue up in turn: the limit holds across threads
            while True:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                self._sleep((1 - self._tokens) / self.rate)


class BreakerState(IntEnum):
    """The values are what the metrics export."""

    CLOSED = 0  # calls flow
    OPEN = 1  # calls are refused until the cool-down is over
    HALF_OPEN = 2  # one trial call decides: success closes, failure opens again


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures, half-opens after ``cool_down``
    seconds (one trial call at a time), closes on a success.

    The caller asks ``allow()`` before each call and reports ``success()`` or ``failure()``;
    ``trip(cool_down)`` opens it at once (e.g. credentials refused: no point in N tries).
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cool_down: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold, self.cool_down = failure_threshold, cool_down
        self._clock, self._on_change = clock, on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._open_for = cool_down
        self._trial_in_flight = False
        self._lock = threading.Lock()
        self.history: deque[BreakerState] = deque([self._state], maxlen=100)  # for diagnosis
        if on_change is not None:
            on_change(self._state)

    @property
    def state(self) -> BreakerState:
        return self._state

    def _move(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            self.history.append(state)
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        with self._lock:
            if self._state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self._open_for:
                    return False
                self._move(BreakerState.HALF_OPEN)
                self._trial_in_flight = False
            if self._state is BreakerState.HALF_OPEN:
                if self._trial_in_flight:
                    return False
                self._trial_in_flight = True
            return True

    def retry_in(self) -> float:
        """Seconds until an open breaker half-opens (0 when it is not open)."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._open_for - (self._clock() - self._opened_at))

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._trial_in_flight = False
            self._move(BreakerState.CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._open(self.cool_down)

    def trip(self, cool_down: float | None = None) -> None:
        with self._lock:
            self._trial_in_flight = False
            self._open(self.cool_down if cool_down is None else cool_down)

    def _open(self, cool_down: float) -> None:
        self._opened_at, self._open_for = self._clock(), cool_down
        self._move(BreakerState.OPEN)
