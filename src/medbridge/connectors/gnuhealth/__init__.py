"""GNU Health connector: dispenses recorded in a GNU Health (trytond 7.0) hospital system.

GNU Health is GPL; MedBridge talks to it over JSON-RPC only (``client``), never by import.
``inbound.Poller`` reads done ``stock.move`` records whose origin is a prescription and hands
them to the inbound intake; ``mapping.parse`` turns one record into an ``InboundMovement``
without ever reading the patient. There is no outbound side: MedBridge writes nothing to
GNU Health.
"""

from medbridge.connectors.gnuhealth.client import GnuHealthClient
from medbridge.connectors.gnuhealth.config import NAME, GnuHealthConfig
from medbridge.connectors.gnuhealth.errors import (
    GnuHealthAuthError,
    GnuHealthError,
    GnuHealthProtocolError,
    GnuHealthServerError,
    GnuHealthUnavailable,
)
from medbridge.connectors.gnuhealth.inbound import Cursor, CursorStore, Intake, Poller, PollResult
from medbridge.connectors.gnuhealth.mapping import encounter_ref, idempotency_key, parse

__all__ = [
    "NAME",
    "Cursor",
    "CursorStore",
    "GnuHealthAuthError",
    "GnuHealthClient",
    "GnuHealthConfig",
    "GnuHealthError",
    "GnuHealthProtocolError",
    "GnuHealthServerError",
    "GnuHealthUnavailable",
    "Intake",
    "PollResult",
    "Poller",
    "encounter_ref",
    "idempotency_key",
    "parse",
]
