"""cXML connector (procurement networks: Ariba, Coupa, suppliers' order systems).

``parse`` (bytes -> ``CxmlMessage``: ``CxmlEnvelope`` + ``RequestKind`` + the canonical trade
document) for OrderRequest, ConfirmationRequest, ShipNoticeRequest and InvoiceDetailRequest;
``parse_envelope`` (the Header only, to authenticate first), ``credentials_match`` /
``authenticate`` (Sender credential + SharedSecret, constant time); ``render`` (canonical
document + envelope -> cXML request bytes); ``parse_response`` / ``render_response`` /
``render_error`` for the ``Response`` answering a request. Parsing is hardened (size limit,
no DTD, no entities: ``safexml``). Refusals are ``CxmlError`` subclasses with a stable code,
a reason, the cXML status to answer with and the path of the fault (``errors``).
"""

from __future__ import annotations

from medbridge.connectors.cxml.codec import (
    CxmlEnvelope,
    CxmlMessage,
    CxmlResponse,
    authenticate,
    credentials_match,
    parse,
    parse_envelope,
    parse_response,
    render,
    render_error,
    render_response,
)
from medbridge.connectors.cxml.config import CXML_VERSION, DEFAULT_MAX_BYTES, NAME, CxmlConfig
from medbridge.connectors.cxml.errors import STATUS_TEXT, CxmlError
from medbridge.connectors.cxml.mapping import CxmlDocument, RequestKind

__all__ = [
    "CXML_VERSION",
    "DEFAULT_MAX_BYTES",
    "NAME",
    "STATUS_TEXT",
    "CxmlConfig",
    "CxmlDocument",
    "CxmlEnvelope",
    "CxmlError",
    "CxmlMessage",
    "CxmlResponse",
    "RequestKind",
    "authenticate",
    "credentials_match",
    "parse",
    "parse_envelope",
    "parse_response",
    "render",
    "render_error",
    "render_response",
]
