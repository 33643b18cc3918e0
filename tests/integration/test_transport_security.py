"""Transport security (issue 15): HTTPS for the API, MLLP over TLS with client certificates,
and the MLLP source allowlist, with certificates of a test CA (trustme). The listener and the
HTTP server are started as the product starts them: the MLLP listener on its own (uvloop)
loop from the settings' config, the API under uvicorn with ``http_config``."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
import uvicorn
from sqlalchemy import func, select

from hl7_support import ack_code, map_hl7_sources, rds
from medbridge.app import MedBridge
from medbridge.connectors.hl7v2 import MllpClient, MllpListener, client_context
from medbridge.connectors.hl7v2.errors import FramingError
from medbridge.connectors.hl7v2.outbound import AsyncMllpClient
from medbridge.observability import metrics
from medbridge.runtime.listeners import hl7_config
from medbridge.runtime.processes import http_config
from medbridge.settings import Settings
from medbridge.store.tables import bus_events

pytestmark = pytest.mark.db

# What a refused client sees: the handshake fails (TLS 1.3 reports a refused client
# certificate on the first read), or the connection is reset or closed without an ACK.
REFUSED = (ssl.SSLError, ConnectionError, FramingError, TimeoutError)


@dataclass(frozen=True)
class Pki:
    """Files of a test PKI: the hospital's CA, MedBridge's server certificate, a cabinet's
    client certificate, and a client certificate of another CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client: Path  # key and certificate in one file
    stranger: Path  # issued by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    pki = Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client=folder / "cabinet.pem",
        stranger=folder / "stranger.pem",
    )
    ca.cert_pem.write_to_path(str(pki.ca))
    server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(pki.server_cert), append=True)
    server.private_key_pem.write_to_path(str(pki.server_key))
    ca.issue_cert("icu-cab-1.h1.example").private_key_and_cert_chain_pem.write_to_path(
        str(pki.client)
    )
    other_ca.issue_cert("icu-cab-1.h1.example").private_key_and_cert_chain_pem.write_to_path(
        str(pki.stranger)
    )
    return pki


def stored(mb: MedBridge) -> int:
    with mb.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(bus_events)).scalar_one())


def refused_sources() -> float:
    value: float = metrics.stage("mllp", "source_refused")._value.get()
    return value


def mllp_tls_settings(settings: Settings, pki: Pki, **more: object) -> Settings:
    return settings.model_copy(
        update={
            "mllp_tls_cert": pki.server_cert,
            "mllp_tls_key": pki.server_key,
            "mllp_tls_ca": pki.ca,
        }
        | more
    )


@contextmanager
def listening(mb: MedBridge, settings: Settings) -> Iterator[MllpListener]:
    """The MLLP listener the settings configure, on a free port, on its own loop and thread
    as ``medbridge run`` starts it."""
    map_hl7_sources(mb)
    listener = mb.mllp_listener(hl7_config(settings, port=0))
    listener.start_in_thread()
    try:
        yield listener
    finally:
        listener.stop_in_thread()


def refused(port: int, tls: ssl.SSLContext | None, control_id: str) -> None:
    """A sender on ``port`` gets no ACK for its message: it is refused."""
    with pytest.raises(REFUSED), MllpClient("127.0.0.1", port, tls=tls, timeout=10) as client:
        client.send(rds(control_id))


# --- MLLP over TLS ---------------------------------------------------------------------


def test_a_sender_with_a_certificate_of_the_ca_gets_its_ack(
    medbridge: MedBridge, settings: Settings, pki: Pki
) -> None:
    cabinet = client_context(ca_file=pki.ca, cert_file=pki.client)
    with (
        listening(medbridge, mllp_tls_settings(settings, pki)) as listener,
        MllpClient("127.0.0.1", listener.port, tls=cabinet, timeout=10) as client,
    ):
        assert ack_code(client.send(rds("TLS-1"))) == ("AA", "TLS-1")
        assert ack_code(client.send(rds("TLS-2"))) == ("AA", "TLS-2")
    assert stored(medbridge) == 2


def test_the_async_client_sends_over_tls_with_its_certificate(
    medbridge: MedBridge, settings: Settings, pki: Pki
) -> None:
    async def send(port: int) -> str:
        cabinet = client_context(ca_file=pki.ca, cert_file=pki.client)
        client = await AsyncMllpClient.connect("127.0.0.1", port, tls=cabinet)
        try:
            return await client.send(rds("ASYNC-TLS-1"))
        finally:
            await client.close()

    with listening(medbridge, mllp_tls_settings(settings, pki)) as listener:
        assert ack_code(asyncio.run(send(listener.port))) == ("AA", "ASYNC-TLS-1")
    assert stored(medbridge) == 1


