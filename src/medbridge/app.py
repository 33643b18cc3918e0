"""The composition root: the only place that chooses implementations from settings.

``MedBridge.build(settings)`` wires engine, bus, master data, intake, consumers and the API;
``serve()`` runs API and workers in one process (``medbridge run``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine

from medbridge.api.application import create_api
from medbridge.api.services import Services
from medbridge.bus.consumer import Consumer
from medbridge.bus.group_commit import GroupCommit
from medbridge.bus.port import Bus, RetryPolicy
from medbridge.canonical.erp import ErpPort
from medbridge.canonical.inbound import ItemCodeKind
from medbridge.canonical.partners import PartnerDirectory, TradingPartner, WireFormat
from medbridge.canonical.tasks import Action
from medbridge.connectors.fhir import FhirConfig
from medbridge.connectors.flatfile import ColumnMapping, FlatFileConfig, WatchedFolder
from medbridge.connectors.gnuhealth.config import GnuHealthConfig
from medbridge.connectors.gnuhealth.inbound import Poller
from medbridge.connectors.hl7v2 import Hl7Config, Hl7Receiver, MllpListener, UnmappedAck
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.demo.cabinets import DemoCabinets
from medbridge.demo.erp import DemoErp
from medbridge.demo.network import seed_demo_network
from medbridge.demo.procurement import DemoProcurement, demo_partners
from medbridge.demo.traffic import DemoTraffic
from medbridge.domain.matching import Tolerances
from medbridge.flows.cxml_exchange import CxmlExchange, CxmlHttpChannel
from medbridge.flows.demand import DemandRecorder
from medbridge.flows.erp_posting import ErpPosting, ErpPostingPolicy, PostingWindows
from medbridge.flows.inbound import InboundIntake
from medbridge.flows.intake import MovementIntake
from medbridge.flows.ledger_posting import CONSUMER as LEDGER
from medbridge.flows.ledger_posting import (
    INFRASTRUCTURE_ERRORS,
    PERMANENT_ERRORS,
    LedgerPosting,
)
from medbridge.flows.partner_folders import PartnerFolders
from medbridge.flows.procurement import Procurement, ProcurementPolicy
from medbridge.flows.replenishment import (
    PlannerPolicy,
    ReplenishmentPlanner,
    execute_transfer,
)
from medbridge.flows.stock_snapshots import SnapshotReconciler
from medbridge.flows.trade import Answer, SupplierChannel, TradeInbox, TradeOutbox
from medbridge.flows.work_queue import WorkQueues
from medbridge.flows.workflows import ProcurementRouter, Workflows
from medbridge.flows.x12_exchange import X12Exchange, X12FolderChannel
from medbridge.governance.clients import ClientRegistry, Role
from medbridge.masterdata.inbound import InboundResolver
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.observability.metrics import BusCollector, register_bus_collector
from medbridge.runtime.adapters import bus_from_settings
from medbridge.settings import Settings, fhir_config
from medbridge.store import migrate
from medbridge.store.db import create_db_engine
from medbridge.store.work_items import WorkItem

log = get_logger(__name__)

ADMIN_CLIENT = "admin"
ROUTER = "procurement"


@dataclass
class MedBridge:
    settings: Settings
    engine: Engine
    bus: Bus
    masterdata: MasterDataRepository
    intake: MovementIntake
    inbound: InboundIntake
    clients: ClientRegistry
    consumers: dict[str, Consumer]
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _api: FastAPI | None = None
    _workflows: Workflows | None = None
    _procurement_erp: tuple[str, ErpPort] | None = None

    @classmethod
    def build(cls, settings: Settings | None = None) -> MedBridge:
        settings = settings or Settings()
        engine = create_db_engine(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            background_checkpoints=True,
        )
        bus = bus_from_settings(settings, engine)
        masterdata = MasterDataRepository(engine)
        retry = RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            initial_backoff=settings.retry_initial_backoff,
            max_backoff=settings.retry_max_backoff,
            permanent=PERMANENT_ERRORS,
            halt_on=INFRASTRUCTURE_ERRORS,
        )
        consumers = {
            LEDGER: Consumer(
                bus,
                LEDGER,
                LedgerPosting(engine, masterdata),
                retry,
                batch_size=settings.consumer_batch_size,
            )
        }
        intake = MovementIntake(engine, bus, masterdata, GroupCommit(bus))
        return cls(
            settings=settings,
            engine=engine,
            bus=bus,
            masterdata=masterdata,
            intake=intake,
            inbound=InboundIntake(engine, intake, InboundResolver(masterdata)),
            clients=ClientRegistry(engine),
            consumers=consumers,
        )

    def services(self) -> Services:
        return Services(
            engine=self.engine,
            bus=self.bus,
            masterdata=self.masterdata,
            intake=self.intake,
            inbound=self.inbound,
            clients=self.clients,
            consumers=self.consumers,
            erp=_serialized(self.erp()),
            x12=self.x12_exchange(),
            cxml=self.cxml_exchange(),
            work_queues=self.work_queues(),
        )

    def work_queues(self) -> WorkQueues:
        return WorkQueues(
            self.engine, on_decision=self._on_decision, owners=self.settings.queue_owners
        )

    def _on_decision(self, item: WorkItem) -> None:
        """A decided task: an approved transfer moves the stock here and now (no workflow
        waits for it); any other resumes its workflow if it runs in this process (else the
        workflow finds the decision when it next re-reads its task)."""
        if item.kind == "transfer_proposed":
            if item.decision is not None and item.decision.action is Action.APPROVE:
                execute_transfer(self.intake, self.masterdata, item)
        elif self._workflows is not None and self._workflows.launched:
            self._workflows.on_decision(item)

    # --- durable workflows -----------------------------------------------------------------

    def procurement_policy(self) -> ProcurementPolicy:
        s = self.settings
        return ProcurementPolicy(
            ack_timeout=s.ack_timeout,
            shipment_timeout=s.shipment_timeout,
            receipt_grace=s.receipt_grace,
            poll=s.task_poll_interval,
            auto_receive=s.auto_receive,
            tolerances=Tolerances(
                price_percent=s.match_price_percent,
                price_absolute=s.match_price_absolute,
                quantity_percent=s.match_quantity_percent,
                total_absolute=s.match_total_absolute,
            ),
        )

    def _workflow_erp(self) -> ErpPort | None:
        """The workflows' ERP adapter (one, calls serialised by the runtime), rebuilt when the
        ERP settings change (the demo attaches its Tryton once built)."""
        url = self.settings.erp_url
        if not url:
            return None
        if self._procurement_erp is None or self._procurement_erp[0] != url:
            erp = self.erp()
            assert erp is not None
            self._procurement_erp = (url, erp)
        return self._procurement_erp[1]

    def workflows(
        self,
        channels: Callable[[TradingPartner], SupplierChannel] | None = None,
        erp: ErpPort | None = None,
    ) -> Workflows:
        """DBOS launched in this process with the procurement runtime, and the router consumer
        registered (once; ``channels`` overrides how orders reach suppliers: the demo's
        simulated ones; ``erp`` the configured ERP)."""
        if self._workflows is not None:
            return self._workflows
        work_queues = self.work_queues()
        runtime = Procurement(
            engine=self.engine,
            masterdata=self.masterdata,
            intake=self.intake,
            outbox=TradeOutbox(self.engine, channels or self.supplier_channel),
            partners=self.settings.partners,
            work_queues=work_queues,
            planner=ReplenishmentPlanner(
                self.engine,
                self.masterdata,
                work_queues,
                PlannerPolicy(window=timedelta(seconds=self.settings.consolidation_window)),
            ),
            erp=self._workflow_erp if erp is None else lambda: erp,
            policy=self.procurement_policy(),
        )
        workflows = Workflows(
            runtime,
            self.settings.database_url,
            system_database=self.settings.workflow_database_url,
            schema=self.settings.workflow_schema,
            poll=self.settings.workflow_poll_interval,
        )
        workflows.launch()
        self._workflows = workflows
        self.consumers[ROUTER] = Consumer(
            self.bus,
            ROUTER,
            ProcurementRouter(runtime),
            RetryPolicy(
                max_attempts=self.settings.retry_max_attempts,
                initial_backoff=self.settings.retry_initial_backoff,
                max_backoff=self.settings.retry_max_backoff,
            ),
            batch_size=self.settings.consumer_batch_size,
        )
        return workflows

    def shutdown_workflows(self) -> None:
        if self._workflows is not None:
            self._workflows.shutdown()
            self._workflows = None
            self.consumers.pop(ROUTER, None)

    # --- trading partners ------------------------------------------------------------------

    def partner_directory(self) -> PartnerDirectory:
        return PartnerDirectory(self.settings.partners)

    def trade_inbox(self) -> TradeInbox:
        return TradeInbox(self.engine, self.bus)

    def x12_exchange(self) -> X12Exchange:
        return X12Exchange(
            self.trade_inbox(),
            self.partner_directory(),
            self.settings.own_identity,
            max_bytes=self.settings.x12_max_bytes,
        )

    def cxml_exchange(self) -> CxmlExchange:
        return CxmlExchange(
            self.trade_inbox(),
            self.partner_directory(),
            self.settings.own_identity,
            max_bytes=self.settings.cxml_max_bytes,
        )

    def supplier_channel(self, partner: TradingPartner) -> SupplierChannel:
        """How orders reach ``partner``: its outbound folder (X12) or its cXML endpoint."""
        own = self.settings.own_identity
        if partner.wire_format is WireFormat.CXML:
            return CxmlHttpChannel(own)
        return X12FolderChannel(own)

    def trade_outbox(self) -> TradeOutbox:
        return TradeOutbox(self.engine, self.supplier_channel)

    def partner_folders(self) -> PartnerFolders | None:
        exchange = self.x12_exchange()
        folders = PartnerFolders(
            self.partner_directory(),
            lambda partner, raw: exchange.receive(raw, partner=partner),
        )
        return folders if folders.partners else None

    def upgrade_database(self) -> None:
        migrate.upgrade(self.engine)

    def seed_demo(self) -> None:
        seed_demo_network(self.engine, self.masterdata)

    def _var_secret(self, name: str) -> tuple[str, bool]:
        """A secret kept in ``var/<name>`` (0600), generated on first use."""
        path = Path(self.settings.var_dir) / name
        generated = not path.exists()
        if generated:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32) + "\n")
            path.chmod(0o600)
        return path.read_text().strip(), generated

    def pseudonym_secret(self) -> SecretStr:
        """The HMAC key of encounter pseudonyms: stable across restarts, or pseudonyms drift."""
        if self.settings.pseudonym_secret is not None:
            return self.settings.pseudonym_secret
        return SecretStr(self._var_secret("pseudonym_secret")[0])

    def hl7_config(self, **overrides: object) -> Hl7Config:
        s = self.settings
        values: dict[str, object] = {
            "host": s.mllp_host,
            "port": s.mllp_port,
            "tls_cert": s.mllp_tls_cert,
            "tls_key": s.mllp_tls_key,
            "unmapped_ack": UnmappedAck(s.hl7_unmapped_ack),
            "strict_validation": s.hl7_strict_validation,
            "pseudonym_secret": self.pseudonym_secret(),
        }
        return Hl7Config.model_validate(values | overrides)

    def mllp_listener(self, config: Hl7Config | None = None) -> MllpListener:
        config = config or self.hl7_config()
        receiver = Hl7Receiver(self.inbound, DemandRecorder(self.bus), config)
        return MllpListener(receiver, config)

    def gnuhealth_poller(self) -> Poller | None:
        """The GNU Health poller when one is configured (``MEDBRIDGE_GNUHEALTH_*``)."""
        s = self.settings
        if not s.gnuhealth_url:
            return None
        if not s.gnuhealth_database or s.gnuhealth_password is None:
            raise ValueError("MEDBRIDGE_GNUHEALTH_URL needs _DATABASE and _PASSWORD too")
        config = GnuHealthConfig(
            url=s.gnuhealth_url,
            database=s.gnuhealth_database,
            user=s.gnuhealth_user,
            password=s.gnuhealth_password,
            pseudonym_secret=self.pseudonym_secret(),
            poll_interval=s.gnuhealth_poll_interval,
            var_dir=s.var_dir,
            item_code_kind=ItemCodeKind(s.gnuhealth_item_code_kind),
        )
        return Poller(config, self.inbound)

    def erp(self) -> ErpPort | None:
        """A new Tryton adapter (one per worker: it is not thread-safe), or None."""
        s = self.settings
        if not s.erp_url:
            return None
        if not s.erp_database or s.erp_password is None:
            raise ValueError("MEDBRIDGE_ERP_URL needs _DATABASE and _PASSWORD too")
        return TrytonErp(
            TrytonConfig(
                url=s.erp_url,
                database=s.erp_database,
                user=s.erp_user,
                password=s.erp_password,
            )
        )

    def erp_posting_policy(self) -> ErpPostingPolicy:
        s = self.settings
        return ErpPostingPolicy(
            erp_name="tryton",
            batch_size=s.erp_batch_size,
            rate_limit=s.erp_rate_limit,
            burst=s.erp_burst,
            failure_threshold=s.erp_breaker_failures,
            cool_down=s.erp_breaker_cool_down,
            auth_cool_down=s.erp_auth_cool_down,
            lease=s.erp_lease,
            windows=PostingWindows.parse(s.erp_hold_windows, s.erp_hold_timezone),
            retry=RetryPolicy(
                max_attempts=s.retry_max_attempts,
                initial_backoff=s.erp_retry_initial_backoff,
                max_backoff=s.erp_retry_max_backoff,
            ),
        )

    def flatfile_folder(self) -> WatchedFolder | None:
        """The watched folder of nightly snapshots, if ``flatfile_root`` is set."""
        root = self.settings.flatfile_root
        if root is None or not self.settings.flatfile_sources:
            return None
        return WatchedFolder(
            root,
            {name: self.snapshot_reconciler(name) for name in self.settings.flatfile_sources},
        )

    def snapshot_reconciler(self, source: str) -> SnapshotReconciler:
        """The reconciler of one configured snapshot source (KeyError if not configured)."""
        s = self.settings.flatfile_sources[source]
        config = FlatFileConfig(
            source=source,
            columns=ColumnMapping(
                item=s.item_column,
                location=s.location_column,
                lot=s.lot_column,
                quantity=s.quantity_column,
                unit=s.unit_column,
                expiry=s.expiry_column,
            ),
            delimiter=s.delimiter,
            encoding=s.encoding,
            tolerance=s.tolerance,
            emit_adjustments=s.emit_adjustments,
            locations=frozenset(s.locations),
            incomplete_grace_seconds=s.incomplete_grace_seconds,
        )
        return SnapshotReconciler(self.engine, self.masterdata, config, self.intake)

    def _watch_snapshots(self, folder: WatchedFolder, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                for outcome in folder.scan():
                    if outcome.status != "waiting":
                        log.info(
                            "flatfile.scanned",
                            source=outcome.source,
                            file=outcome.file,
                            status=outcome.status,
                            variances=len(outcome.report.variances) if outcome.report else None,
                        )
            except Exception:  # the database or the disk: try again on the next scan
                log.exception("flatfile.scan_failed")
            stop.wait(self.settings.flatfile_poll_interval)

    def ensure_admin_key(self) -> tuple[str, bool]:
        """The admin key: from settings, else from ``var/admin_api_key``, else a new one
        written there (0600). Returns the key and whether it was generated now."""
        if self.settings.admin_api_key is not None:
            key, generated = self.settings.admin_api_key.get_secret_value(), False
        else:
            key, generated = self._var_secret("admin_api_key")
        self.clients.register(ADMIN_CLIENT, Role.ADMIN, key)
        return key, generated

    # --- workers ---------------------------------------------------------------------------

    def start_workers(self, demo: bool = False) -> None:
        self._stop.clear()
        suppliers = (
            DemoProcurement(self.engine, self.settings.own_identity, self._deliver)
            if demo
            else None
        )
        if self.settings.workflows_enabled:
            workflows = self.workflows(suppliers.channel if suppliers is not None else None)
            self._spawn(
                "replenishment",
                workflows.runtime.run_planner,
                self._stop,
                self.settings.replenishment_interval,
            )
        for name, consumer in self.consumers.items():
            self._spawn(
                f"consumer-{name}", consumer.run, self._stop, self.settings.consumer_poll_interval
            )
        partner_folders = self.partner_folders()
        if partner_folders is not None:
            self._spawn(
                "partner-folders",
                partner_folders.run,
                self._stop,
                self.settings.partner_folder_poll_interval,
            )
        snapshots = self.flatfile_folder()
        if snapshots is not None:
            self._spawn("flatfile-folder", self._watch_snapshots, snapshots, self._stop)
        poller = self.gnuhealth_poller()
        if poller is not None:
            self._spawn("gnuhealth-poller", poller.run, self._stop)
        erp = self.erp()
        if erp is not None:
            poster = ErpPosting(self.engine, erp, self.erp_posting_policy())
            self._spawn("erp-posting", poster.run, self._stop, self.settings.erp_poll_interval)
        elif demo:
            self._spawn("demo-erp", self._run_demo_erp, self._stop)
        if demo:
            traffic = DemoTraffic(
                self.intake,
                self.settings.demo_dispenses_per_second,
                restock=not self.settings.workflows_enabled,
            )
            self._spawn("demo-traffic", traffic.run, self._stop)
            assert suppliers is not None  # replenishment orders from them; else the demo does
            self._spawn(
                "demo-procurement", suppliers.run, self._stop, not self.settings.workflows_enabled
            )
            if self.settings.mllp_enabled:
                cabinets = DemoCabinets(
                    self.engine,
                    self.settings.mllp_host,
                    self.settings.mllp_port,
                    rate=max(0.2, self.settings.demo_dispenses_per_second / 4),
                )
                self._spawn("demo-cabinets", cabinets.run, self._stop)

    def _run_demo_erp(self, stop: threading.Event) -> None:
        """The demo's real Tryton: attach it once the peer is built, then post to it."""
        demo = DemoErp(self.settings.var_dir)
        try:
            server = demo.wait_and_start(stop)
        except (OSError, RuntimeError, ValueError) as error:
            log.error("demo.erp_unavailable", error=str(error))
            return
        if server is None:
            return
        try:
            self.settings = self.settings.model_copy(
                update={
                    "erp_url": server.url,
                    "erp_database": server.database,
                    "erp_user": server.user,
                    "erp_password": SecretStr(server.password),
                }
            )
            if self._api is not None:  # reconciliation and postings answer from now on
                self._api.state.services = self.services()
            erp = self.erp()
            assert erp is not None
            ErpPosting(self.engine, erp, self.erp_posting_policy()).run(
                stop, self.settings.erp_poll_interval
            )
        finally:
            demo.stop()

    def _spawn(self, name: str, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def stop_workers(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._workflows is not None:
            self._workflows.runtime.stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self.shutdown_workflows()

    def _deliver(self, wire: str, body: bytes) -> Answer:
        """Hand a wire document to MedBridge's own inbound exchanges (the demo suppliers)."""
        return (self.x12_exchange() if wire == "x12" else self.cxml_exchange()).receive(body)

    def api(self, with_workers: bool = False, demo: bool = False) -> FastAPI:
        if demo:  # the demo's simulated suppliers are trading partners like any other; its
            # dock receives what their ship notices announce (there is nobody to count)
            partners = {**demo_partners(), **self.settings.partners}
            self.settings = self.settings.model_copy(
                update={"partners": partners, "auto_receive": True}
            )
        register_bus_collector(
            BusCollector(list(self.consumers), self.bus.lag, self.bus.dead_letter_count)
        )

        @asynccontextmanager
        async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
            listener = self.mllp_listener() if with_workers and self.settings.mllp_enabled else None
            if listener is not None:  # its own loop and thread: HL7 never waits on HTTP
                listener.start_in_thread()
            if with_workers:
                self.start_workers(demo=demo)
            try:
                yield
            finally:
                if with_workers:
                    self.stop_workers()
                if listener is not None:
                    listener.stop_in_thread()
                self.engine.dispose()

        api = create_api(self.services(), lifespan=lifespan)
        api.state.fhir_config = self.fhir_config()
        self._api = api
        return api

    def fhir_config(self) -> FhirConfig:
        """``MEDBRIDGE_FHIR_*`` and the ``[fhir]`` table, with MedBridge's own pseudonym
        secret when none is set for FHIR (the same encounter gets the same pseudonym)."""
        config = fhir_config()
        if config.pseudonym_secret is None:
            config = config.model_copy(update={"pseudonym_secret": self.pseudonym_secret()})
        return config


class _SerializedErp:
    """One adapter shared by API requests, one call at a time (adapters are not thread-safe)."""

    def __init__(self, erp: ErpPort) -> None:
        self._erp, self._lock = erp, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._erp, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


def _serialized(erp: ErpPort | None) -> ErpPort | None:
    return None if erp is None else cast(ErpPort, _SerializedErp(erp))
