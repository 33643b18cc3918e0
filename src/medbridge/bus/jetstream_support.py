"""What the JetStream bus needs around nats-py: a private asyncio loop on a background thread
(the Bus port is synchronous and called from many threads), the translation of nats errors
into bus errors at the boundary, and the partition leases.

A lease (one key ``<group>.<partition>`` in the KV bucket ``<stream>_leases``, value = the
holder's id) says which process holds a group's uncommitted messages of a partition; it is
what keeps per-key order when several processes share a group. It is taken when a fetch finds
work, renewed in the background while held, and given back when everything fetched is
committed. A holder that dies stops renewing: the key expires (the bucket's TTL, twice the ack
wait) after JetStream has already made the dead holder's messages redeliverable (the ack
wait), so the next holder receives them first, in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from medbridge.bus.port import BusError, BusUnavailable
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# nats errors that mean "the server could not be reached or did not answer in time".
_TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    asyncio.TimeoutError,
    concurrent.futures.TimeoutError,
    ConnectionError,
    OSError,
)


class EventLoopThread:
    """One asyncio loop on a daemon thread; ``run`` executes a coroutine there and returns its
    result to the calling thread, with nats errors translated."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as error:
            future.cancel()
            raise BusUnavailable(f"NATS did not answer within {timeout}s") from error
        except BusError:
            raise
        except _TRANSIENT as error:
            raise BusUnavailable(f"NATS unavailable: {type(error).__name__}: {error}") from error
        except nats.errors.Error as error:
            raise BusError(f"NATS refused: {type(error).__name__}: {error}") from error

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Leases:
    """The partition leases of one bus instance (see the module docstring). Runs on the bus's
    loop only."""

    def __init__(self, kv: KeyValue, holder: str, renew_every: float) -> None:
        self.kv, self.holder, self.renew_every = kv, holder, renew_every
        self.revisions: dict[str, int] = {}
        self.lost: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def key(group: str, partition: int) -> str:
        return f"{group}.{partition}"

    async def acquire(self, key: str) -> bool:
        if key in self.revisions:
            return True
        try:
            self.revisions[key] = await self.kv.create(key, self.holder.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return False  # another process holds it
        self.lost.discard(key)
        self._start()
        return True

    async def release(self, key: str) -> None:
        revision = self.revisions.pop(key, None)
        if revision is not None:
            await self.kv.delete(key, last=revision)

    async def release_all(self) -> None:
        for key in list(self.revisions):
            await self.release(key)
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            for key, revision in list(self.revisions.items()):
                try:
                    self.revisions[key] = await self.kv.update(
                        key, self.holder.encode(), last=revision
                    )
                except nats.js.errors.KeyWrongLastSequenceError:
                    # Expired and taken by another process: our uncommitted messages are its now.
                    self.revisions.pop(key, None)
                    self.lost.add(key)
                    log.warning("bus.lease_lost", lease=key, holder=self.holder)
                except Exception as error:  # the next round tries again; expiry is the backstop
                    log.warning("bus.lease_renewal_failed", lease=key, error=str(error))
