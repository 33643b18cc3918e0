"""MLLP transport: TLS, and many concurrent connections each getting its own ACKs."""

from __future__ import annotations

import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hl7_support import map_hl7_sources, running_listener
from medbridge.app import MedBridge
from medbridge.connectors.hl7v2 import MllpClient, parse
from medbridge.connectors.hl7v2.errors import FramingError
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


def test_mllp_over_tls(medbridge: MedBridge, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    map_hl7_sources(medbridge)
    context = ssl.create_default_context(cafile=str(cert))
    with running_listener(medbridge, tls_cert=cert, tls_key=key) as listener:
        with MllpClient("127.0.0.1", listener.port, tls=context) as client:
            assert ack_code(client.send(rds("TLS-1"))) == ("AA", "TLS-1")
        with (
            pytest.raises((ConnectionError, OSError, FramingError)),
            MllpClient("127.0.0.1", listener.port, timeout=5) as plain,
        ):
            plain.send(rds("PLAIN-1"))  # a cleartext client gets no ACK from a TLS listener
