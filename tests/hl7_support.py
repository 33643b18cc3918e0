"""Test support: a real MLLP listener on a free port, in a background event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from medbridge.app import MedBridge
from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.connectors.hl7v2 import Hl7Config, MllpClient, MllpListener
from medbridge.connectors.hl7v2.codec import parse
from medbridge.masterdata.repository import CrossReferences

SAMPLE_SOURCE = "hl7:IMMAPP@GHHSFacility"
CABINET_SOURCE = "hl7:PYXIS@H1"


@contextmanager
def running_listener(mb: MedBridge, **overrides: object) -> Iterator[MllpListener]:
    config: Hl7Config = mb.hl7_config(port=0, **overrides)
    listener = mb.mllp_listener(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="mllp-test", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(listener.start(), loop).result(10)
    try:
        yield listener
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def map_hl7_sources(mb: MedBridge) -> None:
    """The cross-references a hospital would configure for the sample senders."""
    with mb.engine.begin() as conn:
        for source, code, location in (
            (SAMPLE_SOURCE, "UNITY", "H1-PHARM"),
            (SAMPLE_SOURCE, "GHHSFacility", "H1-PHARM"),
            (SAMPLE_SOURCE, "RAD-1", "H1-OR"),
            (CABINET_SOURCE, "H1", "H1-ICU"),
            (CABINET_SOURCE, "ICU-CAB-1", "H1-ICU"),
        ):
            CrossReferences.map_location(conn, source, code, location)
        CrossReferences.map_cost_center(conn, SAMPLE_SOURCE, "HUH AE OMU", "H1-CC-ICU")
        CrossReferences.map_cost_center(conn, CABINET_SOURCE, "ICU", "H1-CC-ICU")
        CrossReferences.map_unit(conn, CABINET_SOURCE, "VL", "VIAL")
        mb.masterdata.link_code(
            conn,
            "DRAPE-SM",
            ItemCode(system=CodeSystem.LOCAL, code="CM-DRAPE", issuer=CABINET_SOURCE),
        )


def rds(control_id: str) -> str:
    """A one-vial RDS^O13 of the H1 ICU cabinet (the sample senders' mapped codes)."""
    return (
        f"MSH|^~\\&|PYXIS|H1|MEDBRIDGE|NET|20261121083000+0000||RDS^O13^RDS_O13|{control_id}|P|2.5.1\r"
        "PV1|1|I|ICU^12^A\r"
        "RXD|1|0069-2587-10^Vancomycin^NDC|20261121082500+0000|1|VIAL|||||||||||||||||||||||||ICU-CAB-1\r"
    )


def rds_with_patient(control_id: str, ndc: str = "0069-2587-10") -> str:
    """A one-vial RDS^O13 of the H1 ICU cabinet with a patient (PID) to mask."""
    return (
        f"MSH|^~\\&|PYXIS|H1|MEDBRIDGE|NET|20261121083000+0000||RDS^O13^RDS_O13|{control_id}"
        "|P|2.5.1\r"
        "PID|1||MRN-4711^^^H1^MR||DOE^JANE^Q||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701"
        "||555-0100\r"
        "PV1|1|I|ICU^12^A\r"
        f"RXD|1|{ndc}^Vancomycin^NDC|20261121082500+0000|1|VIAL"
        "|||||||||||||||||||||||||ICU-CAB-1\r"
    )


def send(mb: MedBridge, *messages_: str) -> list[bytes]:
    """``messages_`` over MLLP to a listener of ``mb``; their ACKs, once every row is written."""
    acks = []
    with running_listener(mb) as listener, MllpClient("127.0.0.1", listener.port) as client:
        for m in messages_:
            acks.append(client.send(m.encode()).encode())
    mb.group_commit.flush()  # the refusals' rows, which nobody waits for
    return acks


def ack_code(ack: str) -> tuple[str, str]:
    """MSA-1 and MSA-2 of an acknowledgement."""
    msa = parse(ack).first("MSA")
    assert msa is not None
    return msa.get(1), msa.get(2)
