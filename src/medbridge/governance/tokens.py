"""OAuth2 bearer tokens (PyJWT): the short-lived tokens MedBridge issues to its clients
(client credentials grant, ``POST /oauth/token``), and the tokens of an external identity
provider it may trust instead (issuer, JWKS URL and audience in the settings).

MedBridge's own tokens are JWTs signed with HS256 under a key of its own (settings, or
generated once into the var directory, shared by every process of a deployment). Claims:
``iss``, ``aud``, ``sub`` (the client's name), ``iat``, ``exp``, ``jti``, ``scope`` (the
granted permissions, space-separated) and ``facilities`` (absent: every facility). A token
never grants more than its client held when it was issued; revoking a client's key stops new
tokens, and the ones out there expire within the lifetime (minutes).

An external provider's token is verified against its JWKS (fetched and cached by PyJWT's
``PyJWKClient``), its issuer and audience; the client is the ``client_claim`` (``azp`` by
default, as Keycloak and Entra ID put the client id), the permissions are its scopes (the
``scope`` string or the ``scp`` list) that are MedBridge permission names, and the facilities
are the ``facilities_claim`` (a list or a space-separated string; absent: every facility).

Errors: ``InvalidToken`` (its message says why: expired, bad signature, wrong audience...),
answered 401 by the API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from medbridge.governance.permissions import Permission, Principal, parse_scope

ALGORITHM = "HS256"
EXTERNAL_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
LEEWAY = 5.0
"""Seconds of clock skew tolerated on ``exp``/``iat``/``nbf``."""


class InvalidToken(Exception):
    """The bearer token cannot be trusted; the message says why (no secret in it)."""


@dataclass(frozen=True)
class ExternalIssuer:
    issuer: str
    jwks_url: str
    audience: str
    client_claim: str = "azp"
    facilities_claim: str = "facilities"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


class TokenAuthority:
    """Issues MedBridge's own tokens and verifies them and an external issuer's."""

    def __init__(
        self,
        signing_key: str,
        *,
        issuer: str,
        audience: str,
        lifetime: int,
        external: ExternalIssuer | None = None,
    ) -> None:
        if len(signing_key) < 32:
            raise ValueError("the token signing key must be at least 32 characters")
        self._key, self.issuer, self.audience = signing_key, issuer, audience
        self.lifetime, self.external = lifetime, external
        self._jwks = (
            jwt.PyJWKClient(external.jwks_url, cache_keys=True, lifespan=300, timeout=5)
            if external is not None
            else None
        )

    def issue(self, client: Principal, requested: str | None = None) -> IssuedToken:
        """A token for ``client``: the requested scopes (permission names), or all it holds.
        Raises ``InvalidToken`` naming a requested scope the client does not hold."""
        granted = client.permissions
        if requested is not None and requested.strip():
            names = requested.split()
            unknown = [n for n in names if n not in {p.value for p in Permission}]
            asked = parse_scope(requested)
            beyond = sorted(asked - client.permissions)
            if unknown or beyond:
                raise InvalidToken(f"scope not granted to {client.name}: {unknown + beyond}")
            granted = asked
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.name,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": str(uuid.uuid4()),
            "scope": " ".join(sorted(granted)),
        }
        if client.facilities is not None:
            claims["facilities"] = sorted(client.facilities)
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return IssuedToken(token, self.lifetime, claims["scope"])

    def verify(self, token: str) -> Principal:
        """The principal of a bearer token, or ``InvalidToken``."""
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as error:
            raise InvalidToken(f"not a JWT: {error}") from error
        if self.external is not None and issuer == self.external.issuer:
            return self._verify_external(token, self.external)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(_reason(error)) from error
        return _principal(claims, "sub", "facilities", "token")

    def _verify_external(self, token: str, external: ExternalIssuer) -> Principal:
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=EXTERNAL_ALGORITHMS,
                audience=external.audience,
                issuer=external.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientError as error:
            raise InvalidToken(f"the issuer's keys: {error}") from error
        except jwt.PyJWTError as error:
            raise InvalidToken(_reason(error)) from error
        return _principal(claims, external.client_claim, external.facilities_claim, "external")


def _reason(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(error, jwt.InvalidAudienceError):
        return "token for another audience"
    if isinstance(error, jwt.InvalidIssuerError):
        return "token of another issuer"
    if isinstance(error, jwt.InvalidSignatureError):
        return "token signature invalid"
    return f"token invalid: {error}"


def _principal(
    claims: dict[str, Any], client_claim: str, facilities_claim: str, via: str
) -> Principal:
    name = claims.get(client_claim) or claims.get("client_id") or claims.get("sub")
    if not isinstance(name, str) or not name:
        raise InvalidToken(f"token names no client ({client_claim})")
    scope = claims.get("scope")
    if not isinstance(scope, str):
        scp = claims.get("scp")
        scope = " ".join(scp) if isinstance(scp, list) else (scp if isinstance(scp, str) else "")
    facilities = _facilities(claims.get(facilities_claim))
    return Principal(name=name, permissions=parse_scope(scope), facilities=facilities, via=via)


def _facilities(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    items: Iterable[Any] = value.split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) and not isinstance(value, str):
        raise InvalidToken("the facilities claim is neither a list nor a string")
    found = frozenset(str(f) for f in items)
    if not found:
        raise InvalidToken("the facilities claim is empty")
    return found
