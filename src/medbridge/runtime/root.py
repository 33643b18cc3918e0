"""What the runtime asks of the composition root (``medbridge.app.MedBridge``), stated as a
protocol so that ``runtime`` does not import ``app`` (the root composes the runtime's
parts, not the other way round)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI
from pydantic import SecretStr

from medbridge.bus.consumer import Consumer
from medbridge.canonical.erp import ErpPort
from medbridge.canonical.partners import TradingPartner
from medbridge.flows.cxml_exchange import CxmlExchange
from medbridge.flows.erp_routing import ErpRouter
from medbridge.flows.trade import Answer, SupplierChannel
from medbridge.flows.work_queue import WorkQueues
from medbridge.flows.workflows import Workflows
from medbridge.governance.clients import ClientRegistry
from medbridge.runtime.adapters import ErpSlot
from medbridge.runtime.listeners import Wiring
from medbridge.settings import Settings


class Root(Wiring, Protocol):
    settings: Settings
    clients: ClientRegistry
    consumers: dict[str, Consumer]
    erp_slots: dict[str, ErpSlot]
    erp_slot: ErpSlot
    partners: dict[str, TradingPartner]
    auto_receive: bool

    def erp(self, destination: str | None = None) -> ErpPort | None: ...

    def erp_router(self) -> ErpRouter: ...

    def work_queues(self) -> WorkQueues: ...

    def cxml_exchange(self) -> CxmlExchange: ...

    def supplier_channel(self, partner: TradingPartner) -> SupplierChannel: ...

    def deliver(self, wire: str, body: bytes) -> Answer: ...

    def pseudonym_secret(self) -> SecretStr: ...

    def workflows(
        self,
        channels: Callable[[TradingPartner], SupplierChannel] | None = None,
    ) -> Workflows: ...

    def api(self, with_workers: bool = False, demo: bool = False) -> FastAPI: ...

    def start_workers(
        self, demo: bool = False, *, listen: bool = True, work: bool = True, mllp: bool = False
    ) -> None: ...

    def stop_workers(self, timeout: float = 10.0) -> None: ...

    def loop_names(self) -> list[str]: ...

    def close(self) -> None: ...
