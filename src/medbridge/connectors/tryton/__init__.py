"""Tryton ERP over JSON-RPC: the ``ErpPort`` adapter (``client``, ``outbound``) and, for tests,
an in-memory ``FakeErp`` (``medbridge.connectors.tryton.fake``).

trytond is GPL: MedBridge talks to it over JSON-RPC only (``client``), never by import.
``outbound.TrytonErp`` is the port; every document it creates carries MedBridge's idempotency
key in a reference field and is searched for before it is created (exactly-once writes).
"""

from medbridge.connectors.tryton.client import TrytonClient
from medbridge.connectors.tryton.config import NAME, MoveReferenceField, TrytonConfig
from medbridge.connectors.tryton.errors import TrytonProtocolError
from medbridge.connectors.tryton.outbound import TrytonErp

__all__ = [
    "NAME",
    "MoveReferenceField",
    "TrytonClient",
    "TrytonConfig",
    "TrytonErp",
    "TrytonProtocolError",
]
