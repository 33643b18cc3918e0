"""What ``medbridge run --demo`` adds to a process: the simulated suppliers (trading partners
like any other, answering through MedBridge's own exchanges), the dispense traffic, the
automated cabinets speaking HL7 over MLLP, and the demo's real Tryton ERP, attached once
its database is built.

The runtime asks for ``loops()`` (named loops it supervises like its own) and, when no ERP
is configured, ``DemoErpLoop`` with two callbacks: ``attach`` (the ERP's config, handed to
the process's ERP slot) and ``post`` (the posting loop then run against it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

from pydantic import SecretStr
from sqlalchemy import Engine

from medbridge.canonical.partners import TradingPartner
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.demo.cabinets import DemoCabinets
from medbridge.demo.erp import DemoErp
from medbridge.demo.erp import connection as erp_connection
from medbridge.demo.procurement import DemoProcurement, demo_partners
from medbridge.demo.traffic import DemoTraffic
from medbridge.flows.intake import MovementIntake
from medbridge.flows.trade import Answer, SupplierChannel
from medbridge.observability.logging import get_logger
from medbridge.settings import Settings

log = get_logger(__name__)

NamedLoop = tuple[str, Callable[[threading.Event], None]]


def running_demo_erp(settings: Settings) -> TrytonConfig | None:
    """The ERP of a demo running beside these settings (``medbridge run --demo`` started it
    on a port of its own), for the CLI's ``erp`` commands; None if none runs."""
    found = erp_connection(settings.var_dir)
    if found is None:
        return None
    return TrytonConfig(
        url=found["url"],
        database=found["database"],
        user=found["user"],
        password=SecretStr(found["password"]),
    )


DEMO_GL_SUMMARY = {
    "erp_summary_period": "minute",
    "erp_summary_grace": 10.0,
    "erp_summary_interval": 5.0,
}
"""The demo's summarised GL posting: one move per facility and MINUTE, closed 10 s after
the minute ends, looked at every 5 s, so the dispenses' summaries reach the demo's Tryton
while one watches (the hour and 300 s grace of production would keep them for up to 65
minutes). Receipts and every other entry post per event, as always."""


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with the demo's GL summary timing (``DEMO_GL_SUMMARY``) where they leave
    it unset; whatever was set (environment, config file) stays. Named ``erps`` keep their
    own ``summary_*``."""
    unset = {k: v for k, v in DEMO_GL_SUMMARY.items() if k not in settings.model_fields_set}
    return settings.model_copy(update=unset)


def with_demo_partners(partners: dict[str, TradingPartner]) -> dict[str, TradingPartner]:
    """The demo's simulated suppliers join the configured partners (configured ones win)."""
    return {**demo_partners(), **partners}


class DemoWiring:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        intake: MovementIntake,
        deliver: Callable[[str, bytes], Answer],
    ) -> None:
        """``deliver``: how the simulated suppliers' answers reach MedBridge's exchanges."""
        self.settings, self.engine, self.intake = settings, engine, intake
        self.suppliers = DemoProcurement(engine, settings.own_identity, deliver)

    def channel(self, partner: TradingPartner) -> SupplierChannel:
        """How the workflows' orders reach a simulated supplier."""
        return self.suppliers.channel(partner)

    def loops(self) -> list[NamedLoop]:
        s = self.settings
        ordering = not s.workflows_enabled  # else replenishment orders from the suppliers
        traffic = DemoTraffic(self.intake, s.demo_dispenses_per_second, restock=ordering)
        loops: list[NamedLoop] = [
            ("demo-traffic", traffic.run),
            ("demo-procurement", partial(self.suppliers.run, ordering=ordering)),
        ]
        if s.mllp_enabled:
            cabinets = DemoCabinets(
                self.engine,
                s.mllp_host,
                s.mllp_port,
                rate=max(0.2, s.demo_dispenses_per_second / 4),
            )
            loops.append(("demo-cabinets", cabinets.run))
        return loops


class DemoErpLoop:
    """The demo's real Tryton: wait for the peer to be built, start it, ``attach`` its
    config, then ``post`` to it until the process stops (and stop the server then). A
    peer that cannot start is logged and the loop ends: the demo runs without an ERP."""

    def __init__(
        self,
        settings: Settings,
        attach: Callable[[TrytonConfig], None],
        post: Callable[[threading.Event], None],
    ) -> None:
        self.var_dir, self.attach, self.post = settings.var_dir, attach, post

    def run(self, stop: threading.Event) -> None:
        demo = DemoErp(self.var_dir)
        try:
            server = demo.wait_and_start(stop)
        except (OSError, RuntimeError, ValueError) as error:
            demo.stop()  # a server that started but did not answer (or was stopped meanwhile)
            if not stop.is_set():
                log.error("demo.erp_unavailable", error=str(error))
            return
        if server is None:
            return
        try:
            self.attach(
                TrytonConfig(
                    url=server.url,
                    database=server.database,
                    user=server.user,
                    password=SecretStr(server.password),
                )
            )
            self.post(stop)
        finally:
            demo.stop()
