"""The composition root: it composes what the settings name, and nothing else.

``MedBridge.build(settings)`` wires engine, bus, master data, the group commit, intake,
consumers and the ERP slot; the implementations come from the registries of
``medbridge.runtime`` (``adapters``: bus and ERP; ``listeners``: MLLP, folders, pollers), the
background loops run under its supervisor, and ``runtime.processes`` says which loops each
process (``run``, ``api``, ``listen``, ``worker``) starts. The demo's parts are in
``medbridge.demo.wiring``.

Nothing here rewrites the settings at run time: an ERP known only later (the demo's Tryton)
is attached to ``erp_slot``; the demo's simulated suppliers join ``partners``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine

from medbridge.bus.consumer import Consumer
from medbridge.bus.group_commit import GroupCommit
from medbridge.bus.port import Bus
from medbridge.canonical.erp import ErpPort
from medbridge.canonical.partners import PartnerDirectory, TradingPartner, WireFormat
from medbridge.canonical.tasks import Action
from medbridge.connectors.flatfile import WatchedFolder
from medbridge.connectors.gnuhealth.inbound import Poller
from medbridge.connectors.hl7v2 import Hl7Config, MllpListener
from medbridge.demo.network import SEED_ACTOR, seed_demo_network
from medbridge.demo.wiring import with_demo_partners
from medbridge.flows import contract_catalog
from medbridge.flows.cxml_exchange import CxmlExchange, CxmlHttpChannel
from medbridge.flows.erp_posting import ErpPostingPolicy
from medbridge.flows.erp_routing import ErpRouter
from medbridge.flows.inbound import InboundIntake
from medbridge.flows.intake import MovementIntake
from medbridge.flows.ledger_posting import CONSUMER as LEDGER
from medbridge.flows.ledger_posting import LedgerPosting
from medbridge.flows.partner_folders import PartnerFolders
from medbridge.flows.procurement import ProcurementPolicy
from medbridge.flows.replenishment import execute_transfer
from medbridge.flows.stock_snapshots import SnapshotReconciler
from medbridge.flows.trade import Answer, SupplierChannel, TradeInbox, TradeOutbox
from medbridge.flows.work_queue import WorkQueues
from medbridge.flows.workflows import Workflows
from medbridge.flows.x12_exchange import X12Exchange, X12FolderChannel
from medbridge.governance.clients import ClientRegistry, Role, SenderScopes
from medbridge.masterdata.inbound import InboundResolver
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability import tracing
from medbridge.runtime import listeners, policies, var_secrets
from medbridge.runtime.adapters import (
    ErpSlot,
    bus_from_settings,
    erp_slots,
    primary_destination,
)
from medbridge.runtime.processes import http_app, start_loops
from medbridge.runtime.supervisor import Supervisor
from medbridge.runtime.workflows import ROUTER, build_workflows
from medbridge.settings import Settings
from medbridge.store import migrate
from medbridge.store.db import create_db_engine
from medbridge.store.messages import MessageRecorder
from medbridge.store.work_items import WorkItem

ADMIN_CLIENT = "admin"


def contract_catalog_of(
    engine: Engine, masterdata: MasterDataRepository, settings: Settings
) -> contract_catalog.ContractCatalog:
    """The 832 catalogs' contract price proposals, with the settings' tolerance and tier."""
    return contract_catalog.ContractCatalog(engine, masterdata, policies.catalog_policy(settings))


@dataclass
class MedBridge:
    settings: Settings
    engine: Engine
    bus: Bus
    masterdata: MasterDataRepository
    group_commit: GroupCommit
    intake: MovementIntake
    inbound: InboundIntake
    clients: ClientRegistry
    consumers: dict[str, Consumer]
    erp_slots: dict[str, ErpSlot]
    """Every ERP destination, by name."""
    erp_slot: ErpSlot
    """The primary one (``adapters.primary_destination``): the demo's ERP, ``erp sync``."""
    partners: dict[str, TradingPartner]
    """The trading partners: the settings', and in a demo the simulated suppliers too."""
    auto_receive: bool
    """Receive goods as ship notices announce them (settings; always in a demo)."""
    _supervisor: Supervisor | None = None
    _workflows: Workflows | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings | None = None) -> MedBridge:
        settings = settings or Settings()
        if settings.otlp_endpoint:
            tracing.configure_tracing(
                settings.otlp_endpoint, service_name=settings.otlp_service_name
            )
        engine = create_db_engine(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            background_checkpoints=True,
        )
        bus = bus_from_settings(settings, engine)
        masterdata = MasterDataRepository(engine)
        ledger = LedgerPosting(engine, masterdata, policies.erp_router(settings))
        retry = policies.ledger_retry(settings)
        size = settings.consumer_batch_size
        group_commit = GroupCommit(bus, recorder=MessageRecorder(engine))
        intake = MovementIntake(engine, bus, masterdata, group_commit)
        clients = ClientRegistry(engine)
        scopes = SenderScopes(clients, settings.sender_clients)
        slots = erp_slots(settings)
        return cls(
            settings=settings,
            engine=engine,
            bus=bus,
            masterdata=masterdata,
            group_commit=group_commit,
            intake=intake,
            inbound=InboundIntake(engine, intake, InboundResolver(masterdata), scopes),
            clients=clients,
            consumers={
                LEDGER: Consumer(bus, LEDGER, ledger, retry, batch_size=size),
                contract_catalog.CONSUMER: Consumer(
                    bus,
                    contract_catalog.CONSUMER,
                    contract_catalog_of(engine, masterdata, settings),
                    policies.consumer_retry(settings),
                    batch_size=size,
                ),
            },
            erp_slots=slots,
            erp_slot=slots[primary_destination(settings)],
            partners=dict(settings.partners),
            auto_receive=settings.auto_receive,
        )

    def work_queues(self) -> WorkQueues:
        return WorkQueues(
            self.engine, on_decision=self._on_decision, owners=self.settings.queue_owners
        )

    def _on_decision(self, item: WorkItem) -> None:
        """A decided task: an approved transfer moves the stock here and now (no workflow
        waits for it); any other resumes its workflow if it runs in this process (else the
        workflow finds the decision when it next re-reads its task)."""
        if item.kind == contract_catalog.TASK_KIND:
            contract_catalog_of(self.engine, self.masterdata, self.settings).settle(item)
        elif item.kind == "transfer_proposed":
            if item.decision is not None and item.decision.action is Action.APPROVE:
                execute_transfer(self.intake, self.masterdata, item)
        elif self._workflows is not None and self._workflows.launched:
            self._workflows.on_decision(item)

    # --- durable workflows (workers only) --------------------------------------------------

    def procurement_policy(self) -> ProcurementPolicy:
        return policies.procurement_policy(self.settings, auto_receive=self.auto_receive)

    def workflows(
        self,
        channels: Callable[[TradingPartner], SupplierChannel] | None = None,
    ) -> Workflows:
        """DBOS launched in this process, the router consumer registered (once)."""
        if self._workflows is None:
            self._workflows = build_workflows(self, channels)
        return self._workflows

    def shutdown_workflows(self) -> None:
        if self._workflows is not None:
            self._workflows.shutdown()
            self._workflows = None
            self.consumers.pop(ROUTER, None)

    # --- trading partners ------------------------------------------------------------------

    def partner_directory(self) -> PartnerDirectory:
        return PartnerDirectory(self.partners)

    def trade_inbox(self) -> TradeInbox:
        return TradeInbox(self.engine, self.bus)

    def x12_exchange(self) -> X12Exchange:
        s = self.settings
        directory, own = self.partner_directory(), s.own_identity
        return X12Exchange(self.trade_inbox(), directory, own, max_bytes=s.x12_max_bytes)

    def cxml_exchange(self) -> CxmlExchange:
        s = self.settings
        directory, own = self.partner_directory(), s.own_identity
        return CxmlExchange(self.trade_inbox(), directory, own, max_bytes=s.cxml_max_bytes)

    def supplier_channel(self, partner: TradingPartner) -> SupplierChannel:
        """How orders reach ``partner``: its outbound folder (X12) or its cXML endpoint."""
        own = self.settings.own_identity
        if partner.wire_format is WireFormat.CXML:
            return CxmlHttpChannel(own)
        return X12FolderChannel(own)

    def trade_outbox(self) -> TradeOutbox:
        return TradeOutbox(self.engine, self.supplier_channel)

    def deliver(self, wire: str, body: bytes) -> Answer:
        """Hand a wire document to MedBridge's own inbound exchanges (the demo suppliers)."""
        return (self.x12_exchange() if wire == "x12" else self.cxml_exchange()).receive(body)

    _deliver = deliver

    # --- the settings' components ----------------------------------------------------------

    def upgrade_database(self) -> None:
        migrate.upgrade(self.engine)

    def seed_demo(self, actor: str = SEED_ACTOR) -> None:
        seed_demo_network(self.engine, self.masterdata, actor=actor)

    def pseudonym_secret(self) -> SecretStr:
        return var_secrets.pseudonym_secret(self.settings)

    def hl7_config(self, **overrides: object) -> Hl7Config:
        return listeners.hl7_config(self.settings, **overrides)

    def mllp_listener(self, config: Hl7Config | None = None) -> MllpListener:
        return listeners.mllp_listener(config or self.hl7_config(), self)

    def partner_folders(self) -> PartnerFolders | None:
        return listeners.partner_folders(self)

    def gnuhealth_poller(self) -> Poller | None:
        config = listeners.gnuhealth_config(self.settings)
        return None if config is None else Poller(config, self.inbound)

    def flatfile_folder(self) -> WatchedFolder | None:
        """The watched folder of nightly snapshots, if ``flatfile_root`` is set."""
        config = listeners.LISTENERS["flatfile"].configure(self.settings)
        return None if config is None else listeners.snapshot_folder(config, self)

    def snapshot_reconciler(self, source: str) -> SnapshotReconciler:
        """The reconciler of one configured snapshot source (KeyError if not configured)."""
        config = listeners.flatfile_config(self.settings, source)
        return listeners.snapshot_reconciler(config, self)

    def erp(self, destination: str | None = None) -> ErpPort | None:
        """A new adapter of the attached ERP (one per worker: not thread-safe), or None:
        the primary one, or ``destination``'s (KeyError if there is no such destination)."""
        slot = self.erp_slot if destination is None else self.erp_slots[destination]
        return slot.build()

    def erp_posting_policy(self, destination: str | None = None) -> ErpPostingPolicy:
        return policies.erp_posting_policy(self.settings, destination or self.erp_slot.name)

    def erp_router(self) -> ErpRouter:
        return policies.erp_router(self.settings)

    def ensure_admin_key(self) -> tuple[str, bool]:
        """The admin key (settings, ``var/admin_api_key``, or new), registered."""
        key, generated = var_secrets.admin_key(self.settings)
        self.clients.register(ADMIN_CLIENT, Role.ADMIN, key, actor="system:admin-key")
        return key, generated

    # --- background loops and life cycle ---------------------------------------------------

    def start_workers(
        self, demo: bool = False, *, listen: bool = True, work: bool = True, mllp: bool = False
    ) -> None:
        """Start the supervised loops: listeners (MLLP only with ``mllp``) and workers."""
        with self._lock:
            if self._supervisor is not None:
                raise RuntimeError("the loops run already")
            self._supervisor = start_loops(self, listen=listen, work=work, mllp=mllp, demo=demo)

    def loop_names(self) -> list[str]:
        return [] if self._supervisor is None else self._supervisor.names

    def stop_workers(self, timeout: float = 10.0) -> None:
        if self._workflows is not None:
            self._workflows.runtime.stopping.set()
        with self._lock:
            supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.stop(timeout)
        self.shutdown_workflows()

    def close(self) -> None:
        """The process ends: loops stopped, queued appends committed, bus closed (a JetStream
        worker hands its partitions back), connections released."""
        self.stop_workers()
        self.group_commit.close()
        self.bus.close()
        self.engine.dispose()
        tracing.flush()  # the spans of the last moments, before the process ends

    def join_demo(self) -> None:
        """The demo's simulated suppliers become trading partners like any other; its dock
        receives what their ship notices announce (there is nobody to count)."""
        self.partners, self.auto_receive = with_demo_partners(self.partners), True

    def api(self, with_workers: bool = False, demo: bool = False) -> FastAPI:
        """The HTTP API (``with_workers``: its lifespan runs every loop, as ``run`` does)."""
        if demo:
            self.join_demo()
        return http_app(self, with_workers=with_workers, demo=demo)
