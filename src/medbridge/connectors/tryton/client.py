"""JSON-RPC client of a Tryton (trytond 7.0 or 8.0) ERP server, over httpx.

trytond is GPL: MedBridge talks to it only over the wire, never by import.

Protocol (measured on trytond 7.0): ``POST <url>/<database>/`` with ``{"id", "method",
"params"}``; trytond 8.0 serves the same calls at ``<url>/<database>/rpc/``
(``TrytonConfig.series``). ``common.db.login [user, {"password"}]`` answers ``[uid,
session]`` (8.0: ``[uid, session, bus_url]``); later calls
carry ``Authorization: Session base64(user:uid:session)`` and the user's preferences as their
last parameter (the context). A refused login and an expired session answer HTTP 401; a
method the user may not call (or that does not exist) answers 403;
a Tryton error answers HTTP 200 with an ``error`` member (see ``errors.translate``). Dotted
field names in ``search_read`` come back nested (``{"account.": {"code": ...}}``).

Every failure leaves here as one of the port's typed errors; an expired session is renewed
once, transparently. Nothing is retried here: a write whose answer was lost raises
``ErpUnavailable`` and the caller's reference check decides what a retry does.

The session itself is ``medbridge.rpc.session``'s, shared with ``connectors.gnuhealth``
(connectors never import each other); this module sorts its errors and adds model helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from medbridge.canonical.erp import ErpAuthError, ErpError, ErpUnavailable
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.errors import TrytonProtocolError, translate, where
from medbridge.rpc.session import (
    RpcAuthError,
    RpcError,
    RpcFault,
    RpcUnavailable,
    TrytonRpcSession,
)


class TrytonClient(TrytonRpcSession):
    """One logged-in session on one database. Not thread-safe: one per worker.

    The session itself (login, context, re-login, transport) is ``medbridge.rpc.session``'s;
    this class sorts its errors into the ERP port's and adds the model helpers.
    """

    def __init__(
        self, config: TrytonConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(config, name="tryton", transport=transport)
        self.config = config

    def translate(self, error: RpcError) -> ErpError:
        if isinstance(error, RpcUnavailable):
            return ErpUnavailable(str(error))
        if isinstance(error, RpcAuthError):
            return ErpAuthError(str(error))
        if isinstance(error, RpcFault):
            return translate(error.error, error.database, error.method)
        return TrytonProtocolError(str(error))

    # --- model helpers ---------------------------------------------------------------------

    def create(self, model: str, values: Sequence[dict[str, Any]]) -> list[int]:
        method = f"model.{model}.create"
        result = self.call(method, [list(values)])
        if not isinstance(result, list) or not all(isinstance(i, int) for i in result):
            raise TrytonProtocolError(f"{where(self.database, method)}: no ids created")
        return result

    def write(self, model: str, ids: Sequence[int], values: dict[str, Any]) -> None:
        self.call(f"model.{model}.write", [list(ids), values])

    def button(self, model: str, name: str, ids: Sequence[int]) -> Any:
        """A workflow button (``quote``, ``confirm``, ``post`` ...) on records."""
        return self.call(f"model.{model}.{name}", [list(ids)])
