"""GS1 receiving scans (biip): ``parse`` (codec: scan -> ``Gs1Scan``: GTIN, lot, expiry,
serial, quantity) and ``to_receipt_line`` (mapping: -> a receipt ``InboundMovement`` with the
GTIN as the item). Refusals are ``Gs1Error`` subclasses with a stable code and a reason.
"""

from __future__ import annotations

from medbridge.connectors.gs1.codec import Gs1Scan, parse
from medbridge.connectors.gs1.config import NAME, Gs1Config, MissingSeparatorPolicy
from medbridge.connectors.gs1.errors import Gs1Error
from medbridge.connectors.gs1.mapping import to_receipt_line

__all__ = [
    "NAME",
    "Gs1Config",
    "Gs1Error",
    "Gs1Scan",
    "MissingSeparatorPolicy",
    "parse",
    "to_receipt_line",
]
