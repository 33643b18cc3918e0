"""JSON-RPC client of a GNU Health (trytond 7.0) server, over httpx.

GNU Health and trytond are GPL: MedBridge talks to them only over the wire, never by import.

Protocol (what trytond 7.0 does, measured): ``POST <url>/<database>/`` with
``{"id", "method", "params"}``. ``common.db.login [user, {"password"}]`` answers
``[uid, session]``; later calls carry ``Authorization: Session base64(user:uid:session)`` and
the user's preferences as their last parameter (the context). A refused login and an expired
session both answer HTTP 401; a Tryton error answers HTTP 200 with an ``error`` member.
Dotted field names in ``search_read`` (``product.code``) come back nested
(``{"product.": {"code": ...}}``).

Every failure leaves here as one of the typed errors of ``errors.py``; an expired session is
renewed once, transparently (by ``medbridge.rpc.session``, shared with the Tryton connector).
"""

from __future__ import annotations

from typing import Any

import httpx

from medbridge.connectors.gnuhealth.config import GnuHealthConfig
from medbridge.connectors.gnuhealth.errors import (
    GnuHealthAuthError,
    GnuHealthError,
    GnuHealthProtocolError,
    GnuHealthServerError,
    GnuHealthUnavailable,
)
from medbridge.rpc.session import (
    RpcAuthError,
    RpcError,
    RpcFault,
    RpcUnavailable,
    TrytonRpcSession,
)

_TRANSIENT_TRYTON_ERRORS = {"RateLimitException", "ConcurrencyException"}
_KNOWN_TRYTON_ERRORS = {"UserError", "UserWarning", "LoginException", "AccessError"}


class GnuHealthClient(TrytonRpcSession):
    """One logged-in session on one database. Not thread-safe: one per poller.

    The session itself (login, context, re-login, transport) is ``medbridge.rpc.session``'s;
    this class only sorts its errors into the connector's (``errors.py``). A refused session
    (HTTP 401 or 403) on a call is taken for an expired one.
    """

    def __init__(
        self, config: GnuHealthConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(config, name="gnuhealth", expired_statuses=(401, 403), transport=transport)
        self.config = config

    def translate(self, error: RpcError) -> GnuHealthError:
        where: dict[str, Any] = {"database": error.database, "method": error.method}
        if isinstance(error, RpcUnavailable):
            return GnuHealthUnavailable(error.message, status=error.status, **where)
        if isinstance(error, RpcAuthError):
            return GnuHealthAuthError(error.message, **where)
        if isinstance(error, RpcFault):
            return _server_error(error.error, error.database, error.method)
        return GnuHealthProtocolError(error.message, **where)


def _server_error(error: Any, database: str, method: str) -> GnuHealthError:
    """trytond's ``error`` member: ``[name, args]`` for Tryton exceptions, ``[str, traceback]``
    for anything else. The traceback is dropped and the text cut short (see errors.py)."""
    parts = error if isinstance(error, list) else [error]
    first = parts[0] if parts else "RateLimitException"  # a bare exception has no args
    if first in _TRANSIENT_TRYTON_ERRORS or not parts:
        return GnuHealthUnavailable(str(first), database=database, method=method)
    if first in _KNOWN_TRYTON_ERRORS or (isinstance(first, str) and first.endswith("Exception")):
        name = str(first)
        detail = parts[1] if len(parts) > 1 else ""
        message = detail[0] if isinstance(detail, list) and detail else detail
    else:
        name, message = "ServerError", first
    text = str(message)[:200]
    if name == "LoginException":
        return GnuHealthAuthError(f"login needs more than a password: {text}", database=database)
    return GnuHealthServerError(name, text, database=database, method=method)
