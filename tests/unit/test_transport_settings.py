"""Transport security settings (issue 15): how the settings become the MLLP listener's TLS
and allowlist and uvicorn's HTTPS options, and which sources the allowlist admits."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
import trustme
from fastapi import FastAPI
from pydantic import ValidationError

from medbridge.connectors.hl7v2 import MllpTls
from medbridge.connectors.hl7v2.tls import server_context, source_allowed
from medbridge.runtime.listeners import hl7_config
from medbridge.runtime.processes import http_config
from medbridge.settings import Settings

NETWORKS = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peername", "allowed"),
    [
        (("10.1.2.3", 51000), True),
        (("192.168.1.1", 51000), False),
        (("::ffff:10.1.2.3", 51000, 0, 0), True),  # IPv4 sender on a dual-stack listener
        (("::ffff:192.168.1.1", 51000, 0, 0), False),
        (("fd12::1", 51000, 0, 0), True),
        (("fe80::1%eth0", 51000, 0, 2), False),
        ("/run/medbridge/mllp.sock", False),  # no IP address: not admitted
        (None, False),
        (("not-an-address", 1), False),
    ],
)
def test_the_allowlist_admits_only_its_networks(peername: object, allowed: bool) -> None:
    assert source_allowed(peername, NETWORKS) is allowed


def test_transport_security_is_off_by_default(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    config = hl7_config(settings)
    assert config.tls is None
    assert config.allowed_sources == ()
    assert not http_config(settings, FastAPI()).is_ssl


def test_the_allowlist_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDBRIDGE_MLLP_ALLOWED_SOURCES", '["10.20.0.0/16", "fd00::/8"]')
    assert [str(n) for n in Settings().mllp_allowed_sources] == ["10.20.0.0/16", "fd00::/8"]
    monkeypatch.setenv("MEDBRIDGE_MLLP_ALLOWED_SOURCES", '["10.20.0.1/16"]')  # host bits set
    with pytest.raises(ValidationError, match="mllp_allowed_sources"):
        Settings()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("mllp_tls_key", "mllp_tls_key needs mllp_tls_cert"),
        ("mllp_tls_ca", "mllp_tls_ca needs mllp_tls_cert"),
        ("http_tls_key", "http_tls_key needs http_tls_cert"),
        ("http_tls_ca", "http_tls_ca needs http_tls_cert"),
    ],
)
def test_tls_without_a_certificate_is_refused_at_start(
    tmp_path: Path, setting: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{setting: tmp_path / "some.pem"})


def test_the_settings_become_the_listener_tls_and_allowlist(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path,
        mllp_tls_cert=tmp_path / "mllp.pem",
        mllp_tls_key=tmp_path / "mllp.key",
        mllp_tls_ca=tmp_path / "ca.pem",
        mllp_tls_require_client_cert=False,
        mllp_tls_handshake_timeout=3.0,
        mllp_allowed_sources=["10.0.0.0/8", "127.0.0.1/32"],
    )
    config = hl7_config(settings)
    assert config.tls == MllpTls(
        cert_file=tmp_path / "mllp.pem",
        key_file=tmp_path / "mllp.key",
        ca_file=tmp_path / "ca.pem",
        require_client_cert=False,
        handshake_timeout=3.0,
    )
    assert [str(n) for n in config.allowed_sources] == ["10.0.0.0/8", "127.0.0.1/32"]


@pytest.mark.parametrize(
    ("ca", "require", "expected"),
    [
        (False, True, ssl.CERT_NONE),
        (True, True, ssl.CERT_REQUIRED),
        (True, False, ssl.CERT_OPTIONAL),
    ],
)
def test_a_ca_asks_for_client_certificates(
    tmp_path: Path, ca: bool, require: bool, expected: ssl.VerifyMode
) -> None:
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf = authority.issue_cert("localhost")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    files = {"cert": tmp_path / "server.pem", "ca": tmp_path / "ca.pem" if ca else None}

    mllp = server_context(
        MllpTls(cert_file=files["cert"], ca_file=files["ca"], require_client_cert=require)
    )
    assert mllp.verify_mode == expected
    assert mllp.minimum_version >= ssl.TLSVersion.TLSv1_2

    settings = Settings(
        var_dir=tmp_path,
        http_tls_cert=files["cert"],
        http_tls_ca=files["ca"],
        http_tls_require_client_cert=require,
    )
    http = http_config(settings, FastAPI())
    http.load()
    assert http.is_ssl
    assert http.ssl is not None
    assert http.ssl.verify_mode == expected
