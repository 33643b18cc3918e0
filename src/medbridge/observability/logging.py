"""structlog set-up: JSON lines to stderr, with the correlation id bound per request or per
message through contextvars, and the trace and span ids of the current span (when tracing is
on and a span is current: ``add_trace_ids``).

PHI rule: connectors never log patient identity; only ids, codes and pseudonyms are logged.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import trace
from structlog.contextvars import bound_contextvars
from structlog.typing import EventDict, WrappedLogger


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        # not cached: the logger follows sys.stderr when it is swapped (test runners, CLIs)
        cache_logger_on_first_use=False,
    )


def add_trace_ids(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """``trace_id`` and ``span_id`` (W3C hex) of the current span, if one is valid: a log line
    is found from its trace in the tracing backend, and the other way round."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


@contextmanager
def correlation(correlation_id: str | None, **more: Any) -> Iterator[None]:
    """Bind the correlation id (and more) to every log line written inside the block."""
    with bound_contextvars(correlation_id=correlation_id, **more):
        yield


class BoundedLog:
    """At most ``per_interval`` lines per ``interval`` seconds for one kind of event, the rest
    counted and reported with the next line that gets through (``suppressed=N``): hostile or
    broken input must not turn into a log flood (measured on main: 13 MB of junk over MLLP
    wrote 49,000 warning lines and stalled every ACK)."""

    def __init__(
        self,
        logger: Any,
        per_interval: int = 10,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log, self.per_interval, self.interval, self._clock = (
            logger,
            per_interval,
            interval,
            clock,
        )
        self._lock = threading.Lock()
        self._window = float("-inf")
        self._used = 0
        self._suppressed = 0

    def warning(self, event: str, **fields: Any) -> bool:
        """Log unless over the budget; True when logged."""
        with self._lock:
            now = self._clock()
            if now - self._window >= self.interval:
                self._window, self._used = now, 0
            if self._used >= self.per_interval:
                self._suppressed += 1
                return False
            self._used += 1
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            fields["suppressed"] = suppressed
        self._log.warning(event, **fields)
        return True
