"""Retries of a call in this process, declared once (tenacity underneath).

``Backoff`` is the policy: ``initial`` seconds after the first failure, ``factor`` times longer
after each further one, at most ``maximum``. ``retrying(...)`` applies it to a call that fails
with a ``transient`` error: the call is tried again after the backoff, for as long as it
fails that way and ``until`` (the process stopping) is not set; any other error, or a
transient one once ``until`` is set, is raised to the caller as it was. The wait is
``until.wait``: a stopping process does not sit out a long backoff.

    receipt = retrying("send", transient=is_transient, backoff=Backoff(0.5, 60), until=stop)(
        lambda: channel.send(document)
    )

Durable retries have their own declared policies and do not use this: a bus consumer's
``bus.RetryPolicy`` (dead-letter after ``max_attempts``) and the ERP posting outbox (a retry is
a row with a due time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential,
)

from medbridge.observability.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Backoff:
    initial: float
    """Seconds to wait after the first failure."""
    maximum: float
    """Never wait longer than this."""
    factor: float = 2.0

    def strategy(self) -> wait_exponential:
        return wait_exponential(multiplier=self.initial, max=self.maximum, exp_base=self.factor)


def retrying(
    what: str,
    *,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    until: threading.Event,
    slower: Callable[[BaseException], float] | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> Retrying:
    """A retrier of ``what``: call it with the function to run (``retrying(...)(call)``
    returns what ``call()`` returns), retried as the module docstring says.

    ``slower(error)`` scales the backoff for some errors (a refused login waits longer);
    ``on_retry(error, delay)`` reports a failure before the wait (by default a warning
    ``retry`` naming ``what``)."""

    exponential = backoff.strategy()

    def wait(state: RetryCallState) -> float:
        delay = exponential(state)
        error = _error(state)
        if slower is not None and error is not None:
            delay = min(backoff.maximum, delay * slower(error))
        return delay

    def report(state: RetryCallState) -> None:
        error, delay = _error(state), state.upcoming_sleep
        if error is None:
            return
        if on_retry is not None:
            on_retry(error, delay)
        else:
            log.warning("retry", what=what, error=str(error), retry_in=round(delay, 3))

    def pause(seconds: float) -> None:
        until.wait(seconds)

    return Retrying(
        retry=retry_if_exception(transient),
        wait=wait,
        stop=lambda _state: until.is_set(),
        sleep=pause,
        before_sleep=report,
        reraise=True,
    )


def _error(state: RetryCallState) -> BaseException | None:
    return None if state.outcome is None else state.outcome.exception()
