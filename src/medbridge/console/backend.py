"""What the console needs from the rest of the system: the same objects the API's routes use
(the composition root hands the console a getter of the API's current services, so an ERP
configured at run time reaches both)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from sqlalchemy import Engine

from medbridge.bus.consumer import Consumer
from medbridge.bus.port import Bus
from medbridge.canonical.erp import ErpPort
from medbridge.flows.erp_routing import ErpRouter
from medbridge.flows.inbound import InboundIntake
from medbridge.flows.messages import MessageBrowser
from medbridge.flows.work_queue import WorkQueues
from medbridge.governance.clients import ClientRegistry
from medbridge.masterdata.repository import MasterDataRepository


class Backend(Protocol):
    @property
    def engine(self) -> Engine: ...
    @property
    def bus(self) -> Bus: ...
    @property
    def masterdata(self) -> MasterDataRepository: ...
    @property
    def inbound(self) -> InboundIntake: ...
    @property
    def clients(self) -> ClientRegistry: ...
    @property
    def consumers(self) -> Mapping[str, Consumer]: ...
    @property
    def work_queues(self) -> WorkQueues | None: ...
    @property
    def erp(self) -> ErpPort | None: ...
    @property
    def messages(self) -> MessageBrowser | None: ...
    @property
    def erp_name(self) -> str: ...
    @property
    def erp_names(self) -> list[str]: ...
    def erp_of(self, name: str) -> ErpPort | None: ...
    def router(self) -> ErpRouter: ...
    @property
    def erp_router(self) -> ErpRouter | None: ...


BackendGetter = Callable[[], Backend]