@pytest.mark.parametrize("certificate", ["none", "another CA's"])
def test_a_sender_without_a_valid_certificate_is_refused(
    medbridge: MedBridge, settings: Settings, pki: Pki, certificate: str
) -> None:
    own = None if certificate == "none" else pki.stranger
    sender = client_context(ca_file=pki.ca, cert_file=own)
    with listening(medbridge, mllp_tls_settings(settings, pki)) as listener:
        refused(listener.port, sender, "NO-CERT-1")
        # the listener is still up for a valid sender
        cabinet = client_context(ca_file=pki.ca, cert_file=pki.client)
        with MllpClient("127.0.0.1", listener.port, tls=cabinet, timeout=10) as client:
            assert ack_code(client.send(rds("AFTER-1"))) == ("AA", "AFTER-1")
    assert stored(medbridge) == 1


def test_client_certificates_are_optional_when_the_settings_say_so(
    medbridge: MedBridge, settings: Settings, pki: Pki
) -> None:
    optional = mllp_tls_settings(settings, pki, mllp_tls_require_client_cert=False)
    with listening(medbridge, optional) as listener:
        anonymous = client_context(ca_file=pki.ca)
        with MllpClient("127.0.0.1", listener.port, tls=anonymous, timeout=10) as client:
            assert ack_code(client.send(rds("ANON-1"))) == ("AA", "ANON-1")
        stranger = client_context(ca_file=pki.ca, cert_file=pki.stranger)
        refused(listener.port, stranger, "STRANGER-1")
    assert stored(medbridge) == 1


def test_a_cleartext_sender_is_refused_by_a_tls_listener(
    medbridge: MedBridge, settings: Settings, pki: Pki
) -> None:
    with listening(medbridge, mllp_tls_settings(settings, pki)) as listener:
        refused(listener.port, None, "PLAIN-1")
    assert stored(medbridge) == 0


# --- the MLLP source allowlist -----------------------------------------------------------


def networks(*cidrs: str) -> list[object]:
    """Networks as ``Settings`` holds them (validated the way the environment's are)."""
    return list(Settings(mllp_allowed_sources=list(cidrs)).mllp_allowed_sources)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_a_source_outside_the_allowlist_is_refused_while_an_allowed_one_works(
    medbridge: MedBridge, settings: Settings, pki: Pki, tls: bool
) -> None:
    base = mllp_tls_settings(settings, pki) if tls else settings
    cabinet = client_context(ca_file=pki.ca, cert_file=pki.client) if tls else None

    elsewhere = base.model_copy(update={"mllp_allowed_sources": networks("10.0.0.0/8")})
    before = refused_sources()
    with listening(medbridge, elsewhere) as listener:
        refused(listener.port, cabinet, "OUTSIDE-1")
    assert refused_sources() == before + 1
    assert stored(medbridge) == 0

    here = base.model_copy(update={"mllp_allowed_sources": networks("10.0.0.0/8", "127.0.0.1/32")})
    with (
        listening(medbridge, here) as listener,
        MllpClient("127.0.0.1", listener.port, tls=cabinet, timeout=10) as client,
    ):
        assert ack_code(client.send(rds("INSIDE-1"))) == ("AA", "INSIDE-1")
    assert refused_sources() == before + 1
    assert stored(medbridge) == 1


# --- HTTPS -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(mb: MedBridge, settings: Settings) -> Iterator[int]:
    """The API under uvicorn on a free port, configured as ``run`` and ``api`` configure it."""
    port = free_port()
    config = http_config(settings.model_copy(update={"http_port": port}), mb.api())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def https_settings(settings: Settings, pki: Pki, **more: object) -> Settings:
    return settings.model_copy(
        update={"http_tls_cert": pki.server_cert, "http_tls_key": pki.server_key} | more
    )


def test_the_api_is_served_over_https_to_a_client_trusting_the_ca(
    medbridge: MedBridge, settings: Settings, pki: Pki
) -> None:
    with serving(medbridge, https_settings(settings, pki)) as port:
        trusting = ssl.create_default_context(cafile=str(pki.ca))
        answer = httpx.get(f"https://127.0.0.1:{port}/health", verify=trusting, timeout=10)
        assert answer.status_code == 200
        with pytest.raises(httpx.ConnectError):  # the system's CAs do not know the test CA
            httpx.get(f"https://127.0.0.1:{port}/health", timeout=10)
        with pytest.raises(httpx.TransportError):  # no cleartext on the HTTPS port
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)


def test_https_with_client_certificates_refuses_a_client_without_one(
    medbridge: MedBridge, settings: Settings, pki: Pki
) -> None:
    with serving(medbridge, https_settings(settings, pki, http_tls_ca=pki.ca)) as port:
        url = f"https://127.0.0.1:{port}/health"
        with_certificate = ssl.create_default_context(cafile=str(pki.ca))
        with_certificate.load_cert_chain(pki.client)
        assert httpx.get(url, verify=with_certificate, timeout=10).status_code == 200
        for own in (None, pki.stranger):
            context = ssl.create_default_context(cafile=str(pki.ca))
            if own is not None:
                context.load_cert_chain(own)
            with pytest.raises(httpx.TransportError):
                httpx.get(url, verify=context, timeout=10)
