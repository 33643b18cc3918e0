"""Secrets MedBridge generates for itself when the settings give none: kept in
``<var_dir>/<name>`` (mode 0600), generated on first use, the same on every restart."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import SecretStr

from medbridge.settings import Settings


def var_secret(var_dir: Path, name: str) -> tuple[str, bool]:
    """The secret in ``var_dir/name`` and whether it was generated now."""
    path = Path(var_dir) / name
    generated = not path.exists()
    if generated:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip(), generated


def pseudonym_secret(settings: Settings) -> SecretStr:
    """The HMAC key of encounter pseudonyms: stable across restarts, or pseudonyms drift."""
    if settings.pseudonym_secret is not None:
        return settings.pseudonym_secret
    return SecretStr(var_secret(settings.var_dir, "pseudonym_secret")[0])


def admin_key(settings: Settings) -> tuple[str, bool]:
    """The admin key: from settings, else from ``var/admin_api_key``, else a new one written
    there. Returns the key and whether it was generated now."""
    if settings.admin_api_key is not None:
        return settings.admin_api_key.get_secret_value(), False
    return var_secret(settings.var_dir, "admin_api_key")


def oauth_signing_key(settings: Settings) -> str:
    """The HS256 key of the tokens MedBridge issues: every process of a deployment must
    share it (settings, or the same var directory)."""
    if settings.oauth_signing_key is not None:
        return settings.oauth_signing_key.get_secret_value()
    return var_secret(settings.var_dir, "oauth_signing_key")[0]


def console_session_key(settings: Settings) -> str:
    """The key signing the console's session cookies: every process serving the console must
    share it (settings, or the same var directory), or a sign-in holds on one process only."""
    if settings.console_session_key is not None:
        return settings.console_session_key.get_secret_value()
    return var_secret(settings.var_dir, "console_session_key")[0]
