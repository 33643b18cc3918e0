"""cXML connector errors: why an inbound cXML document is refused, and what to answer.

Every error carries a stable ``code`` (never change one: dashboards and the exception reports
key on it), a ``reason`` an operator can act on, the cXML ``status`` code the partner is
answered with (``render_error``), and ``path``: an XPath-like location of the fault, e.g.
``/cXML/Request/InvoiceDetailRequest/InvoiceDetailRequestHeader/@invoiceDate``. lxml's errors
are translated here and never leave the package.

Status codes are the cXML Reference Guide's: 400 "request unacceptable to the server,
although it parsed correctly"; 401 credentials not recognized; 406 "request unacceptable,
likely due to a parsing failure"; 450 "not implemented" (the server does not implement that
request). cXML has no "too large" code: an oversize document is a 400.

CxmlError                         code                        status
 +-- TooLarge                     cxml.too_large              400  over the size limit, refused
 |                                                                 before parsing
 +-- NotWellFormed                cxml.not_well_formed        406  not XML (syntax, encoding)
 |    +-- ForbiddenMarkup         cxml.forbidden_markup       406  a DTD internal subset, an
 |                                                                 ENTITY declaration or an
 |                                                                 entity reference (XXE, billion
 |                                                                 laughs)
 +-- NotCxml                      cxml.not_cxml               400  XML, but no cXML/Request or
 |                                                                 cXML/Response
 +-- InvalidContent               cxml.invalid                400  parsed, but the data is wrong
 |    +-- MissingData             cxml.missing                400  a mandatory element/attribute
 |    |                                                            absent or empty
 |    +-- InvalidValue            cxml.invalid_value          400  a value that does not fit
 |         +-- InvalidDate        cxml.invalid_date           400  not an ISO 8601 date/datetime
 |         +-- InvalidAmount      cxml.invalid_amount         400  not a decimal number
 +-- UnsupportedRequest           cxml.unsupported_request    450  a request type (or operation)
 |                                                                 MedBridge does not implement
 +-- Unauthorized                 cxml.unauthorized           401  Sender credential / secret
 +-- RenderError                  cxml.render                 500  a document that cannot be
                                                                   written as XML (our side)
"""

from __future__ import annotations

STATUS_TEXT: dict[int, str] = {
    200: "OK",
    201: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    406: "Not Acceptable",
    409: "Conflict",
    412: "Precondition Failed",
    450: "Not Implemented",
    500: "Internal Server Error",
    560: "Temporary server error",
}
"""The standard ``Status/@text`` of the cXML status codes MedBridge answers with."""


class CxmlError(ValueError):
    """Root of the cXML connector's errors."""

    code = "cxml.error"
    status = 400

    def __init__(self, reason: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, "Error")


class TooLarge(CxmlError):
    code = "cxml.too_large"


class NotWellFormed(CxmlError):
    code = "cxml.not_well_formed"
    status = 406


class ForbiddenMarkup(NotWellFormed):
    code = "cxml.forbidden_markup"


class NotCxml(CxmlError):
    code = "cxml.not_cxml"


class InvalidContent(CxmlError):
    code = "cxml.invalid"


class MissingData(InvalidContent):
    code = "cxml.missing"


class InvalidValue(InvalidContent):
    code = "cxml.invalid_value"


class InvalidDate(InvalidValue):
    code = "cxml.invalid_date"


class InvalidAmount(InvalidValue):
    code = "cxml.invalid_amount"


class UnsupportedRequest(CxmlError):
    code = "cxml.unsupported_request"
    status = 450


class Unauthorized(CxmlError):
    code = "cxml.unauthorized"
    status = 401


class RenderError(CxmlError):
    code = "cxml.render"
    status = 500
