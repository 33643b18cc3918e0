"""cXML wire format: ``parse`` / ``render`` of the four trade requests, the envelope, and the
``Response`` answering a request.

Inbound: ``parse(data)`` -> ``CxmlMessage`` (envelope, request kind, canonical document);
``parse_envelope(data)`` reads the Header only, to authenticate before mapping;
``parse_response(data)`` reads the Response to an OrderRequest we sent. Outbound: ``render``
writes OrderRequest, ConfirmationRequest, ShipNoticeRequest or InvoiceDetailRequest with the
cXML 1.2 DOCTYPE; ``render_response`` / ``render_error`` write the answer. All parsing goes
through ``safexml.parse_xml`` (size limit, no DTD, no entities). No I/O here.

Credentials: the Sender's first Credential authenticates the message (``credentials_match``,
``authenticate``); From/To name the parties' first Credential. Credential domains compare
case-insensitively (``NetworkID`` = ``NetworkId``), identities and secrets exactly, in
constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from medbridge.connectors.cxml.config import CXML_VERSION, DEFAULT_MAX_BYTES
from medbridge.connectors.cxml.errors import (
    STATUS_TEXT,
    CxmlError,
    InvalidDate,
    InvalidValue,
    MissingData,
    NotCxml,
    RenderError,
    Unauthorized,
    UnsupportedRequest,
)
from medbridge.connectors.cxml.mapping import (
    DTD,
    KIND_OF,
    CxmlDocument,
    RequestKind,
    to_canonical,
    write_request,
)
from medbridge.connectors.cxml.safexml import parse_xml
from medbridge.connectors.cxml.wire import (
    XML_LANG,
    Element,
    attr,
    own_text,
    path_of,
    required,
    required_attr,
    show,
    sub,
    xml_safe,
)


@dataclass(frozen=True, slots=True)
class CxmlEnvelope:
    """The cXML root and Header: who sends what to whom, authenticated how."""

    payload_id: str
    timestamp: datetime
    """When the document was created; always with a time zone."""
    from_domain: str
    from_identity: str
    to_domain: str
    to_identity: str
    sender_domain: str
    sender_identity: str
    shared_secret: str | None
    user_agent: str
    deployment_mode: str = "production"
    """``Request/@deploymentMode``: production or test."""
    version: str | None = None
    """``cXML/@version`` (else the DOCTYPE's version) as received; rendered: ``CXML_VERSION``."""

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError("a cXML timestamp needs a time zone")


@dataclass(frozen=True, slots=True)
class CxmlMessage:
    envelope: CxmlEnvelope
    kind: RequestKind
    document: CxmlDocument

    @property
    def payload_id(self) -> str:
        """The idempotency key of an inbound cXML document (frozen: never derive it
        otherwise)."""
        return self.envelope.payload_id


@dataclass(frozen=True, slots=True)
class CxmlResponse:
    """The answer to a request: ``Response/Status`` @code, @text and its content."""

    payload_id: str
    status_code: int
    status_text: str
    message: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


# --- parsing ----------------------------------------------------------------------------------


def _root(data: bytes, max_bytes: int) -> Element:
    root = parse_xml(data, max_bytes=max_bytes)
    if root.tag != "cXML":
        raise NotCxml(f"root element is <{root.tag}>, not <cXML>", path=f"/{root.tag}")
    return root


def _credential(header: Element, tag: str) -> tuple[str, str, Element]:
    credential = required(required(header, tag), "Credential")
    identity = own_text(credential.find("Identity")) or ""
    return required_attr(credential, "domain"), identity, credential


def _envelope(root: Element) -> CxmlEnvelope:
    header = required(root, "Header")
    stamp = required_attr(root, "timestamp")
    try:
        timestamp = datetime.fromisoformat(stamp)
    except ValueError:
        raise InvalidDate(
            f"{show(stamp)} is not an ISO 8601 datetime", path="/cXML/@timestamp"
        ) from None
    if timestamp.tzinfo is None:
        raise InvalidDate(f"{show(stamp)} has no time zone", path="/cXML/@timestamp")
    from_domain, from_identity, _ = _credential(header, "From")
    to_domain, to_identity, _ = _credential(header, "To")
    sender_domain, sender_identity, sender = _credential(header, "Sender")
    secret = sender.find("SharedSecret")
    request = root.find("Request")
    version = attr(root, "version")
    if version is None:
        url = root.getroottree().docinfo.system_url or ""
        version = next((p for p in url.split("/") if p.startswith("1.")), None)
    return CxmlEnvelope(
        payload_id=required_attr(root, "payloadID"),
        timestamp=timestamp,
        from_domain=from_domain,
        from_identity=from_identity,
        to_domain=to_domain,
        to_identity=to_identity,
        sender_domain=sender_domain,
        sender_identity=sender_identity,
        shared_secret=None if secret is None else (secret.text or "").strip(),
        user_agent=own_text(header.find("Sender/UserAgent")) or "",
        deployment_mode=(None if request is None else attr(request, "deploymentMode"))
        or "production",
        version=version,
    )


def parse_envelope(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CxmlEnvelope:
    """The envelope only (to authenticate the sender before mapping the request)."""
    return _envelope(_root(data, max_bytes))


def parse(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CxmlMessage:
    """An inbound cXML request mapped to its canonical document, or a ``CxmlError``."""
    root = _root(data, max_bytes)
    envelope = _envelope(root)
    request = root.find("Request")
    if request is None:
        other = next((c.tag for c in root if c.tag in ("Message", "Response")), None)
        if other == "Message":
            raise UnsupportedRequest("cXML Messages are not supported", path="/cXML/Message")
        raise NotCxml("no <Request> in the document", path="/cXML/Request")
    body = next(iter(request), None)
    if body is None:
        raise MissingData("<Request> is empty", path="/cXML/Request")
    try:
        kind = RequestKind(body.tag)
    except ValueError:
        raise UnsupportedRequest(
            f"{body.tag} is not supported (OrderRequest, ConfirmationRequest, "
            "ShipNoticeRequest, InvoiceDetailRequest)",
            path=path_of(body),
        ) from None
    return CxmlMessage(envelope=envelope, kind=kind, document=to_canonical(kind, body))


def parse_response(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CxmlResponse:
    """The ``Response`` a partner answered our request with."""
    root = _root(data, max_bytes)
    response = root.find("Response")
    if response is None:
        raise NotCxml("no <Response> in the document", path="/cXML/Response")
    status = required(response, "Status")
    code = required_attr(status, "code")
    if not (code.isascii() and code.isdigit() and len(code) <= 9):
        raise InvalidValue(
            f"status code {show(code)} is not a number", path=f"{path_of(status)}/@code"
        )
    return CxmlResponse(
        payload_id=required_attr(root, "payloadID"),
        status_code=int(code),
        status_text=attr(status, "text") or "",
        message=own_text(status) or "",
    )


def credentials_match(
    message: CxmlMessage | CxmlEnvelope,
    expected_domain: str,
    expected_identity: str,
    expected_secret: str,
) -> bool:
    """True when the Sender credential is the expected one with the expected SharedSecret
    (constant-time comparisons; a missing secret never matches)."""
    envelope = message.envelope if isinstance(message, CxmlMessage) else message
    domain_ok = envelope.sender_domain.casefold() == expected_domain.casefold()
    identity_ok = hmac.compare_digest(envelope.sender_identity.encode(), expected_identity.encode())
    secret = envelope.shared_secret
    secret_ok = secret is not None and hmac.compare_digest(
        secret.encode(), expected_secret.encode()
    )
    return domain_ok and identity_ok and secret_ok and bool(expected_secret)


def authenticate(
    message: CxmlMessage | CxmlEnvelope,
    expected_domain: str,
    expected_identity: str,
    expected_secret: str,
) -> None:
    """``credentials_match`` or ``Unauthorized`` (401)."""
    if not credentials_match(message, expected_domain, expected_identity, expected_secret):
        raise Unauthorized(
            "the Sender credential or SharedSecret is not recognized",
            path="/cXML/Header/Sender/Credential",
        )


# --- rendering --------------------------------------------------------------------------------


def _stamp(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a cXML timestamp needs a time zone")
    return value.isoformat(timespec="seconds")


def _tostring(root: Element, dtd: str) -> bytes:
    doctype = f'<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/{CXML_VERSION}/{dtd}">'
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", doctype=doctype)
    return data


def _credential_el(parent: Element, tag: str, domain: str, identity: str) -> Element:
    credential = sub(sub(parent, tag), "Credential", domain=domain)
    sub(credential, "Identity", identity)
    return credential


def render(document: CxmlDocument, *, envelope: CxmlEnvelope) -> bytes:
    """The cXML request carrying ``document`` (UTF-8, with the cXML 1.2 DOCTYPE)."""
    kind = KIND_OF.get(type(document))
    if kind is None:
        raise TypeError(f"cXML does not carry a {type(document).__name__}")
    try:
        root = etree.Element(
            "cXML",
            payloadID=envelope.payload_id,
            timestamp=_stamp(envelope.timestamp),
            version=CXML_VERSION,
        )
        root.set(XML_LANG, "en-US")
        header = sub(root, "Header")
        _credential_el(header, "From", envelope.from_domain, envelope.from_identity)
        _credential_el(header, "To", envelope.to_domain, envelope.to_identity)
        sender = _credential_el(header, "Sender", envelope.sender_domain, envelope.sender_identity)
        if envelope.shared_secret is not None:
            sub(sender, "SharedSecret", envelope.shared_secret)
        sub(sender.getparent(), "UserAgent", envelope.user_agent)
        request = sub(root, "Request", deploymentMode=envelope.deployment_mode)
        write_request(request, document, _stamp(envelope.timestamp))
    except ValueError as exc:  # lxml: text that XML cannot carry (e.g. U+FFFE)
        raise RenderError(f"cannot render {kind.value}: {exc}") from None
    return _tostring(root, DTD[kind])


def render_response(
    status_code: int,
    text: str | None = None,
    *,
    payload_id: str,
    timestamp: datetime,
    message: str = "",
) -> bytes:
    """A cXML ``<Response><Status code=".." text="..">message</Status></Response>``;
    ``text`` defaults to the code's standard text (``STATUS_TEXT``)."""
    root = etree.Element("cXML", payloadID=payload_id, timestamp=_stamp(timestamp))
    root.set(XML_LANG, "en-US")
    status = sub(
        sub(root, "Response"),
        "Status",
        xml_safe(message) or None,
        code=str(status_code),
        text=xml_safe(text or STATUS_TEXT.get(status_code, "Error")),
    )
    status.set(XML_LANG, "en-US")
    return _tostring(root, "cXML.dtd")


def render_error(error: CxmlError, *, payload_id: str, timestamp: datetime) -> bytes:
    """The Response refusing a request: the error's status, its standard text, and the
    path and reason as the Status content."""
    return render_response(
        error.status,
        error.status_text,
        payload_id=payload_id,
        timestamp=timestamp,
        message=f"{error.path}: {error.reason}" if error.path else error.reason,
    )
