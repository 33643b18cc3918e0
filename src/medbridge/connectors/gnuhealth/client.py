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
renewed once, transparently.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx

from medbridge.connectors.gnuhealth.codec import decode, encode
from medbridge.connectors.gnuhealth.config import GnuHealthConfig
from medbridge.connectors.gnuhealth.errors import (
    GnuHealthAuthError,
    GnuHealthError,
    GnuHealthProtocolError,
    GnuHealthServerError,
    GnuHealthUnavailable,
)
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

_TRANSIENT_TRYTON_ERRORS = {"RateLimitException", "ConcurrencyException"}
_KNOWN_TRYTON_ERRORS = {"UserError", "UserWarning", "LoginException", "AccessError"}


class _SessionExpired(Exception):
    """HTTP 401 on a call made with a session: log in again, once."""


class GnuHealthClient:
    """One logged-in session on one database. Not thread-safe: one per poller."""

    def __init__(
        self, config: GnuHealthConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config
        self._http = httpx.Client(timeout=config.timeout, transport=transport)
        self._ids = itertools.count(1)
        self._auth: str | None = None
        self._context: dict[str, Any] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> GnuHealthClient:
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
            raise GnuHealthAuthError(
                "login answered no session", database=self.config.database, method=method
            )
        uid, session = result[0], str(result[1])
        token = base64.b64encode(f"{self.config.user}:{uid}:{session}".encode()).decode()
        self._auth = f"Session {token}"
        preferences = self._post("model.res.user.get_preferences", [True, {}])
        self._context = preferences if isinstance(preferences, dict) else {}
        log.info("gnuhealth.login", database=self.config.database, uid=uid)
        return uid

    def call(self, method: str, params: Sequence[Any]) -> Any:
        """Call ``method`` with ``params`` + the user's context; log in (again) when needed."""
        if self._auth is None:
            self.login()
        try:
            return self._post(method, [*params, self._context])
        except _SessionExpired:
            log.info("gnuhealth.session_expired", database=self.config.database)
            self.login()
            try:
                return self._post(method, [*params, self._context])
            except _SessionExpired:
                raise GnuHealthAuthError(
                    "session refused right after login",
                    database=self.config.database,
                    method=method,
                ) from None

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
            raise GnuHealthProtocolError(
                "search_read answered no list of records",
                database=self.config.database,
                method=method,
            )
        return result

    # --- transport -------------------------------------------------------------------------

    def _post(self, method: str, params: list[Any], *, login: bool = False) -> Any:
        db = self.config.database
        headers = {} if login or self._auth is None else {"Authorization": self._auth}
        body = {"id": next(self._ids), "method": method, "params": encode(params)}
        try:
            response = self._http.post(self.config.rpc_url, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise GnuHealthUnavailable(
                f"{type(exc).__name__}: {exc}", database=db, method=method
            ) from exc
        status = response.status_code
        if status in (401, 403):
            if login:
                raise GnuHealthAuthError(
                    f"login refused for user {self.config.user!r} (HTTP {status})",
                    database=db,
                    method=method,
                )
            raise _SessionExpired
        if status == 429 or status >= 500:
            raise GnuHealthUnavailable(f"HTTP {status}", database=db, method=method, status=status)
        if status == 404:
            raise GnuHealthProtocolError(
                "HTTP 404: no such database on the server", database=db, method=method
            )
        if status != 200:
            raise GnuHealthProtocolError(f"HTTP {status}", database=db, method=method)
        try:
            answer = response.json()
        except ValueError as exc:
            raise GnuHealthProtocolError("answer is not JSON", database=db, method=method) from exc
        if not isinstance(answer, dict):
            raise GnuHealthProtocolError("answer is not a JSON object", database=db, method=method)
        if answer.get("error") is not None:
            raise _server_error(answer["error"], db, method)
        if "result" not in answer:
            raise GnuHealthProtocolError("answer has no result", database=db, method=method)
        try:
            return decode(answer["result"])
        except GnuHealthProtocolError as exc:
            raise GnuHealthProtocolError(str(exc), database=db, method=method) from exc


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
