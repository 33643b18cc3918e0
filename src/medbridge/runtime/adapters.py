"""The adapters the settings choose: the bus (NATS JetStream when ``bus_url`` is set, else the
embedded SQL log) and the ERP (Tryton when ``erp_url`` is set). nats-py is imported only when
JetStream is chosen.

``ErpSlot`` is where the ERP's configuration lives while the process runs: the configured
one, or one attached later (the demo's Tryton once its database is built). Everything that
talks to the ERP asks the slot, so nothing rewrites the settings at run time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import Engine

from medbridge.bus.dead_letters import SqlDeadLetterStore
from medbridge.bus.port import Bus
from medbridge.bus.sql import SqlBus
from medbridge.canonical.erp import ErpPort
from medbridge.connectors.tryton.config import TrytonConfig, TrytonSeries
from medbridge.connectors.tryton.outbound import TrytonErp
from medbridge.domain.erp_routing import DEFAULT_DESTINATION, ErpDomain
from medbridge.runtime.policies import erp_destinations
from medbridge.runtime.registry import Registry
from medbridge.settings import Settings


@dataclass(frozen=True)
class SqlLogConfig:
    partitions: int


@dataclass(frozen=True)
class JetStreamSettings:
    """``JetStreamConfig``'s fields as the settings give them (``bus.jetstream`` imports
    nats-py, so its own config class is imported only when this bus is built)."""

    url: str
    stream: str
    subject_prefix: str
    partitions: int
    duplicate_window: float
    ack_wait: float


def _sql_log(settings: Settings) -> SqlLogConfig:
    return SqlLogConfig(partitions=settings.bus_partitions)


def _jetstream(settings: Settings) -> JetStreamSettings | None:
    if not settings.bus_url:
        return None
    return JetStreamSettings(
        url=settings.bus_url,
        stream=settings.bus_stream,
        subject_prefix=settings.bus_subject_prefix,
        partitions=settings.bus_partitions,
        duplicate_window=settings.bus_duplicate_window,
        ack_wait=settings.bus_ack_wait,
    )


def _build_sql_log(config: SqlLogConfig, engine: Engine) -> Bus:
    return SqlBus(engine, partitions=config.partitions)


def _build_jetstream(config: JetStreamSettings, engine: Engine) -> Bus:
    from medbridge.bus.jetstream import JetStreamBus, JetStreamConfig

    return JetStreamBus(JetStreamConfig(**asdict(config)), SqlDeadLetterStore(engine))


BUSES: Registry[Engine, Bus] = Registry("bus")
"""Buses, most specific first: the first the settings configure is the one."""
BUSES.register("nats", JetStreamSettings, _jetstream, _build_jetstream)
BUSES.register("sql", SqlLogConfig, _sql_log, _build_sql_log)


def bus_from_settings(settings: Settings, engine: Engine) -> Bus:
    """The configured bus; dead letters go to ``engine``'s database with either adapter.
    Raises ``BusUnavailable`` if the NATS server does not answer."""
    registration, config = next(BUSES.configured(settings))
    return registration.build(config, engine)


def tryton_config(settings: Settings) -> TrytonConfig | None:
    if not settings.erp_url:
        return None
    if not settings.erp_database or settings.erp_password is None:
        raise ValueError("MEDBRIDGE_ERP_URL needs _DATABASE and _PASSWORD too")
    return TrytonConfig(
        url=settings.erp_url,
        database=settings.erp_database,
        user=settings.erp_user,
        password=settings.erp_password,
        series=TrytonSeries(settings.erp_series),
    )


def _build_tryton(config: TrytonConfig, _: None) -> ErpPort:
    return TrytonErp(config)


ERPS: Registry[None, ErpPort] = Registry("ERP")
ERPS.register("tryton", TrytonConfig, tryton_config, _build_tryton)


class ErpSlot:
    """One ERP destination of this process (``name``, an adapter of registry ``kind``): its
    config (None: no ERP), attachable once known. ``build()`` makes a new adapter each call
    (adapters are not thread-safe)."""

    def __init__(
        self,
        config: TrytonConfig | None,
        kind: str = "tryton",
        name: str = DEFAULT_DESTINATION,
    ) -> None:
        self.kind, self.name = kind, name
        self._config = config
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[TrytonConfig], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> ErpSlot:
        return cls(tryton_config(settings))

    @property
    def config(self) -> TrytonConfig | None:
        return self._config

    def subscribe(self, on_attach: Callable[[TrytonConfig], None]) -> None:
        """Call ``on_attach`` whenever an ERP is attached (the API refreshes its services)."""
        self._subscribers.append(on_attach)

    def attach(self, config: TrytonConfig) -> None:
        with self._lock:
            self._config = config
            subscribers = list(self._subscribers)
        for on_attach in subscribers:
            on_attach(config)

    def build(self) -> ErpPort | None:
        config = self._config
        return None if config is None else ERPS[self.kind].build(config, None)


def erp_slots(settings: Settings) -> dict[str, ErpSlot]:
    """A slot per ERP destination (``policies.erp_destinations``), by name."""
    slots: dict[str, ErpSlot] = {}
    for name, d in erp_destinations(settings).items():
        config = None
        if d.url:
            if not d.database or d.password is None:
                raise ValueError(f"ERP {name}: a url needs its database and password too")
            config = TrytonConfig(
                url=d.url,
                database=d.database,
                user=d.user,
                password=d.password,
                series=TrytonSeries(d.series),
            )
        slots[name] = ErpSlot(config, name=name)
    return slots


def primary_destination(settings: Settings) -> str:
    """The destination of this process's one-ERP uses (the demo's ERP, ``erp sync``): the
    GL's system of record for every facility, else the first."""
    names = list(erp_destinations(settings))
    gl = settings.erp_routes.get(ErpDomain.GL)
    return gl.record if gl is not None else names[0]


class SerializedErp:
    """One adapter shared by API requests, one call at a time (adapters are not thread-safe)."""

    def __init__(self, erp: ErpPort) -> None:
        self._erp, self._lock = erp, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._erp, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


def serialized(erp: ErpPort | None) -> ErpPort | None:
    return None if erp is None else cast(ErpPort, SerializedErp(erp))
