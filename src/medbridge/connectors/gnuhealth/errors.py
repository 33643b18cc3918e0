"""GNU Health connector errors: what went wrong talking to the server, sorted by what to do.

GnuHealthError                   root; ``database`` and ``method`` say where
 +-- GnuHealthUnavailable        transient: connection refused or reset, timeout, HTTP 5xx,
 |                               429 (trytond's login rate limit). Retry the poll later; the
 |                               cursor has not moved, so nothing is lost.
 +-- GnuHealthAuthError          the login was refused (HTTP 401/403 on ``common.db.login``,
 |                               or a session refused again right after a fresh login): fix
 |                               the user or password; retrying will not help.
 +-- GnuHealthProtocolError      the server answered, but not as expected: not JSON, an
     |                           unknown database (404), a result of the wrong shape, a value
     |                           that cannot be decoded. A bug or a version mismatch.
     +-- GnuHealthServerError    trytond answered with an error object (``UserError``, an
                                 unknown field, ...): ``tryton_error`` is its name.

A record whose codes MedBridge does not know is no error here: it is handed over and parked in
the inbound exception queue by ``flows.inbound``.

PHI: messages name models, methods, record ids and HTTP statuses only. A server error's text
is cut to 200 characters and its traceback is dropped; the connector never asks for patient
fields, so no answer it reads can quote them.
"""

from __future__ import annotations


class GnuHealthError(Exception):
    """Root of the connector's errors."""

    def __init__(self, message: str, *, database: str = "", method: str = "") -> None:
        where = ":".join(part for part in (database, method) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.database, self.method = database, method


class GnuHealthUnavailable(GnuHealthError):
    """Transient: the server could not be reached or answered with a server-side failure."""

    def __init__(
        self, message: str, *, database: str = "", method: str = "", status: int | None = None
    ) -> None:
        super().__init__(message, database=database, method=method)
        self.status = status


class GnuHealthAuthError(GnuHealthError):
    """The server refused the configured credentials."""


class GnuHealthProtocolError(GnuHealthError):
    """The answer could not be understood."""


class GnuHealthServerError(GnuHealthProtocolError):
    """trytond reported an error for the call."""

    def __init__(
        self, tryton_error: str, message: str, *, database: str = "", method: str = ""
    ) -> None:
        super().__init__(f"{tryton_error}: {message}", database=database, method=method)
        self.tryton_error = tryton_error
