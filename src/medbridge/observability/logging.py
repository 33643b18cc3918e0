"""structlog set-up: JSON lines to stderr, with the correlation id bound per request or per
message through contextvars.

PHI rule: connectors never log patient identity; only ids, codes and pseudonyms are logged.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
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


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


@contextmanager
def correlation(correlation_id: str | None, **more: Any) -> Iterator[None]:
    """Bind the correlation id (and more) to every log line written inside the block."""
    with bound_contextvars(correlation_id=correlation_id, **more):
        yield
