"""The composition root's parts: the registry and the supervisor of background loops."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from medbridge.runtime.adapters import BUSES, ERPS, JetStreamSettings, SqlLogConfig
from medbridge.runtime.listeners import LISTENERS
from medbridge.runtime.registry import Registry
from medbridge.runtime.supervisor import Loop, Supervisor
from medbridge.settings import Settings


@dataclass(frozen=True)
class Greeting:
    word: str


def test_the_settings_choose_among_registered_components() -> None:
    registry: Registry[str, str] = Registry("greeter")
    registry.register(
        "loud",
        Greeting,
        lambda s: Greeting("HELLO") if s.demo else None,
        lambda config, name: f"{config.word} {name}",
    )
    registry.register("quiet", Greeting, lambda s: Greeting("hi"), lambda c, n: f"{c.word} {n}")
    chosen = [(r.name, r.build(c, "ana")) for r, c in registry.configured(Settings(demo=True))]
    assert chosen == [("loud", "HELLO ana"), ("quiet", "hi ana")]
    assert [r.name for r, _ in registry.configured(Settings(demo=False))] == ["quiet"]
    with pytest.raises(ValueError, match="registered already"):
        registry.register("loud", Greeting, lambda s: None, lambda c, n: n)
    with pytest.raises(KeyError, match=r"known: loud, quiet"):
        registry["shy"]
    with pytest.raises(TypeError, match="takes a Greeting"):
        registry["loud"].build("not a greeting", "ana")


def test_the_bus_and_listeners_registered_and_chosen_by_settings() -> None:
    assert BUSES.names() == ["nats", "sql"]
    assert ERPS.names() == ["tryton"]
    assert LISTENERS.names() == ["mllp", "flatfile", "partner_folders", "gnuhealth"]
    embedded = [(r.name, c) for r, c in BUSES.configured(Settings(bus_partitions=4))]
    assert embedded == [("sql", SqlLogConfig(partitions=4))]
    scaled = next(BUSES.configured(Settings(bus_url="nats://n:4222", bus_ack_wait=2)))
    assert scaled[0].name == "nats"
    assert isinstance(scaled[1], JetStreamSettings)
    assert scaled[1].ack_wait == 2
    assert ERPS["tryton"].configure(Settings()) is None
    with pytest.raises(ValueError, match="_DATABASE and _PASSWORD"):
        ERPS["tryton"].configure(Settings(erp_url="http://erp:8000/"))


def test_a_crashed_loop_is_restarted_with_backoff_and_stop_ends_it() -> None:
    runs: list[int] = []
    steady = threading.Event()

    def flaky(stop: threading.Event) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        steady.set()
        stop.wait()

    stopped: list[str] = []
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=0.02)
    supervisor.on_stop("first", lambda: stopped.append("first"))
    supervisor.on_stop("second", lambda: stopped.append("second"))
    supervisor.start(Loop("flaky", flaky))
    assert steady.wait(5)
    assert supervisor.crashes == {"flaky": 2}
    assert [t.name for t in threading.enumerate() if t.name == "flaky"] == ["flaky"]
    supervisor.stop(timeout=5)
    assert not [t for t in threading.enumerate() if t.name == "flaky"]
    assert stopped == ["second", "first"]  # reverse order of registration


def test_a_loop_that_finishes_is_not_restarted_and_a_failed_prepare_fails_the_start() -> None:
    runs: list[int] = []
    supervisor = Supervisor(initial_backoff=0.01)
    supervisor.start(Loop("once", lambda stop: runs.append(1)))

    def refuse() -> None:
        raise OSError("address in use")

    with pytest.raises(OSError, match="in use"):
        supervisor.start(Loop("bound", lambda stop: None, prepare=refuse))
    with pytest.raises(ValueError, match="runs already"):
        supervisor.start(Loop("once", lambda stop: None))
    supervisor.stop(timeout=5)
    assert runs == [1]
    assert supervisor.crashes == {"once": 0}
