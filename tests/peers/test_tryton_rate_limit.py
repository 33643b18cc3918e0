"""The rate limit holds for every kind of ERP call against a REAL Tryton (issue 17): a
procure-to-pay cycle with its journal postings, through a destination limited to 5 calls/s
(burst 1), seen by a counting proxy in front of the Tryton adapter (see
``erp_rate_support``)."""

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
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.settings import Settings
from peers.tryton import TrytonPeer
from procurement_support import cycle_settings

pytestmark = [pytest.mark.peer]


def test_every_kind_of_call_to_tryton_keeps_the_destination_rate_limit(
    engine: object, settings: Settings, tmp_path: Path, tryton: TrytonPeer
) -> None:
    config = tryton.config()
    erp = TrytonErp(config)
    counting = CountingErp(erp)
    try:
        rate_limited_cycle(
            cycle_settings(
                settings,
                tmp_path,
                erp_url=config.url,
                erp_database=config.database,
                erp_user=config.user,
                erp_password=config.password,
                receipt_grace=60.0,  # the goods go through the rate-limited outbox too
            ),
            counting.port(),
            cycle_done,
        )
        purchases = erp.client.search_read("purchase.purchase", [], ["state"])
    finally:
        erp.close()

    methods = Counter(c.method for c in counting.calls)
    assert set(methods) >= KINDS, methods
    n, length, allowed = worst_window([c.at for c in counting.calls], RATE, BURST)
    assert n <= allowed, f"{n} calls in {length:.3f} s (the limit allows {allowed:.2f})"
    assert len(purchases) == 1, purchases  # the one order, its refused line cancelled
