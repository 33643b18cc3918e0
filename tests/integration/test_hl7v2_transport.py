"""MLLP transport: many concurrent connections each getting its own ACKs (TLS:
test_transport_security.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from hl7_support import ack_code, map_hl7_sources, rds, running_listener
from medbridge.app import MedBridge
from medbridge.connectors.hl7v2 import MllpClient
from medbridge.store.tables import bus_events

pytestmark = pytest.mark.db


def test_many_concurrent_connections_each_get_their_own_acks(medbridge: MedBridge) -> None:
    map_hl7_sources(medbridge)

    def cabinet(number: int) -> list[tuple[str, str]]:
        with MllpClient("127.0.0.1", port) as client:
            return [ack_code(client.send(rds(f"C{number}-{n}"))) for n in range(10)]

    with running_listener(medbridge) as listener:
        port = listener.port
        with ThreadPoolExecutor(max_workers=24) as pool:
            results = list(pool.map(cabinet, range(24)))
    for number, acks in enumerate(results):
        assert acks == [("AA", f"C{number}-{n}") for n in range(10)]
    with medbridge.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(bus_events)).scalar_one() == 240
