"""The FHIR wire format: JSON and XML in, the FHIR release recognised, R4 models out; JSON or
XML answers back.

Decoding is bounded (``max_body_bytes``) and XML is read safely: no DTD, no entities, no
network, no huge trees; a DOCTYPE is refused outright. XML is turned into the JSON form
(the cardinalities come from the models of the release being tried), so that JSON and XML
go through one validation path.

Version recognition: the resource is validated with fhir.resources' R4B models (the R4-
shaped release this library validates; 4.0.1 models exist only for pydantic v1). If that
fails, the STU3 and R5 models are tried, and known markers of each release are looked for
(``notDone``, ``Medication.isBrand``, ``http://hl7.org/fhir/v3/`` system URIs for STU3;
``occurrence[x]``, CodeableReference ``reason``/``medication``, a list ``suppliedItem`` for
R5). The answer names the release recognised, or, if none, the R4 problems one by one.
"""

from __future__ import annotations

import importlib
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B.resource import Resource
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.utils import get_fhir_type_name, is_list_type, is_primitive_type
from lxml import etree
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from medbridge.connectors.fhir.errors import (
    FhirError,
    InvalidResource,
    Issue,
    MalformedPayload,
    PayloadTooLarge,
    UnsafeXml,
    UnsupportedMediaType,
    WrongFhirVersion,
)

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
XML_TYPES = frozenset(
    {"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"}
)
MAX_ISSUES = 25
_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})


class WireFormat(StrEnum):
    JSON = "json"
    XML = "xml"

    @property
    def media_type(self) -> str:
        return f"application/fhir+{self.value}"


class Release(StrEnum):
    """The FHIR releases told apart; only R4 is taken."""

    R4 = "R4"  # validated with the R4B models (R4-shaped)
    STU3 = "STU3"
    R5 = "R5"


_MODULES = {
    Release.R4: "fhir.resources.R4B",
    Release.STU3: "fhir.resources.STU3",
    Release.R5: "fhir.resources",
}
_MIME_VERSIONS = {"4.0": Release.R4, "4.3": Release.R4, "3.0": Release.STU3, "5.0": Release.R5}


def model_class(release: Release, name: str) -> type[FHIRAbstractModel]:
    """The model of a resource or element type in a release; ValueError if it has none."""
    module = importlib.import_module(_MODULES[release])
    found: type[FHIRAbstractModel] = module.get_fhir_model_class(name)
    return found


# --- media types and decoding --------------------------------------------------------------


def media_format(content_type: str | None) -> tuple[WireFormat, Release | None]:
    """The wire format of a Content-Type, and the release its ``fhirVersion`` names."""
    mime, *params = (part.strip() for part in (content_type or "").split(";"))
    mime = mime.lower()
    if mime in JSON_TYPES:
        fmt = WireFormat.JSON
    elif mime in XML_TYPES:
        fmt = WireFormat.XML
    else:
        raise UnsupportedMediaType(
            f"content type {mime or '(none)'!r} is not taken: send application/fhir+json "
            "or application/fhir+xml"
        )
    release = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "fhirversion":
            version = ".".join(value.strip().strip('"').split(".")[:2])
            release = _MIME_VERSIONS.get(version)
            if release is None:
                raise UnsupportedMediaType(f"fhirVersion {version} is not a release taken here")
    return fmt, release


def negotiate(accept: str | None, request_format: WireFormat) -> WireFormat:
    """Answer in XML if the client accepts only XML (or sent XML and states no preference)."""
    wanted = (accept or "").lower()
    if "xml" in wanted and "json" not in wanted:
        return WireFormat.XML
    if "json" in wanted:
        return WireFormat.JSON
    return request_format


