"""OAuth2 client credentials (``POST /oauth/token``), bearer tokens (MedBridge's own and an
external issuer's, through its JWKS served by a real HTTP server here), and per-client rate
limits (issue 15, "Done when" 2 and 3)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from medbridge.app import MedBridge
from medbridge.governance.permissions import Role
from medbridge.runtime.var_secrets import oauth_signing_key
from medbridge.settings import Settings

pytestmark = pytest.mark.db

AUDIENCE = "medbridge-api"


@pytest.fixture
def api(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as client:
        yield client


def token(api: TestClient, name: str, secret: str, **form: str) -> Any:
    return api.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": name, "client_secret": secret}
        | form,
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_a_token_from_the_token_endpoint_works(medbridge: MedBridge, api: TestClient) -> None:
    secret = medbridge.clients.register("analytics", Role.READER)
    answer = token(api, "analytics", secret)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == medbridge.settings.oauth_token_lifetime
    assert "stock:read" in body["scope"].split()
    assert api.get("/v1/stock", headers=bearer(body["access_token"])).status_code == 200
    # a reader's token grants what a reader may: no more
    refused = api.post("/v1/stock-movements", json={}, headers=bearer(body["access_token"]))
    assert refused.status_code == 403


def test_http_basic_client_authentication_and_a_narrowed_scope(
    medbridge: MedBridge, api: TestClient
) -> None:
    secret = medbridge.clients.register("cabinets", Role.INTEGRATION)
    basic = base64.b64encode(f"cabinets:{secret}".encode()).decode()
    answer = api.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "stock:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 200
    narrowed = answer.json()["access_token"]
    assert answer.json()["scope"] == "stock:read"
    assert api.get("/v1/stock", headers=bearer(narrowed)).status_code == 200
    assert api.get("/v1/journal-entries", headers=bearer(narrowed)).status_code == 403
    beyond = token(api, "cabinets", secret, scope="stock:read audit:read")
    assert beyond.status_code == 400
    assert beyond.json()["error"] == "invalid_scope"


def test_the_token_endpoint_refuses_what_rfc_6749_says(
    medbridge: MedBridge, api: TestClient
) -> None:
    secret = medbridge.clients.register("analytics", Role.READER)
    unknown, wrong = token(api, "nobody", secret), token(api, "analytics", "wrong-secret")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()  # the same answer: it reveals no client names
    assert unknown.json()["error"] == "invalid_client"
    grant = api.post(
        "/oauth/token",
        data={"grant_type": "password", "client_id": "analytics", "client_secret": secret},
    )
    assert grant.status_code == 400
    assert grant.json()["error"] == "unsupported_grant_type"
    medbridge.clients.revoke("analytics")
    assert token(api, "analytics", secret).status_code == 401


def claims(medbridge: MedBridge, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": medbridge.settings.oauth_issuer,
        "aud": AUDIENCE,
        "sub": "analytics",
        "iat": now,
        "exp": now + 60,
        "scope": "stock:read",
    } | overrides


def test_expired_forged_and_wrong_audience_tokens_get_401(
    medbridge: MedBridge, api: TestClient
) -> None:
    key = oauth_signing_key(medbridge.settings)
    good = jwt.encode(claims(medbridge), key, algorithm="HS256")
    assert api.get("/v1/stock", headers=bearer(good)).status_code == 200
    now = int(time.time())
    cases = {
        "expired": jwt.encode(claims(medbridge, iat=now - 600, exp=now - 300), key, "HS256"),
        "forged": jwt.encode(claims(medbridge), "another-key-" + "x" * 40, "HS256"),
        "audience": jwt.encode(claims(medbridge, aud="someone-else"), key, "HS256"),
        "issuer": jwt.encode(claims(medbridge, iss="someone-else"), key, "HS256"),
        "unsigned": jwt.encode(claims(medbridge), None, "none"),
    }
    for case, value in cases.items():
        answer = api.get("/v1/stock", headers=bearer(value))
        assert answer.status_code == 401, case
        assert "Bearer" in answer.headers["www-authenticate"]
    assert "expired" in api.get("/v1/stock", headers=bearer(cases["expired"])).json()["detail"]


def dispense(key: str, location: str) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "kind": "dispense",
        "item": "VANCO-1G",
        "location": location,
        "quantity": "1",
        "unit": "VIAL",
        "occurred_at": "2026-11-20T09:30:00+00:00",
    }


# --- an external identity provider -------------------------------------------------------


class Jwks(BaseHTTPRequestHandler):
    document: bytes = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def identity_provider() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    """A JWKS endpoint on a free port with one RSA key (kid ``idp-1``)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    handler = type(
        "Handler",
        (Jwks,),
        {
            "document": json.dumps(
                {"keys": [jwk | {"kid": "idp-1", "use": "sig", "alg": "RS256"}]}
            ).encode()
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", private
    finally:
        server.shutdown()


def test_a_token_of_the_trusted_external_issuer_is_accepted_through_its_jwks(
    medbridge: MedBridge, identity_provider: tuple[str, rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    url, private = identity_provider
    settings = medbridge.settings.model_copy(
        update={
            "oauth_external_issuer": "https://idp.example.org/realms/hospital",
            "oauth_external_jwks_url": url,
            "oauth_external_audience": "medbridge",
        }
    )
    external = MedBridge.build(Settings.model_validate(settings.model_dump()))
    now = int(time.time())
    idp_claims = {
        "iss": "https://idp.example.org/realms/hospital",
        "aud": "medbridge",
        "azp": "bi-warehouse",
        "iat": now,
        "exp": now + 60,
        "scope": "openid stock:read",
        "facilities": ["H1"],
    }
    signed = jwt.encode(idp_claims, private, algorithm="RS256", headers={"kid": "idp-1"})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with TestClient(external.api()) as api:
        assert api.get("/v1/stock", headers=bearer(signed)).status_code == 200
        assert api.get("/v1/journal-entries", headers=bearer(signed)).status_code == 403
        forged = jwt.encode(idp_claims, other, algorithm="RS256", headers={"kid": "idp-1"})
        assert api.get("/v1/stock", headers=bearer(forged)).status_code == 401
        audience = jwt.encode(
            idp_claims | {"aud": "another-app"}, private, "RS256", headers={"kid": "idp-1"}
        )
        assert api.get("/v1/stock", headers=bearer(audience)).status_code == 401
        unknown_kid = jwt.encode(idp_claims, private, "RS256", headers={"kid": "idp-9"})
        assert api.get("/v1/stock", headers=bearer(unknown_kid)).status_code == 401
        # its facilities claim binds it like a client's: H1, not H2
        writer = jwt.encode(
            idp_claims | {"scope": "movements:write"}, private, "RS256", headers={"kid": "idp-1"}
        )
        moves = [dispense("idp-1", "H1-PHARM"), dispense("idp-2", "H2-PHARM")]
        refused = api.post("/v1/stock-movements", json=moves, headers=bearer(writer))
        assert refused.status_code == 403
        assert refused.json()["detail"][0]["type"] == "outside_facility_scope"
        mine = api.post("/v1/stock-movements", json=moves[0], headers=bearer(writer))
        assert mine.status_code == 202
    external.engine.dispose()


# --- rate limits -----------------------------------------------------------------------------


def test_a_client_over_its_limit_gets_429_with_retry_after_while_another_is_unaffected(
    medbridge: MedBridge,
) -> None:
    settings = medbridge.settings.model_copy(
        update={"client_rate_limits": {"default": "1000/second", "scraper": "3/minute"}}
    )
    limited = MedBridge.build(Settings.model_validate(settings.model_dump()))
    scraper = limited.clients.register("scraper", Role.READER)
    calm = limited.clients.register("dashboard", Role.READER)
    with TestClient(limited.api()) as api:
        codes = [api.get("/v1/stock", headers={"X-API-Key": scraper}).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        refused = api.get("/v1/stock", headers={"X-API-Key": scraper})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "3 per 1 minute" in refused.json()["detail"]
        others = [api.get("/v1/stock", headers={"X-API-Key": calm}).status_code for _ in range(5)]
        assert others == [200] * 5
        # a token of the same client counts against the same limit
        secret_token = api.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "scraper",
                "client_secret": scraper,
            },
        ).json()["access_token"]
        assert api.get("/v1/stock", headers=bearer(secret_token)).status_code == 429
    limited.engine.dispose()


def test_a_body_over_the_limit_gets_413(medbridge: MedBridge) -> None:
    settings = medbridge.settings.model_copy(update={"max_body_bytes": 4096})
    small = MedBridge.build(Settings.model_validate(settings.model_dump()))
    key = small.clients.register("cabinets", Role.INTEGRATION)
    with TestClient(small.api()) as api:
        big = b"[" + b"{}," * 5000 + b"{}]"
        answer = api.post(
            "/v1/stock-movements",
            content=big,
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        assert answer.status_code == 413
    small.engine.dispose()
