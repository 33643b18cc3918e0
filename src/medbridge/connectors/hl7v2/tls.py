"""TLS for MLLP: the listener's context (with client certificates when a CA is configured),
a client's context (the CA it trusts, its own certificate), and the source allowlist.

The contexts are the standard library's secure defaults (``ssl.PROTOCOL_TLS_SERVER`` /
``PROTOCOL_TLS_CLIENT``: TLS 1.2 or later, the host name checked by a client); MedBridge adds
only what the configuration names."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from medbridge.connectors.hl7v2.config import MllpTls


def server_context(tls: MllpTls) -> ssl.SSLContext:
    """The listener's context: its certificate; with ``ca_file`` senders' certificates are
    verified against that CA, and required unless ``require_client_cert`` is false."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file is not None:
        context.load_verify_locations(cafile=tls.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_context(
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """A sending side's context: trusts ``ca_file`` (unset: the system's CAs) and presents
    ``cert_file`` (with ``key_file``, unset: in ``cert_file``) when the listener asks."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


def _address(peername: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return None
    try:
        address = ipaddress.ip_address(peername[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def bound_client(
    peername: object, bindings: Iterable[tuple[IPv4Network | IPv6Network, str]]
) -> str | None:
    """The client a peer address is bound to: the most specific network containing it."""
    address = _address(peername)
    if address is None:
        return None
    found = [(network.prefixlen, client) for network, client in bindings if address in network]
    return max(found)[1] if found else None


def source_allowed(peername: object, allowed: Iterable[IPv4Network | IPv6Network]) -> bool:
    """Whether a connection's peer address (``get_extra_info("peername")``) is in one of the
    ``allowed`` networks. An IPv4 sender reaching a dual-stack listener (``::ffff:a.b.c.d``)
    is matched by its IPv4 address; a peer without an IP address is not allowed."""
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return False
    try:
        address = ipaddress.ip_address(peername[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed)
