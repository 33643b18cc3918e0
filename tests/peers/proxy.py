"""A small HTTP/1.1 proxy between an adapter and a peer, for the tests that must see (or
spoil) what travels: it forwards each request to ``upstream`` and writes the answer back.

Subclass ``Proxy`` to look at requests (``on_request``, with the moment the request line
arrived) or to drop an answer (``should_drop``: the peer has applied the call, then the
client's connection is shut without a byte). ``running(proxy)`` serves it on a free port.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx


@dataclass
class Proxy:
    """Forwards HTTP/1.1 requests to ``upstream``; ``forwarded`` lists the paths answered."""

    upstream: str
    forwarded: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_request(self, arrived: float, body: bytes) -> None:
        """A request (its body) whose request line arrived at ``arrived`` (monotonic)."""

    def should_drop(self, body: bytes) -> bool:
        """After the upstream answered: True to drop the answer and close the connection."""
        return False


ProxyT = TypeVar("ProxyT", bound=Proxy)


def _handler(proxy: Proxy) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            with httpx.Client(base_url=proxy.upstream, timeout=60) as upstream:
                while self._one(upstream):
                    pass

        def _one(self, upstream: httpx.Client) -> bool:
            request_line = self.rfile.readline()
            arrived = time.monotonic()
            if not request_line.strip():
                return False
            verb, path, _ = request_line.decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (line := self.rfile.readline().decode()) not in ("\r\n", "\n", ""):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            proxy.on_request(arrived, body)
            forward = {k: v for k, v in headers.items() if k in ("authorization", "content-type")}
            answer = upstream.request(verb, path, content=body, headers=forward)
            if proxy.should_drop(body):
                # the peer has applied and committed the call; its answer never arrives
                self.connection.shutdown(socket.SHUT_RDWR)
                return False
            proxy.forwarded.append(path)
            head = (
                f"HTTP/1.1 {answer.status_code} {answer.reason_phrase}\r\n"
                f"Content-Type: {answer.headers.get('content-type', 'application/json')}\r\n"
                f"Content-Length: {len(answer.content)}\r\n\r\n"
            )
            self.wfile.write(head.encode() + answer.content)
            self.wfile.flush()
            return True

    return Handler


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def running(proxy: ProxyT) -> Iterator[tuple[ProxyT, str]]:
    """Serve ``proxy`` on 127.0.0.1 (a free port): ``(proxy, its base URL)``."""
    server = _Server(("127.0.0.1", 0), _handler(proxy))
    thread = threading.Thread(target=server.serve_forever, name="peer-proxy", daemon=True)
    thread.start()
    try:
        yield proxy, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
