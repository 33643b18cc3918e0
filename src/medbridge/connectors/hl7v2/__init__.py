"""HL7 v2 over MLLP: pharmacy dispenses (RDS), charged supplies and drugs (DFT), pharmacy
orders (RDE). ``parse``/``render`` in codec, mapping to canonical in mapping, the MLLP
receiver in inbound, the MLLP listener in mllp, the MLLP client in outbound, TLS
contexts in tls."""

from medbridge.connectors.hl7v2.codec import parse, render
from medbridge.connectors.hl7v2.config import Hl7Config, MllpTls, UnmappedAck
from medbridge.connectors.hl7v2.inbound import Hl7Receiver
from medbridge.connectors.hl7v2.mllp import MllpListener
from medbridge.connectors.hl7v2.outbound import MllpClient
from medbridge.connectors.hl7v2.tls import client_context

__all__ = [
    "Hl7Config",
    "Hl7Receiver",
    "MllpClient",
    "MllpListener",
    "MllpTls",
    "UnmappedAck",
    "client_context",
    "parse",
    "render",
]
