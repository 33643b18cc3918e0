"""An MLLP client: sends HL7 messages and returns their acknowledgements (the demo's
dispensing cabinet, the tests and the benchmark use it; so can any outbound feed)."""

from __future__ import annotations

import asyncio
import socket
import ssl

from medbridge.connectors.hl7v2.errors import FramingError

START, END = b"\x0b", b"\x1c\x0d"


def frame(message: str | bytes) -> bytes:
    data = message.encode("utf-8") if isinstance(message, str) else message
    return START + data + END


class MllpClient:
    """A blocking client on one connection (messages go one at a time, ACK before next);
    over TLS with ``tls`` (``hl7v2.tls.client_context``: the CA to trust, the client certificate
    to present). A refused handshake raises ``ssl.SSLError`` (an ``OSError``)."""

    def __init__(
        self, host: str, port: int, *, timeout: float = 30.0, tls: ssl.SSLContext | None = None
    ) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock: socket.socket = tls.wrap_socket(raw, server_hostname=host) if tls else raw
        self._buffer = bytearray()

    def send(self, message: str | bytes) -> str:
        self.sock.sendall(frame(message))
        return self.receive()

    def receive(self) -> str:
        while END not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise FramingError("connection closed before the acknowledgement")
            self._buffer += chunk
        end = self._buffer.index(END)
        start = self._buffer.find(START)
        if start == -1 or start > end:
            raise FramingError("acknowledgement without an MLLP start block")
        ack = bytes(self._buffer[start + 1 : end])
        del self._buffer[: end + len(END)]
        return ack.decode("utf-8", errors="replace")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncMllpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(
        cls, host: str, port: int, *, tls: ssl.SSLContext | None = None
    ) -> AsyncMllpClient:
        """Connect, over TLS with ``tls`` (``hl7v2.tls.client_context``: the CA to trust, the
        client certificate to present)."""
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        return cls(reader, writer)

    async def send(self, message: str | bytes) -> str:
        self.writer.write(frame(message))
        await self.writer.drain()
        data = await self.reader.readuntil(END)
        start = data.find(START)
        return data[start + 1 : -len(END)].decode("utf-8", errors="replace")

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
