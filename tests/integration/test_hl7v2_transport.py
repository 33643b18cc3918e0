"""MLLP transport: many concurrent connections each getting its own ACKs (TLS:
test_transport_security.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from hl7_support import map_hl7_sources, running_listener
from medbridge.app import MedBridge
from medbridge.connectors.hl7v2 import MllpClient, parse
from medbridge.store.tables import bus_events

pytestmark = pytest.mark.db


def rds(control_id: str) -> str:
    return (
        f"MSH|^~\\&|PYXIS|H1|MEDBRIDGE|NET|20261121083000+0000||RDS^O13^RDS_O13|{control_id}|P|2.5.1\r"
        "PV1|1|I|ICU^12^A\r"
        "RXD|1|0069-2587-10^Vancomycin^NDC|20261121082500+0000|1|VIAL|||||||||||||||||||||||||ICU-CAB-1\r"
    )


def ack_code(ack: str) -> tuple[str, str]:
    msa = parse(ack).first("MSA")
    assert msa is not None
    return msa.get(1), msa.get(2)


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
