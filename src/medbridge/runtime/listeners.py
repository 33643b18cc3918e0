"""Inbound listeners, registered as name + typed config + constructor: the MLLP listener, the
watched folder of nightly snapshots, the trading partners' inbound folders and the GNU
Health poller. Each constructor makes a ``Loop`` for the supervisor (None: nothing to run,
e.g. no partner has an inbound folder). Which ones run is the settings' choice alone:
``mllp_enabled``, ``flatfile_root`` + ``flatfile_sources``, partners with an
``inbound_folder``, ``gnuhealth_url``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine

from medbridge.bus.port import Bus
from medbridge.canonical.inbound import ItemCodeKind
from medbridge.canonical.partners import PartnerDirectory
from medbridge.connectors.flatfile import ColumnMapping, FlatFileConfig, WatchedFolder
from medbridge.connectors.gnuhealth.config import GnuHealthConfig
from medbridge.connectors.gnuhealth.inbound import Poller
from medbridge.connectors.hl7v2 import Hl7Config, Hl7Receiver, MllpListener, MllpTls, UnmappedAck
from medbridge.flows.demand import DemandRecorder
from medbridge.flows.inbound import InboundIntake
from medbridge.flows.intake import MovementIntake
from medbridge.flows.partner_folders import PartnerFolders
from medbridge.flows.stock_snapshots import SnapshotReconciler
from medbridge.flows.x12_exchange import X12Exchange
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.runtime.registry import Registry
from medbridge.runtime.supervisor import Loop
from medbridge.runtime.var_secrets import pseudonym_secret
from medbridge.settings import Settings

log = get_logger(__name__)


class Wiring(Protocol):
    """What listeners are wired to (``MedBridge``)."""

    engine: Engine
    bus: Bus
    masterdata: MasterDataRepository
    intake: MovementIntake
    inbound: InboundIntake

    def partner_directory(self) -> PartnerDirectory: ...

    def x12_exchange(self) -> X12Exchange: ...


# --- MLLP --------------------------------------------------------------------------------


def mllp_tls(settings: Settings) -> MllpTls | None:
    """The MLLP listener's TLS as the settings name it (``MEDBRIDGE_MLLP_TLS_*``)."""
    if settings.mllp_tls_cert is None:
        return None
    return MllpTls(
        cert_file=settings.mllp_tls_cert,
        key_file=settings.mllp_tls_key,
        ca_file=settings.mllp_tls_ca,
        require_client_cert=settings.mllp_tls_require_client_cert,
        handshake_timeout=settings.mllp_tls_handshake_timeout,
    )


def hl7_config(settings: Settings, **overrides: object) -> Hl7Config:
    values: dict[str, object] = {
        "host": settings.mllp_host,
        "port": settings.mllp_port,
        "tls": mllp_tls(settings),
        "allowed_sources": tuple(settings.mllp_allowed_sources),
        "source_clients": tuple(settings.mllp_source_clients.items()),
        "unmapped_ack": UnmappedAck(settings.hl7_unmapped_ack),
        "strict_validation": settings.hl7_strict_validation,
        "pseudonym_secret": pseudonym_secret(settings),
    }
    return Hl7Config.model_validate(values | overrides)


def mllp_listener(config: Hl7Config, wiring: Wiring) -> MllpListener:
    receiver = Hl7Receiver(wiring.inbound, DemandRecorder(wiring.bus), config)
    return MllpListener(receiver, config)


class MllpService:
    """The MLLP listener on its own event loop and thread (HL7 never waits on HTTP): bound
    when the supervisor starts it (a port in use fails the start), closed at stop."""

    def __init__(self, listener: MllpListener) -> None:
        self.listener = listener

    def start(self) -> None:
        self.listener.start_in_thread()

    def run(self, stop: threading.Event) -> None:
        stop.wait()
        self.listener.stop_in_thread()


def _mllp(settings: Settings) -> Hl7Config | None:
    return hl7_config(settings) if settings.mllp_enabled else None


def _build_mllp(config: Hl7Config, wiring: Wiring) -> Loop:
    service = MllpService(mllp_listener(config, wiring))
    return Loop("mllp-listener", service.run, prepare=service.start)


# --- the watched folder of nightly snapshots ---------------------------------------------


@dataclass(frozen=True)
class SnapshotFolderConfig:
    root: Path
    sources: dict[str, FlatFileConfig]
    poll_interval: float


