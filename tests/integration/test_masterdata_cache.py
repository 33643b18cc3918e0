"""The master-data cache: a reload on one thread does not hold up the periodic looks of the
others (they go on with the snapshot in hand); a fresh look gets the reloaded one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Connection, Engine

from medbridge.masterdata import cache as cache_module
from medbridge.masterdata.cache import MasterDataCache, MasterDataSnapshot, touch

pytestmark = pytest.mark.db


@dataclass
class HeldLoad:
    """Once ``armed``, a snapshot load sets ``started`` and waits for ``go``."""

    armed: bool = False
    started: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldLoad]:
    state = HeldLoad()
    real = MasterDataSnapshot.load

    def load(conn: Connection) -> MasterDataSnapshot:
        if state.armed:
            state.started.set()
            state.go.wait()
        return real(conn)

    monkeypatch.setattr(MasterDataSnapshot, "load", staticmethod(load))
    monkeypatch.setattr(cache_module, "_last_local_change", float("-inf"))
    yield state
    state.go.set()


def test_a_periodic_look_goes_on_while_another_thread_reloads(
    engine: Engine, held: HeldLoad
) -> None:
    now = [1_000_000.0]
    cache = MasterDataCache(engine, interval=1.0, settle=2.0, clock=lambda: now[0])
    first = cache.snapshot()
    with engine.begin() as conn:
        touch(conn)  # another process's write, as far as this cache can tell:
    cache_module._last_local_change = float("-inf")  # not within this process's settle
    now[0] += 5  # the interval passed: the next look checks the revision, and reloads
    held.armed = True
    loaded: list[MasterDataSnapshot] = []
    reloader = threading.Thread(target=lambda: loaded.append(cache.snapshot()))
    reloader.start()
    held.started.wait()
    # while that reload is held, a periodic look answers with the snapshot in hand (had it
    # waited for the reload, this test would hang until pytest-timeout failed it)
    assert cache.snapshot() is first
    held.go.set()
    reloader.join()
    [reloaded] = loaded
    assert reloaded.revision > first.revision
    assert cache.snapshot(fresh=True) is reloaded