@dataclass
class Payload:
    """One decoded resource: its JSON form, and for XML the element it came from (re-read
    with another release's cardinalities when recognising the release)."""

    format: WireFormat
    data: dict[str, Any]
    element: Any = None
    _other: dict[Release, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def resource_type(self) -> str:
        return str(self.data.get("resourceType", ""))

    def as_release(self, release: Release) -> dict[str, Any]:
        if self.element is None or release is Release.R4:
            return self.data
        if release not in self._other:
            self._other[release] = xml_to_json(self.element, release)
        return self._other[release]

    def entries(self) -> Iterator[tuple[dict[str, Any], Payload | None]]:
        """A Bundle's entries: each without its resource, and the resource as a Payload."""
        raw = self.data.get("entry") or []
        if not isinstance(raw, list):  # e.g. "entry": 1.5, before any model has read it
            raise MalformedPayload("Bundle.entry is not a list of entries", path="Bundle.entry")
        elements = (
            [e.find(f"{{{FHIR_NS}}}resource") for e in self.element.iterfind(f"{{{FHIR_NS}}}entry")]
            if self.element is not None
            else [None] * len(raw)
        )
        for entry, holder in zip(raw, elements, strict=True):
            if not isinstance(entry, dict):
                yield {}, None
                continue
            shell = {k: v for k, v in entry.items() if k != "resource"}
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                yield shell, None
                continue
            inner = _first_element(holder) if holder is not None else None
            yield shell, Payload(self.format, resource, inner)


def decode(raw: bytes, content_type: str | None, *, max_bytes: int) -> Payload:
    fmt, release = media_format(content_type)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body of {len(raw)} bytes is over the limit of {max_bytes}")
    if release is not None and release is not Release.R4:
        raise WrongFhirVersion(
            f"Content-Type says fhirVersion {release.value}: this endpoint takes FHIR R4",
            version=release.value,
        )
    if fmt is WireFormat.JSON:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise MalformedPayload(f"not JSON: {error.msg} at position {error.pos}") from error
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise MalformedPayload("not a FHIR resource: no resourceType", path="resourceType")
        return Payload(fmt, data)
    root = _parse_xml(raw)
    try:
        data = xml_to_json(root, Release.R4)
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedPayload(f"XML not readable as FHIR ({type(error).__name__})") from error
    return Payload(fmt, data, root)


def _parse_xml(raw: bytes) -> Any:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(raw, parser=parser)
    except etree.XMLSyntaxError as error:
        raise MalformedPayload(f"not well-formed XML: {error.msg}") from error
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise UnsafeXml("a DOCTYPE is not allowed in FHIR XML")
    if etree.QName(root).namespace != FHIR_NS:
        raise MalformedPayload(f"the root element is not in the FHIR namespace {FHIR_NS}")
    return root


# --- XML -> JSON ---------------------------------------------------------------------------


def _first_element(element: Any) -> Any:
    return next((c for c in element if isinstance(c.tag, str)), None)


@cache
def _fields(cls: type[FHIRAbstractModel]) -> dict[str, FieldInfo]:
    return {
        (f.alias or name): f
        for name, f in cls.model_fields.items()
        if not (f.alias or name).startswith("_") and name not in ("fhir_comments", "resource_type")
    }


def _element_type(info: FieldInfo) -> str:
    """``abc.QuantityType | None`` -> ``Quantity``; ``ResourceType`` -> ``Resource``."""

    def walk(annotation: Any) -> Iterator[Any]:
        args = typing.get_args(annotation)
        if not args:
            yield annotation
        for arg in args:
            yield from walk(arg)

    for candidate in walk(info.annotation):
        name = getattr(candidate, "__name__", "")
        if name.endswith("Type") and name != "NoneType":
            return name[: -len("Type")]
    raise ValueError(f"no FHIR type in {info.annotation!r}")


def xml_to_json(element: Any, release: Release) -> dict[str, Any]:
    """A resource element in its JSON form. Elements the release does not define are kept
    (as best read) so that validation names them and version markers can be found."""
    name = etree.QName(element).localname
    try:
        cls = model_class(release, name)
    except ValueError:
        return {"resourceType": name, **_generic(element)}
    return {"resourceType": name, **_complex(element, cls, release)}


def _put(out: dict[str, Any], key: str, value: Any, many: bool | None) -> None:
    if many is None:  # unknown element: a list only once it repeats
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    elif many:
        out.setdefault(key, []).append(value)
    else:
        out[key] = value


def _complex(element: Any, cls: type[FHIRAbstractModel], release: Release) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in element.attrib.items() if k in ("id", "url")}
    fields = _fields(cls)
    for child in element:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        if qname.namespace == XHTML_NS:
            out["div"] = etree.tostring(child, encoding="unicode", with_tail=False)
            continue
        name = qname.localname
        info = fields.get(name) if qname.namespace == FHIR_NS else None
        if info is None:
            _put(out, name, _generic(child), None)
            continue
        many = is_list_type(info)
        if is_primitive_type(info):
            _primitive(out, name, child, get_fhir_type_name(info), many, release)
            continue
        kind = _element_type(info)
        if kind == "Resource":
            inner = _first_element(child)
            value: Any = xml_to_json(inner, release) if inner is not None else {}
        else:
            value = _complex(child, model_class(release, kind), release)
        _put(out, name, value, many)
    return out


