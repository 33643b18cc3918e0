"""Tryton adapter errors: the ERP port's error tree, with what the adapter adds.

ErpError (medbridge.canonical.erp)      root
 +-- ErpUnavailable                      transient: connection refused or reset, timeout,
 |    |                                  HTTP 5xx/429, trytond's ConcurrencyException or
 |    |                                  RateLimitException, "database is locked". The call
 |    |                                  may have been applied: retry; the reference check
 |    |                                  before every create makes that safe.
 +-- ErpAuthError                        login refused (HTTP 401/403 on ``common.db.login``,
 |                                       LoginException), a session refused right after a
 |                                       fresh login, or AccessError (the user lacks rights:
 |                                       on the wire a UserError "You are not allowed to ...").
 +-- ErpRejected                         Tryton refused the content: UserError, UserWarning,
 |                                       any ``*ValidationError`` (required, domain, size,
 |                                       selection, digits ...), or a code the adapter could
 |                                       not resolve before calling (unknown account, cost
 |                                       center, supplier, product, unit): ``field`` names it.
 +-- TrytonProtocolError                 the server answered, but not as expected: not JSON,
                                         an unknown database (404), a result of the wrong
                                         shape, an undecodable value, or a server fault (a
                                         Python traceback): a bug or a version mismatch.
                                         Not retried automatically.

Messages name the database, the RPC method and Tryton's error name; Tryton's text is cut to
300 characters and tracebacks are dropped.
"""

from __future__ import annotations

from typing import Any

from medbridge.canonical.erp import ErpAuthError, ErpError, ErpRejected, ErpUnavailable

TRANSIENT = frozenset({"ConcurrencyException", "RateLimitException"})
REJECTED = frozenset({"UserError", "UserWarning"})
"""On the wire every ``UserError`` subclass (``*ValidationError``, ``AccessError``) is
``["UserError", [message, description, domain]]``: the subclass name is not sent."""
AUTH = frozenset({"LoginException"})
_ACCESS_ERROR = "You are not allowed to"  # trytond's AccessError messages (model, field, button)


class TrytonProtocolError(ErpError):
    """The answer could not be understood (or the server failed with a traceback)."""


def where(database: str, method: str) -> str:
    return ":".join(part for part in (database, method) if part)


def translate(error: Any, database: str, method: str) -> ErpError:
    """trytond's JSON-RPC ``error`` member -> the typed error.

    Tryton exceptions arrive as ``[name, args]`` (``args[0]`` the message); any other
    exception as ``[str(exc), traceback]``.
    """
    parts = error if isinstance(error, list) else [error]
    name = str(parts[0]) if parts else ""
    detail = parts[1] if len(parts) > 1 else ""
    text = str(detail[0] if isinstance(detail, list) and detail else detail)[:300]
    prefix = where(database, method)
    if name in TRANSIENT:
        return ErpUnavailable(f"{prefix}: {name}")
    if name in AUTH or (name == "UserError" and text.startswith(_ACCESS_ERROR)):
        return ErpAuthError(f"{prefix}: {name}: {text}")
    if name in REJECTED:
        return ErpRejected(f"{prefix}: {name}: {text}", field=_field_of(detail))
    if "database is locked" in name:
        return ErpUnavailable(f"{prefix}: {name[:300]}")
    return TrytonProtocolError(f"{prefix}: server fault: {name[:300]}")


def _field_of(detail: Any) -> str | None:
    """Tryton's validation errors carry no machine-readable field; their domain may."""
    if isinstance(detail, list) and len(detail) > 2 and isinstance(detail[2], list):
        domain = detail[2]
        for clause in domain:
            if isinstance(clause, list) and clause and isinstance(clause[0], str):
                return clause[0]
    return None
