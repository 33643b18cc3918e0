"""A junk flood, run as its own process by the MLLP isolation test:
``python tests/junk_flood.py PORT CONNECTIONS SECONDS``.

Each connection sends random framed junk (MLLP start byte, random bytes without framing
bytes, end bytes) as fast as the server takes it, and reads whatever comes back. Prints the
number of frames sent when done: at the end of SECONDS, or at once on SIGTERM."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time

START, END = b"\x0b", b"\x1c\x0d"


def junk(rng: random.Random) -> bytes:
    body = rng.randbytes(rng.randint(20, 400)).replace(START, b"?").replace(b"\x1c", b"?")
    return START + body + END


async def flood(
    port: int, seconds: float, rng: random.Random, sent: list[int], stop: asyncio.Event
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    deadline = time.monotonic() + seconds

    async def drain_acks() -> None:
        while await reader.read(65536):
            pass

    reading = asyncio.create_task(drain_acks())
    try:
        while (left := deadline - time.monotonic()) > 0 and not stop.is_set():
            writer.write(b"".join(junk(rng) for _ in range(50)))
            sent[0] += 50
            await asyncio.wait_for(writer.drain(), left)
    except (OSError, TimeoutError):
        pass
    finally:
        reading.cancel()
        writer.close()


async def main(port: int, connections: int, seconds: float) -> None:
    rng = random.Random(1)
    sent = [0]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.gather(*(flood(port, seconds, rng, sent, stop) for _ in range(connections)))
    print(sent[0], flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
