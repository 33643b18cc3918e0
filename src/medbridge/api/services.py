"""What the API needs from the rest of the system; built by the composition root (app.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine

from medbridge.bus.consumer import Consumer
from medbridge.bus.port import Bus
from medbridge.canonical.erp import ErpPort
from medbridge.flows.contract_catalog import ContractCatalog
from medbridge.flows.cxml_exchange import CxmlExchange
from medbridge.flows.erp_routing import DEFAULT_DESTINATION, ErpRouter
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
    contract_catalog: ContractCatalog | None = None  # None: re-reading a catalog answers 503
    erps: Mapping[str, ErpPort | None] = field(default_factory=dict)
    """The other ERP destinations' adapters by name (None: not connected), beside ``erp``."""
    erp_name: str = DEFAULT_DESTINATION
    """The destination ``erp`` is."""
    erp_router: ErpRouter | None = None
    """The routing of documents to destinations (None: the one ERP gets everything)."""

    def erp_of(self, name: str) -> ErpPort | None:
        """The adapter of destination ``name`` (KeyError: no such destination)."""
        if name == self.erp_name:
            return self.erp
        return self.erps[name]

    @property
    def erp_names(self) -> list[str]:
        return [self.erp_name, *(n for n in self.erps if n != self.erp_name)]

    def router(self) -> ErpRouter:
        return self.erp_router or ErpRouter.single(self.erp_name)
