"""Prometheus metrics: per-stage counters, consumer lag and dead-letter size.

Lag and dead letters are read from the bus when ``/metrics`` is scraped (a custom collector),
so they are right even in a process that only serves the API.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

STAGE = Counter(
    "medbridge_stage_messages",
    "Messages through each pipeline stage, by outcome",
    ["stage", "outcome"],
)


@functools.cache
def stage(stage: str, outcome: str) -> Any:
    """The ``STAGE`` counter's child for (stage, outcome), looked up once: ``labels()`` per
    message was a visible share of the ingest path."""
    return STAGE.labels(stage=stage, outcome=outcome)


HTTP_REQUESTS = Counter(
    "medbridge_http_requests", "HTTP requests by route and status", ["route", "status"]
)
APPEND_SECONDS = Histogram("medbridge_bus_append_seconds", "Time to durably append a batch")
GROUP_COMMIT_EVENTS = Histogram(
    "medbridge_group_commit_events",
    "Events committed together by the group-commit writer (one transaction)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)


class BusCollector(Collector):
    """Reads consumer lag and dead-letter counts from the bus at scrape time."""

    def __init__(
        self,
        groups: Sequence[str],
        lag: Callable[[str], int],
        dead_letters: Callable[[str], int],
    ) -> None:
        self.groups, self._lag, self._dead = groups, lag, dead_letters

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "medbridge_consumer_lag",
            "Events not yet processed by a consumer group",
            labels=["group"],
        )
        dead = GaugeMetricFamily(
            "medbridge_dead_letters", "Dead letters waiting for a replay", labels=["group"]
        )
        for group in self.groups:
            lag.add_metric([group], self._lag(group))
            dead.add_metric([group], self._dead(group))
        yield lag
        yield dead


_registered: list[Collector] = []


def register_bus_collector(collector: BusCollector) -> None:
    """Register (replacing an earlier one: one app per process, tests build several)."""
    while _registered:
        REGISTRY.unregister(_registered.pop())
    REGISTRY.register(collector)
    _registered.append(collector)
