"""The supervisor: every background loop of a process as a named thread, one stop event.

What it promises:

- A loop is a named callable taking the stop event (``Loop``); it runs in a daemon thread of
  that name (logs and ``py-spy`` show ``consumer-ledger``, not ``Thread-7``).
- A loop that raises is logged with its traceback and started again after a backoff
  (``initial_backoff`` doubling up to ``max_backoff``; the backoff starts over once a run
  lasted ``healthy_after`` seconds). Nothing is swallowed: every crash is logged and counted.
- A loop that returns while the process runs has finished its job (the demo ERP that never
  got built): it is logged and not started again.
- ``stop()`` sets the one stop event, waits for every thread (``timeout`` each), then runs
  the ``on_stop`` callbacks in reverse order of registration (a listener closed after the
  loops that feed on it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from medbridge.observability.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Loop:
    """A background loop: ``run(stop)`` returns once ``stop`` is set."""

    name: str
    run: Callable[[threading.Event], None]
    prepare: Callable[[], None] | None = None
    """Called by ``Supervisor.start`` before the thread starts; what it raises fails the
    start (a listener that cannot bind its port), it is not retried."""


class Supervisor:
    def __init__(
        self,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stop_event = threading.Event()
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.healthy_after, self._clock = healthy_after, clock
        self._threads: dict[str, threading.Thread] = {}
        self._on_stop: list[tuple[str, Callable[[], None]]] = []
        self.crashes: dict[str, int] = {}
        """Crashes per loop since the start (for tests and the logs)."""

    @property
    def names(self) -> list[str]:
        return list(self._threads)

    def start(self, loop: Loop) -> None:
        if loop.name in self._threads:
            raise ValueError(f"a loop named {loop.name!r} runs already")
        if loop.prepare is not None:
            loop.prepare()
        thread = threading.Thread(target=self._supervise, args=(loop,), name=loop.name, daemon=True)
        self._threads[loop.name] = thread
        self.crashes.setdefault(loop.name, 0)
        thread.start()

    def on_stop(self, name: str, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the supervisor stops, after every loop has ended."""
        self._on_stop.append((name, callback))

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        for name, thread in self._threads.items():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("supervisor.loop_did_not_stop", loop=name, timeout=timeout)
        self._threads.clear()
        while self._on_stop:
            name, callback = self._on_stop.pop()
            try:
                callback()
            except Exception:  # stopping the others matters more: logged, not raised
                log.exception("supervisor.stop_failed", component=name)

    def _supervise(self, loop: Loop) -> None:
        stop, backoff = self.stop_event, self.initial_backoff
        while not stop.is_set():
            started = self._clock()
            try:
                loop.run(stop)
            except Exception:
                self.crashes[loop.name] += 1
                if self._clock() - started >= self.healthy_after:
                    backoff = self.initial_backoff
                log.exception(
                    "supervisor.loop_crashed",
                    loop=loop.name,
                    crashes=self.crashes[loop.name],
                    restart_in=backoff,
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if not stop.is_set():
                log.info("supervisor.loop_finished", loop=loop.name)
            return
