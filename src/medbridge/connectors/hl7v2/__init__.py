"""HL7 v2 over MLLP: pharmacy dispenses (RDS), charged supplies and drugs (DFT), pharmacy
orders (RDE). ``parse``/``render`` in codec, mapping to canonical in mapping, the MLLP
receiver in inbound, the MLLP listener in mllp, the MLLP client in outbound."""

from medbridge.connectors.hl7v2.codec import parse, render
from medbridge.connectors.hl7v2.config import Hl7Config, UnmappedAck
from medbridge.connectors.hl7v2.inbound import Hl7Receiver
from medbridge.connectors.hl7v2.mllp import MllpListener
from medbridge.connectors.hl7v2.outbound import MllpClient

__all__ = [
    "Hl7Config",
    "Hl7Receiver",
    "MllpClient",
    "MllpListener",
    "UnmappedAck",
    "parse",
    "render",
]