def _primitive(
    out: dict[str, Any], name: str, child: Any, kind: str, many: bool, release: Release
) -> None:
    raw = child.get("value")
    value: Any = raw
    if raw is not None and kind == "boolean" and raw in ("true", "false"):
        value = raw == "true"
    elif raw is not None and kind in _INTEGERS and re.fullmatch(r"-?[0-9]{1,18}", raw):
        # bounded: int() refuses 4,301 digits and more; FHIR integers are 32-bit anyway
        value = int(raw)
    extension = _complex(child, model_class(release, "Element"), release)
    if many:
        out.setdefault(name, []).append(value)
        if extension or f"_{name}" in out:
            ext = out.setdefault(f"_{name}", [None] * (len(out[name]) - 1))
            ext.append(extension or None)
    else:
        if value is not None:
            out[name] = value
        if extension:
            out[f"_{name}"] = extension


def _generic(element: Any) -> Any:
    children = [c for c in element if isinstance(c.tag, str)]
    if not children and "value" in element.attrib:
        return element.get("value")
    out: dict[str, Any] = {k: v for k, v in element.attrib.items() if k != "value"}
    for child in children:
        _put(out, etree.QName(child).localname, _generic(child), None)
    return out


# --- release recognition ---------------------------------------------------------------------

_MARKERS: dict[Release, dict[str, tuple[str, ...]]] = {
    Release.STU3: {
        "MedicationDispense": (
            *("notDone", "notDoneReasonCodeableConcept", "notDoneReasonReference"),
            "performer.onBehalfOf",
        ),
        "Procedure": ("notDone", "notDoneReason", "definition", "context"),
        "Medication": ("isBrand", "isOverTheCounter", "package"),
        "Provenance": (
            *("agent.whoReference", "agent.whoUri", "agent.onBehalfOfReference"),
            "signature.whoReference",
        ),
    },
    Release.R5: {
        "Procedure": (
            *(f"occurrence{t}" for t in ("DateTime", "Period", "String", "Age", "Range")),
            *("occurrenceTiming", "reportedReference", "reportedBoolean", "reason", "used"),
            *("recorded", "focus", "supportingInfo"),
        ),
        "MedicationDispense": (
            *("medication", "encounter", "notPerformedReason", "recorded"),
            "renderedDosageInstruction",
        ),
        "Medication": ("doseForm", "totalVolume", "marketingAuthorizationHolder"),
    },
}
_STU3_SYSTEMS = ("http://hl7.org/fhir/v3/", "http://hl7.org/fhir/v2/")


def find_markers(data: dict[str, Any]) -> dict[Release, list[str]]:
    """Elements (as FHIRPaths) that only STU3 or only R5 has."""
    found: dict[Release, list[str]] = {Release.STU3: [], Release.R5: []}
    if isinstance(data.get("suppliedItem"), list) and data.get("resourceType") == "SupplyDelivery":
        found[Release.R5].append("SupplyDelivery.suppliedItem (a list)")

    def walk(node: Any, resource: str, relative: str, path: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, resource, relative, f"{path}[{i}]")
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("resourceType"), str) and relative:
            resource, relative = node["resourceType"], ""
        for key, value in node.items():
            inner = f"{relative}.{key}" if relative else key
            where = f"{path}.{key}"
            for release, markers in _MARKERS.items():
                if inner in markers.get(resource, ()):
                    found[release].append(where)
            if key == "system" and isinstance(value, str) and value.startswith(_STU3_SYSTEMS):
                found[Release.STU3].append(f"{where} (http://hl7.org/fhir/v3/ or /v2/ URI)")
            walk(value, resource, inner, where)

    walk(data, str(data.get("resourceType")), "", str(data.get("resourceType")))
    return found


