"""JSON-RPC client of a Tryton (trytond 7.0) ERP server, over httpx.

trytond is GPL: MedBridge talks to it only over the wire, never by import.

Protocol (measured on trytond 7.0): ``POST <url>/<database>/`` with ``{"id", "method",
"params"}``. ``common.db.login [user, {"password"}]`` answers ``[uid, session]``; later calls
carry ``Authorization: Session base64(user:uid:session)`` and the user's preferences as their
last parameter (the context). A refused login and an expired session answer HTTP 401; a
method the user may not call (or that does not exist) answers 403;
a Tryton error answers HTTP 200 with an ``error`` member (see ``errors.translate``). Dotted
field names in ``search_read`` come back nested (``{"account.": {"code": ...}}``).

Every failure leaves here as one of the port's typed errors; an expired session is renewed
once, transparently. Nothing is retried here: a write whose answer was lost raises
``ErpUnavailable`` and the caller's reference check decides what a retry does.

Copied from (not shared with) ``connectors.gnuhealth.client``: connectors never import each
other, and moving the generic part to a shared package is a separate refactor.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx

from medbridge.canonical.erp import ErpAuthError, ErpUnavailable
from medbridge.connectors.tryton.codec import decode, encode
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.errors import TrytonProtocolError, translate, where
from medbridge.observability.logging import get_logger

log = get_logger(__name__)


class _SessionExpired(Exception):
    """HTTP 401 on a call made with a session: log in again, once."""


class TrytonClient:
    """One logged-in session on one database. Not thread-safe: one per worker."""

    def __init__(
        self, config: TrytonConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config
        self._http = httpx.Client(timeout=config.timeout, transport=transport)
        self._ids = itertools.count(1)
        self._auth: str | None = None
        self._context: dict[str, Any] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> TrytonClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- session ---------------------------------------------------------------------------

    def login(self) -> int:
        """Open a session and load the user's context; return the user id."""
        method = "common.db.login"
        result = self._post(
            method,
            [self.config.user, {"password": self.config.password.get_secret_value()}],
            login=True,
        )
        if not (isinstance(result, list) and len(result) >= 2 and isinstance(result[0], int)):
            raise ErpAuthError(f"{where(self.config.database, method)}: login answered no session")
        uid, session = result[0], str(result[1])
        token = base64.b64encode(f"{self.config.user}:{uid}:{session}".encode()).decode()
        self._auth = f"Session {token}"
        preferences = self._post("model.res.user.get_preferences", [True, {}])
        self._context = preferences if isinstance(preferences, dict) else {}
        log.info("tryton.login", database=self.config.database, uid=uid)
        return uid

    def call(self, method: str, params: Sequence[Any]) -> Any:
        """Call ``method`` with ``params`` + the user's context; log in (again) when needed."""
        if self._auth is None:
            self.login()
        try:
            return self._post(method, [*params, self._context])
        except _SessionExpired:
            log.info("tryton.session_expired", database=self.config.database)
            self.login()
            try:
                return self._post(method, [*params, self._context])
            except _SessionExpired:
                raise ErpAuthError(
                    f"{where(self.config.database, method)}: session refused right after login"
                ) from None

    # --- model helpers ---------------------------------------------------------------------

    def search_read(
        self,
        model: str,
        domain: Sequence[Any],
        fields: Sequence[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
    ) -> list[dict[str, Any]]:
        method = f"model.{model}.search_read"
        result = self.call(method, [list(domain), offset, limit, order, list(fields)])
        if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
            raise TrytonProtocolError(
                f"{where(self.config.database, method)}: search_read answered no records"
            )
        return result

    def create(self, model: str, values: Sequence[dict[str, Any]]) -> list[int]:
        method = f"model.{model}.create"
        result = self.call(method, [list(values)])
        if not isinstance(result, list) or not all(isinstance(i, int) for i in result):
            raise TrytonProtocolError(f"{where(self.config.database, method)}: no ids created")
        return result

    def write(self, model: str, ids: Sequence[int], values: dict[str, Any]) -> None:
        self.call(f"model.{model}.write", [list(ids), values])

    def button(self, model: str, name: str, ids: Sequence[int]) -> Any:
        """A workflow button (``quote``, ``confirm``, ``post`` ...) on records."""
        return self.call(f"model.{model}.{name}", [list(ids)])

    # --- transport -------------------------------------------------------------------------

    def _post(self, method: str, params: list[Any], *, login: bool = False) -> Any:
        db = self.config.database
        headers = {} if login or self._auth is None else {"Authorization": self._auth}
        body = {"id": next(self._ids), "method": method, "params": encode(params)}
        try:
            response = self._http.post(self.config.rpc_url, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ErpUnavailable(f"{where(db, method)}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in (401, 403):
            if login:
                raise ErpAuthError(
                    f"{where(db, method)}: login refused for user {self.config.user!r} "
                    f"(HTTP {status})"
                )
            if status == 401:
                raise _SessionExpired
            raise ErpAuthError(f"{where(db, method)}: forbidden for user {self.config.user!r}")
        if status == 429 or status >= 500:
            raise ErpUnavailable(f"{where(db, method)}: HTTP {status}")
        if status == 404:
            raise TrytonProtocolError(f"{where(db, method)}: HTTP 404: no such database")
        if status != 200:
            raise TrytonProtocolError(f"{where(db, method)}: HTTP {status}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise TrytonProtocolError(f"{where(db, method)}: answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise TrytonProtocolError(f"{where(db, method)}: answer is not a JSON object")
        if answer.get("error") is not None:
            raise translate(answer["error"], db, method)
        if "result" not in answer:
            raise TrytonProtocolError(f"{where(db, method)}: answer has no result")
        try:
            return decode(answer["result"])
        except TrytonProtocolError as exc:
            raise TrytonProtocolError(f"{where(db, method)}: {exc}") from exc