def flatfile_config(settings: Settings, source: str) -> FlatFileConfig:
    """The typed config of one configured snapshot source (KeyError if not configured)."""
    s = settings.flatfile_sources[source]
    return FlatFileConfig(
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


def _snapshot_folder(settings: Settings) -> SnapshotFolderConfig | None:
    if settings.flatfile_root is None or not settings.flatfile_sources:
        return None
    return SnapshotFolderConfig(
        root=settings.flatfile_root,
        sources={name: flatfile_config(settings, name) for name in settings.flatfile_sources},
        poll_interval=settings.flatfile_poll_interval,
    )


def snapshot_reconciler(config: FlatFileConfig, wiring: Wiring) -> SnapshotReconciler:
    return SnapshotReconciler(wiring.engine, wiring.masterdata, config, wiring.intake)


def snapshot_folder(config: SnapshotFolderConfig, wiring: Wiring) -> WatchedFolder:
    return WatchedFolder(
        config.root,
        {name: snapshot_reconciler(source, wiring) for name, source in config.sources.items()},
    )


class SnapshotWatcher:
    """Scans the watched folder every ``interval``; a failed scan (the database, the disk)
    is logged and tried again on the next one."""

    def __init__(self, folder: WatchedFolder, interval: float) -> None:
        self.folder, self.interval = folder, interval

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                for outcome in self.folder.scan():
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
            stop.wait(self.interval)


def _build_snapshot_folder(config: SnapshotFolderConfig, wiring: Wiring) -> Loop:
    watcher = SnapshotWatcher(snapshot_folder(config, wiring), config.poll_interval)
    return Loop("flatfile-folder", watcher.run)


# --- trading partners' inbound folders ---------------------------------------------------


@dataclass(frozen=True)
class PartnerFoldersConfig:
    poll_interval: float


def _partner_folders_config(settings: Settings) -> PartnerFoldersConfig:
    return PartnerFoldersConfig(poll_interval=settings.partner_folder_poll_interval)


def partner_folders(wiring: Wiring) -> PartnerFolders | None:
    """The partners' inbound folders (X12 into the exchange), None if no partner has one."""
    exchange = wiring.x12_exchange()
    folders = PartnerFolders(
        wiring.partner_directory(),
        lambda partner, raw: exchange.receive(raw, partner=partner),
    )
    return folders if folders.partners else None


def _build_partner_folders(config: PartnerFoldersConfig, wiring: Wiring) -> Loop | None:
    folders = partner_folders(wiring)
    if folders is None:
        return None
    return Loop("partner-folders", partial(folders.run, interval=config.poll_interval))


# --- GNU Health ---------------------------------------------------------------------------


def gnuhealth_config(settings: Settings) -> GnuHealthConfig | None:
    """The GNU Health poller's config when one is configured (``MEDBRIDGE_GNUHEALTH_*``)."""
    s = settings
    if not s.gnuhealth_url:
        return None
    if not s.gnuhealth_database or s.gnuhealth_password is None:
        raise ValueError("MEDBRIDGE_GNUHEALTH_URL needs _DATABASE and _PASSWORD too")
    return GnuHealthConfig(
        url=s.gnuhealth_url,
        database=s.gnuhealth_database,
        user=s.gnuhealth_user,
        password=s.gnuhealth_password,
        pseudonym_secret=pseudonym_secret(s),
        poll_interval=s.gnuhealth_poll_interval,
        var_dir=s.var_dir,
        item_code_kind=ItemCodeKind(s.gnuhealth_item_code_kind),
    )


def _build_gnuhealth(config: GnuHealthConfig, wiring: Wiring) -> Loop:
    return Loop("gnuhealth-poller", Poller(config, wiring.inbound).run)


LISTENERS: Registry[Wiring, Loop | None] = Registry("listener")
LISTENERS.register("mllp", Hl7Config, _mllp, _build_mllp)
LISTENERS.register("flatfile", SnapshotFolderConfig, _snapshot_folder, _build_snapshot_folder)
LISTENERS.register(
    "partner_folders", PartnerFoldersConfig, _partner_folders_config, _build_partner_folders
)
LISTENERS.register("gnuhealth", GnuHealthConfig, gnuhealth_config, _build_gnuhealth)


def listener_loops(settings: Settings, wiring: Wiring, *, mllp: bool = True) -> list[Loop]:
    """The loops of every listener the settings configure (``mllp=False``: all but MLLP)."""
    loops = []
    for registration, config in LISTENERS.configured(settings):
        if registration.name == "mllp" and not mllp:
            continue
        loop = registration.build(config, wiring)
        if loop is not None:
            loops.append(loop)
    return loops