def fhirpath(resource_type: str, loc: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _redact(message: str, value: Any) -> str:
    """Pydantic messages may quote the input (a birth date, a name): never pass it on."""
    if isinstance(value, str) and value.strip() and value in message:
        message = message.replace(repr(value), "(value withheld)")
        message = message.replace(value, "(value withheld)")
    return _unquote_regex(message)


def _unquote_regex(message: str) -> str:
    r"""``... regex. 'input'`` -> ``... regex.``: fhir_core quotes the input after the pattern.
    A scan from the end, not a regular expression: ``regex\.\s*'[^']*'`` searched through
    a message quoting hostile input takes quadratic time."""
    text = message.rstrip()
    if len(text) < 2 or not text.endswith("'"):
        return message
    opening = text.rfind("'", 0, len(text) - 1)
    if opening == -1:
        return message
    head = text[:opening].rstrip()
    return head if head.endswith("regex.") else message


_PLAIN = {
    "extra_forbidden": "element not defined in FHIR R4",
    "missing": "required element missing",
}


def validation_issues(error: ValidationError, resource_type: str) -> list[Issue]:
    issues = []
    for problem in error.errors(include_url=False)[:MAX_ISSUES]:
        where = fhirpath(resource_type, tuple(problem["loc"]))
        text = _PLAIN.get(problem["type"]) or _redact(problem["msg"], problem.get("input"))
        kind = "structure" if problem["type"] in _PLAIN else "value"
        issues.append(Issue("error", kind, f"{where}: {text}", (where,)))
    return issues


def _try(cls: type[FHIRAbstractModel], data: dict[str, Any]) -> FHIRAbstractModel | None:
    try:
        return cls.model_validate(data)
    except Exception:  # any failure of another release's model means "not that release"
        return None


def recognise(payload: Payload) -> Resource:
    """The payload as an R4 (R4B model) resource, or the reason it is not one."""
    rt = payload.resource_type
    try:
        cls = model_class(Release.R4, rt)
    except ValueError as error:
        raise InvalidResource(f"{rt!r} is not a FHIR R4 resource type", path=rt) from error
    if not issubclass(cls, Resource):
        raise InvalidResource(f"{rt!r} is a data type, not a resource", path=rt)
    unknown = [
        Issue("error", "structure", f"{where}: {name!r} is not a FHIR R4 resource type", (where,))
        for where, name in _nested_types(payload.data, rt)
        if not _known(name)
    ]
    if unknown:
        raise _mismatch(payload, rt, unknown)
    try:
        resource = cls.model_validate(payload.data)
    except ValidationError as error:
        problems = validation_issues(error, rt)
    except (TypeError, ValueError, KeyError) as error:
        raise InvalidResource(f"not a valid FHIR R4 {rt}: {type(error).__name__}") from error
    else:
        assert isinstance(resource, Resource)
        return resource
    raise _mismatch(payload, rt, problems)


def _known(name: str) -> bool:
    try:
        model_class(Release.R4, name)
    except ValueError:
        return False
    return True


def _nested_types(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, resourceType) of every resource inside this one (contained, outcome ...)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _nested_types(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
                yield f"{path}.{key}", value["resourceType"]
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict) and isinstance(item.get("resourceType"), str):
                        yield f"{path}.{key}[{i}]", item["resourceType"]
            yield from _nested_types(value, f"{path}.{key}")


def _mismatch(payload: Payload, rt: str, problems: list[Issue]) -> FhirError:
    markers = find_markers(payload.data)
    valid: list[Release] = []
    for release in (Release.STU3, Release.R5):
        try:
            other = model_class(release, rt)
        except ValueError:
            continue
        try:
            data = payload.as_release(release)
        except (ValueError, TypeError, KeyError):  # not readable as that release
            continue
        if _try(other, data) is not None:
            valid.append(release)
    if len(valid) > 1:
        valid.sort(key=lambda r: len(markers[r]), reverse=True)
    if valid:
        release, evidence = valid[0], f"it validates against the {valid[0].value} models"
    else:
        ranked = sorted(markers, key=lambda r: len(markers[r]), reverse=True)
        release = ranked[0]
        if not markers[release]:
            return InvalidResource(f"not a valid FHIR R4 {rt}", issues=problems)
        evidence = f"it has {release.value} elements, though it is not valid {release.value} either"
    seen = ", ".join(markers[release][:6]) or "none"
    message = (
        f"FHIR {release.value} {rt} recognised ({evidence}; {release.value} markers: {seen}). "
        f"This endpoint takes FHIR R4 (4.0.1, validated as R4B): convert the resource to R4."
    )
    head = Issue("error", "not-supported", message, (rt,))
    return WrongFhirVersion(message, version=release.value, issues=[head, *problems])


# --- answers -----------------------------------------------------------------------------------


def render(body: dict[str, Any], fmt: WireFormat) -> bytes:
    """An answer (OperationOutcome or Bundle, as JSON) in the wire format asked for."""
    if fmt is WireFormat.JSON:
        return orjson.dumps(body)
    model = model_class(Release.R4, str(body["resourceType"])).model_validate(body)
    xml: Any = model.model_dump_xml()  # annotated str, returns lxml's bytes
    return xml if isinstance(xml, bytes) else str(xml).encode()
