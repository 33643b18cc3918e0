"""The rate limit holds for every kind of ERP call (issue 17): a procure-to-pay cycle with its
journal postings, through a destination limited to 5 calls/s (burst 1), seen from the ERP's
side by a counting proxy (see ``erp_rate_support``). The ERP is the in-memory fake, which
answers at once: without the limiter, the calls of a round would arrive together."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from erp_rate_support import (
    BURST,
    KINDS,
    RATE,
    CountingErp,
    cycle_done,
    rate_limited_cycle,
    worst_window,
)
from medbridge.settings import Settings
from procurement_support import cycle_settings, fake_erp

pytestmark = pytest.mark.db


def test_every_kind_of_erp_call_keeps_the_destination_rate_limit(
    engine: object, settings: Settings, tmp_path: Path
) -> None:
    fake = fake_erp()
    counting = CountingErp(fake)
    rate_limited_cycle(cycle_settings(settings, tmp_path), counting.port(), cycle_done)

    methods = Counter(c.method for c in counting.calls)
    assert set(methods) >= KINDS, methods
    # nothing reached the ERP around the proxy: the fake saw exactly the proxy's calls
    assert len(fake.calls) == len(counting.calls)
    n, length, allowed = worst_window([c.at for c in counting.calls], RATE, BURST)
    assert n <= allowed, f"{n} calls in {length:.3f} s (the limit allows {allowed:.2f})"


def test_the_window_check_sees_calls_that_came_too_close() -> None:
    """The check itself: two calls 50 ms apart break 5/s with burst 1; 200 ms apart do not."""
    assert worst_window([0.0, 0.05], RATE, BURST)[0] > worst_window([0.0, 0.05], RATE, BURST)[2]
    n, _, allowed = worst_window([0.0, 0.2, 0.4, 0.6], RATE, BURST)
    assert n <= allowed
