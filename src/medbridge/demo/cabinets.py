"""The demo's automated dispensing cabinets: they send HL7 RDS^O13 over MLLP to MedBridge's
own listener, dispensing lots they hold, as a real cabinet would. Each message carries a
synthetic PID that the connector drops (nothing of it reaches the store or the logs)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

from sqlalchemy import Engine

from medbridge.canonical.masterdata import CodeSystem, ItemCode
from medbridge.connectors.hl7v2.outbound import MllpClient
from medbridge.demo.network import CABINETS, ITEMS
from medbridge.observability.logging import get_logger
from medbridge.store import ledger as ledger_store

log = get_logger(__name__)


UNKNOWN_NDC_SHARE = 0.02
"""How often a cabinet dispenses a drug missing from the item master (-> exception queue)."""

UNKNOWN_NDC = "12345-6789-01"
"""The code of that drug: vancomycin 1 g vials of a second labeler, stocked in the cabinet as
VANCO-1G (a vial, of a VANCO-1G lot) but not yet cross-referenced in the item master. Mapping
it to VANCO-1G (the README's tour) is the right fix, and the parked message then applies."""
UNKNOWN_SOURCED_AS = "VANCO-1G"


def _coded(codes: tuple[ItemCode, ...], name: str) -> str:
    """The item as a cabinet codes it (an NDC, else RxNorm) in an HL7 CWE."""
    for code in codes:
        if code.system is CodeSystem.NDC:
            return f"{code.code}^{name}^NDC"
    for code in codes:
        if code.system is CodeSystem.LOCAL and code.issuer == "RXNORM":
            return f"{code.code}^{name}^RXNORM"
    raise ValueError(f"{name}: no code a cabinet would send")


class DemoCabinets:
    def __init__(
        self, engine: Engine, host: str, port: int, rate: float, seed: int | None = None
    ) -> None:
        self.engine, self.host, self.port, self.rate = engine, host, port, rate
        self.rng = random.Random(seed)  # noqa: S311 - simulated traffic, not security
        self._n = 0

    def message(self, source: str) -> str | None:
        """An RDS^O13 for a lot this cabinet holds, or None when it holds nothing."""
        cabinet, store, wards = CABINETS[source]
        application, facility = source.removeprefix("hl7:").split("@")
        with self.engine.connect() as conn:
            lots = [
                r for r in ledger_store.stock(conn, location=store) if r.lot and r.quantity >= 5
            ]
        drugs = {i.code: i for i in ITEMS if i.category.value == "drug"}
        lots = [r for r in lots if r.item in drugs]
        if not lots:
            return None
        lot = self.rng.choice(lots)
        item = drugs[lot.item]
        code = _coded(item.codes, item.name)
        second_source = [r for r in lots if r.item == UNKNOWN_SOURCED_AS]
        if second_source and self.rng.random() < UNKNOWN_NDC_SHARE:  # a code not mapped yet
            lot = self.rng.choice(second_source)
            item = drugs[lot.item]
            code = f"{UNKNOWN_NDC}^Vancomycin 1 g vial (second labeler)^NDC"
        self._n += 1
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
        control = f"{cabinet}-{datetime.now(UTC):%Y%m%d%H%M%S%f}-{self._n}"
        ward = self.rng.choice(list(wards))
        expiry = lot.expiry.strftime("%Y%m%d") if lot.expiry else ""
        quantity = self.rng.choice([1, 1, 2])
        bed, visit = self.rng.randint(1, 30), self.rng.randint(10**6, 10**7)
        segments = [
            f"MSH|^~\\&|{application}|{facility}|MEDBRIDGE|NET|{now}||RDS^O13^RDS_O13|{control}|P|2.5.1",
            "PID|1||DEMO-MRN-0001^^^DEMO^MR||Demo^Patient||19700101|U",
            f"PV1|1|I|{ward}^{bed}^A||||||||||||||||V-{visit}",
            f"ORC|RE|{control}",
            f"RXD|1|{code}|{now}|{quantity}|{item.base_unit}|||||||||||||{lot.lot}|{expiry}"
            f"|||||||||||{cabinet}",
        ]
        return "\r".join(segments) + "\r"

    def run(self, stop: threading.Event) -> None:
        log.info("demo.cabinets_started", rate=self.rate, port=self.port)
        while not stop.wait(self.rng.expovariate(self.rate)):
            source = self.rng.choice(list(CABINETS))
            try:
                message = self.message(source)
                if message is None:
                    continue
                with MllpClient(self.host, self.port, timeout=10) as client:
                    ack = client.send(message)
                code = ack.split("MSA|", 1)[1][:2] if "MSA|" in ack else "??"
                log.info("demo.cabinet_dispensed", cabinet=source, ack=code)
            except OSError as error:
                log.warning("demo.cabinet_unreachable", error=str(error))
