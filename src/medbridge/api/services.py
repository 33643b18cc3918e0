"""What the API needs from the rest of the system; built by the composition root (app.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from medbridge.bus.consumer import Consumer
from medbridge.bus.port import Bus
from medbridge.canonical.erp import ErpPort
from medbridge.flows.cxml_exchange import CxmlExchange
from medbridge.flows.erp_routing import ErpRouter
from medbridge.flows.inbound import InboundIntake
from medbridge.flows.intake import MovementIntake
from medbridge.flows.messages import MessageBrowser
from medbridge.flows.work_queue import WorkQueues
from medbridge.flows.x12_exchange import X12Exchange
from medbridge.governance.clients import ClientRegistry
from medbridge.masterdata.repository import MasterDataRepository


@dataclass(frozen=True)
class Services:
    engine: Engine
    bus: Bus
    masterdata: MasterDataRepository
    intake: MovementIntake
    inbound: InboundIntake
    clients: ClientRegistry
    consumers: Mapping[str, Consumer]
    erp: ErpPort | None = None  # None: no ERP configured (reconciliation answers 503)
    x12: X12Exchange | None = None
    cxml: CxmlExchange | None = None
    work_queues: WorkQueues | None = None
    messages: MessageBrowser | None = None  # None: GET /v1/messages answers 503
    erp_router: ErpRouter | None = None  # None: the one ERP of the flat settings
