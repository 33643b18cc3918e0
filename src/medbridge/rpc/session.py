"""A logged-in JSON-RPC session on one trytond (7.0) database, over httpx.

trytond is GPL: MedBridge talks to it only over the wire, never by import.

Protocol (measured on trytond 7.0): ``POST <url>/<database>/`` with ``{"id", "method",
"params"}``. ``common.db.login [user, {"password"}]`` answers ``[uid, session]``; later calls
carry ``Authorization: Session base64(user:uid:session)`` and the user's preferences as their
last parameter (the context). A refused login and an expired session answer HTTP 401; a
method the user may not call answers 403; a Tryton error answers HTTP 200 with an ``error``
member. Dotted field names in ``search_read`` come back nested (``{"account.": {"code": ...}}``).

Shared by the connectors that talk to a trytond (GNU Health, Tryton ERP). Every failure leaves
here as one of the generic ``RpcError``s below; each connector's client turns them into its own
typed errors. An expired session is renewed once, transparently; nothing else is retried.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
from pydantic import SecretStr

from medbridge.observability import tracing
from medbridge.observability.logging import get_logger
from medbridge.rpc.tryton import TrytonValueError, decode, encode

log = get_logger(__name__)


class RpcError(Exception):
    """Root of the session's errors; ``message`` without the ``database:method`` prefix."""

    def __init__(
        self, message: str, *, database: str = "", method: str = "", status: int | None = None
    ) -> None:
        where = ":".join(part for part in (database, method) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.message, self.database, self.method, self.status = message, database, method, status


class RpcUnavailable(RpcError):
    """Transient: no connection, a timeout, HTTP 5xx or 429."""


class RpcAuthError(RpcError):
    """Login refused, a session refused right after a fresh login, or a forbidden method."""


class RpcProtocolError(RpcError):
    """The server answered, but not as expected (not JSON, 404, wrong shape, bad value)."""


class RpcFault(RpcError):
    """trytond answered with an ``error`` member; ``error`` is that member, untouched (each
    connector sorts it into its own error tree)."""

    def __init__(self, error: Any, *, database: str = "", method: str = "") -> None:
        super().__init__("server error", database=database, method=method)
        self.error = error


class RpcConfig(Protocol):
    """What a session needs of a connector's configuration."""

    @property
    def rpc_url(self) -> str: ...
    @property
    def database(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> SecretStr: ...
    @property
    def timeout(self) -> float: ...


class _SessionExpired(Exception):
    """A refused session on a call made with one: log in again, once."""


class TrytonRpcSession:
    """One logged-in session on one database. Not thread-safe: one per worker or poller.

    ``name`` prefixes the log events (``<name>.login``); ``expired_statuses`` are the HTTP
    statuses that mean "session expired" on a call made with a session (any other 401/403
    is an ``RpcAuthError``). A connector's client subclasses this and overrides ``translate``:
    every public method raises what ``translate`` makes of the generic error.
    """

    def __init__(
        self,
        config: RpcConfig,
        *,
        name: str,
        expired_statuses: Collection[int] = (401,),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.rpc_url, self.database, self.user = config.rpc_url, config.database, config.user
        self._password = config.password
        self._name = name
        self._expired = frozenset(expired_statuses)
        self._http = httpx.Client(timeout=config.timeout, transport=transport)
        self._ids = itertools.count(1)
        self._auth: str | None = None
        self._context: dict[str, Any] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
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

    # --- errors ----------------------------------------------------------------------------

    def translate(self, error: RpcError) -> Exception:
        """The error a public method raises for ``error``; a connector's client overrides it."""
        return error

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Raise ``translate(error)`` for any ``RpcError`` (with the original's cause)."""
        try:
            yield
        except RpcError as error:
            translated = self.translate(error)
            if translated is error:
                raise
            raise translated from error.__cause__

    # --- session ---------------------------------------------------------------------------

    def login(self) -> int:
        """Open a session and load the user's context; return the user id."""
        with self.translated():
            return self._login()

    def _login(self) -> int:
        method = "common.db.login"
        credentials = [self.user, {"password": self._password.get_secret_value()}]
        result = self._post(method, credentials, login=True)
        if not (isinstance(result, list) and len(result) >= 2 and isinstance(result[0], int)):
            raise RpcAuthError("login answered no session", database=self.database, method=method)
        uid, session = result[0], str(result[1])
        token = base64.b64encode(f"{self.user}:{uid}:{session}".encode()).decode()
        self._auth = f"Session {token}"
        preferences = self._post("model.res.user.get_preferences", [True, {}])
        self._context = preferences if isinstance(preferences, dict) else {}
        log.info(f"{self._name}.login", database=self.database, uid=uid)
        return uid

    def call(self, method: str, params: Sequence[Any]) -> Any:
        """Call ``method`` with ``params`` + the user's context; log in (again) when needed."""
        with self.translated():
            return self._call(method, params)

    def _call(self, method: str, params: Sequence[Any]) -> Any:
        if self._auth is None:
            self._login()
        try:
            return self._post(method, [*params, self._context])
        except _SessionExpired:
            log.info(f"{self._name}.session_expired", database=self.database)
            self._login()
            try:
                return self._post(method, [*params, self._context])
            except _SessionExpired:
                raise RpcAuthError(
                    "session refused right after login", database=self.database, method=method
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
        with self.translated():
            result = self._call(method, [list(domain), offset, limit, order, list(fields)])
            if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
                raise RpcProtocolError(
                    "search_read answered no list of records",
                    database=self.database,
                    method=method,
                )
            return result

    # --- transport -------------------------------------------------------------------------

    def _post(self, method: str, params: list[Any], *, login: bool = False) -> Any:
        """One JSON-RPC call; with tracing on, a CLIENT span whose context goes along in the
        request's ``traceparent`` header."""
        if not tracing.enabled():
            return self._send(method, params, login=login, headers={})
        attributes = {
            "rpc.system": "jsonrpc",
            "rpc.method": method,
            "db.namespace": self.database,
            "url.full": self.rpc_url,
        }
        with tracing.span(
            f"{self._name} {method}", kind=tracing.SpanKind.CLIENT, attributes=attributes
        ):
            return self._send(method, params, login=login, headers=tracing.propagation_headers())

    def _send(self, method: str, params: list[Any], *, login: bool, headers: dict[str, str]) -> Any:
        db = self.database
        if not login and self._auth is not None:
            headers["Authorization"] = self._auth
        body = {"id": next(self._ids), "method": method, "params": encode(params)}
        try:
            response = self._http.post(self.rpc_url, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise RpcUnavailable(
                f"{type(exc).__name__}: {exc}", database=db, method=method
            ) from exc
        status = response.status_code
        if status in (401, 403):
            if login:
                raise RpcAuthError(
                    f"login refused for user {self.user!r} (HTTP {status})",
                    database=db,
                    method=method,
                    status=status,
                )
            if status in self._expired:
                raise _SessionExpired
            raise RpcAuthError(
                f"forbidden for user {self.user!r}", database=db, method=method, status=status
            )
        if status == 429 or status >= 500:
            raise RpcUnavailable(f"HTTP {status}", database=db, method=method, status=status)
        if status == 404:
            raise RpcProtocolError(
                "HTTP 404: no such database on the server", database=db, method=method
            )
        if status != 200:
            raise RpcProtocolError(f"HTTP {status}", database=db, method=method, status=status)
        try:
            answer = response.json()
        except ValueError as exc:
            raise RpcProtocolError("answer is not JSON", database=db, method=method) from exc
        if not isinstance(answer, dict):
            raise RpcProtocolError("answer is not a JSON object", database=db, method=method)
        if answer.get("error") is not None:
            raise RpcFault(answer["error"], database=db, method=method)
        if "result" not in answer:
            raise RpcProtocolError("answer has no result", database=db, method=method)
        try:
            return decode(answer["result"])
        except TrytonValueError as exc:
            raise RpcProtocolError(str(exc), database=db, method=method) from exc
