"""FHIR R4 -> canonical: a validated resource becomes inbound movements in the sender's codes.

- MedicationDispense -> ``dispense``: the medication (``medicationCodeableConcept``, or the
  Medication that ``medicationReference`` points to, contained or in the same Bundle), its
  ``quantity`` (value; unit = ``code`` else ``unit``), ``location`` (the store that gave it;
  the client profile's ``default_location`` if absent), ``destination`` (the ward: cost
  center), ``whenHandedOver`` (else ``whenPrepared``, else the Bundle's ``timestamp``), lot
  and expiry from the Medication's ``batch``, ``context`` (the encounter: pseudonymised).
- SupplyDelivery -> ``transfer`` from ``supplier`` to ``destination``. Choice: the supplier is
  read as a location reference, so a restock from central supply to a ward cabinet moves stock
  between two MedBridge stores. A delivery from an outside vendor is a goods receipt, which
  needs the price and comes through the procurement connectors (X12 856, cXML): its supplier
  has no location cross-reference, so it lands in the exception queue, named. A delivery
  without ``supplier`` (0..1 in R4) is valid but says not where the stock came from: it is
  parked for review the same way (a reviewer fills the place in, or discards it), not refused.
- Procedure -> one ``clinical_consumption`` per ``usedCode`` / ``usedReference`` item, at the
  procedure's ``location``, ``performed[x]`` time; quantity 1 (the item's base unit) unless the
  item carries the used-quantity extension (valueQuantity).

Items: a valid NDC coding (``http://hl7.org/fhir/sid/ndc``) first, then a valid GTIN (GS1
systems, or a Device's GS1 UDI), then RxNorm / SNOMED CT codes (issuer ``RXNORM`` / ``SCT``),
then any other coding as the sender's own code. A malformed NDC or GTIN is passed over when
another coding exists, and refused (422) when it is the only one.

Only the statuses of the client profile (default ``completed``) move stock; ``entered-in-
error`` is refused (it cannot be un-applied automatically); any other status applies nothing.

PHI: ``subject``, ``patient``, ``receiver``, ``performer``, notes and contained Patients are
never read. The encounter reference only leaves as HMAC-SHA256(secret, source|reference).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.domainresource import DomainResource
from fhir.resources.R4B.element import Element
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationdispense import MedicationDispense
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.substance import Substance
from fhir.resources.R4B.supplydelivery import SupplyDelivery
from pydantic import ValidationError

from medbridge.canonical.codes import CodeError, normalize_gtin, normalize_ndc
from medbridge.canonical.inbound import ExternalItem, InboundMovement, ItemCodeKind
from medbridge.canonical.movements import MovementKind
from medbridge.connectors.fhir.config import FhirClientProfile
from medbridge.connectors.fhir.errors import UnmappableResource, UnsupportedResource

NDC = "http://hl7.org/fhir/sid/ndc"
GTIN = frozenset(
    {
        "https://www.gs1.org/gtin",
        "http://www.gs1.org/gtin",
        "urn:oid:1.3.160",
        "http://hl7.org/fhir/NamingSystem/gs1-di",
    }
)
GLOBAL = {"http://www.nlm.nih.gov/research/umls/rxnorm": "RXNORM", "http://snomed.info/sct": "SCT"}
CONSUMED = ("MedicationDispense", "SupplyDelivery", "Procedure")


@dataclass(frozen=True)
class Context:
    """What mapping needs besides the resource."""

    source_system: str
    secret: bytes
    profile: FhirClientProfile
    zone: ZoneInfo
    used_quantity_extension: str
    bundle: Mapping[str, Resource] = field(default_factory=dict)
    """The other resources of the same Bundle, by ``fullUrl`` and by ``Type/id``."""
    fallback_time: datetime | None = None
    """The Bundle's ``timestamp``, for a resource that carries no time of its own."""


@dataclass(frozen=True)
class Draft:
    movement: InboundMovement
    paths: Mapping[str, str]
    """Where each field came from (FHIRPath), to name it when its code does not resolve."""


@dataclass(frozen=True)
class Mapped:
    resource_type: str
    drafts: tuple[Draft, ...] = ()
    note: str | None = None
    """Why nothing is applied (status, no used items)."""


def pseudonym(secret: bytes, source_system: str, reference: str) -> str:
    """A keyed pseudonym of the encounter: stable per encounter, opaque without the secret."""
    digest = hmac.new(secret, f"{source_system}|{reference}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def map_resource(resource: Resource, ctx: Context) -> Mapped:
    if isinstance(resource, MedicationDispense):
        return _dispense(resource, ctx)
    if isinstance(resource, SupplyDelivery):
        return _delivery(resource, ctx)
    if isinstance(resource, Procedure):
        return _procedure(resource, ctx)
    raise UnsupportedResource(
        f"{resource.get_resource_type()} is not taken here ({', '.join(CONSUMED)})",
        path=resource.get_resource_type(),
    )


# --- the three resources ---------------------------------------------------------------------


def _gate(rt: str, status: str | None, ctx: Context) -> str | None:
    """None if the status moves stock, else why nothing is applied."""
    if status in ctx.profile.applied_statuses:
        return None
    if status == "entered-in-error":
        raise UnmappableResource(
            f"{rt} entered in error: an applied movement is not reversed automatically; "
            "correct the stock with a count adjustment",
            path=f"{rt}.status",
            code="business-rule",
        )
    return f"status {status!r}: no stock has moved, nothing applied"


def _dispense(md: MedicationDispense, ctx: Context) -> Mapped:
    rt = "MedicationDispense"
    note = _gate(rt, md.status, ctx)
    if note:
        return Mapped(rt, note=note)
    paths: dict[str, str] = {}
    item, lot, expiry = _item_choice(
        md,
        (md.medicationCodeableConcept, f"{rt}.medicationCodeableConcept"),
        (md.medicationReference, rt),
        ctx,
        missing=("no medication", f"{rt}.medication[x]"),
    )
    paths["item"] = item[1]
    quantity, unit = _quantity(md.quantity, f"{rt}.quantity", required=True)
    paths["quantity"] = paths["unit"] = f"{rt}.quantity"
    location, paths["location"] = _location(md, md.location, f"{rt}.location", ctx)
    destination = None
    if md.destination is not None and (md.destination.reference or md.destination.identifier):
        destination = _ref_code(md, md.destination, f"{rt}.destination", ctx)
        paths["patient_location"] = f"{rt}.destination"
    when = _when(md.whenHandedOver, f"{rt}.whenHandedOver", ctx, md.whenPrepared)
    draft = _draft(
        paths,
        kind=MovementKind.DISPENSE,
        source_system=ctx.source_system,
        item=item[0],
        location=location,
        quantity=quantity,
        unit=unit,
        lot=lot,
        expiry=expiry,
        patient_location=destination,
        occurred_at=when,
        encounter_ref=_encounter(md, md.context, f"{rt}.context", ctx),
    )
    return Mapped(rt, (draft,))


def _delivery(sd: SupplyDelivery, ctx: Context) -> Mapped:
    rt = "SupplyDelivery"
    note = _gate(rt, sd.status, ctx)
    if note:
        return Mapped(rt, note=note)
    supplied = sd.suppliedItem
    if supplied is None:
        raise UnmappableResource("no suppliedItem", path=f"{rt}.suppliedItem")
    base = f"{rt}.suppliedItem"
    item, lot, expiry = _item_choice(
        sd,
        (supplied.itemCodeableConcept, f"{base}.itemCodeableConcept"),
        (supplied.itemReference, base),
        ctx,
        missing=("no supplied item", f"{base}.item[x]"),
    )
    quantity, unit = _quantity(supplied.quantity, f"{base}.quantity", required=True)
    if sd.destination is None:
        raise UnmappableResource("no destination", path=f"{rt}.destination")
    if sd.occurrenceTiming is not None:
        raise UnmappableResource(
            "a delivery timed by a schedule is not one movement", path=f"{rt}.occurrenceTiming"
        )
    period = sd.occurrencePeriod
    when = _when(
        sd.occurrenceDateTime or (period and (period.end or period.start)),
        f"{rt}.occurrence[x]",
        ctx,
    )
    draft = _draft(
        {
            "item": item[1],
            "quantity": f"{base}.quantity",
            "unit": f"{base}.quantity",
            "location": f"{rt}.supplier",
            "to_location": f"{rt}.destination",
        },
        kind=MovementKind.TRANSFER,
        source_system=ctx.source_system,
        item=item[0],
        # no supplier (0..1 in R4): valid, but where the stock came from is unknown; the
        # movement is parked for review (the resolver names SupplyDelivery.supplier)
        location=None if sd.supplier is None else _ref_code(sd, sd.supplier, f"{rt}.supplier", ctx),
        to_location=_ref_code(sd, sd.destination, f"{rt}.destination", ctx),
        quantity=quantity,
        unit=unit,
        lot=lot,
        expiry=expiry,
        occurred_at=when,
    )
    return Mapped(rt, (draft,))


def _procedure(proc: Procedure, ctx: Context) -> Mapped:
    rt = "Procedure"
    note = _gate(rt, proc.status, ctx)
    if note:
        return Mapped(rt, note=note)
    used: list[tuple[Element, str]] = [
        *((c, f"{rt}.usedCode[{i}]") for i, c in enumerate(proc.usedCode or [])),
        *((r, f"{rt}.usedReference[{i}]") for i, r in enumerate(proc.usedReference or [])),
    ]
    if not used:
        return Mapped(rt, note="no used items (usedCode, usedReference): nothing applied")
    location, location_path = _location(proc, proc.location, f"{rt}.location", ctx)
    period = proc.performedPeriod
    when = _when(
        proc.performedDateTime or (period and (period.end or period.start)),
        f"{rt}.performed[x]",
        ctx,
    )
    encounter = _encounter(proc, proc.encounter, f"{rt}.encounter", ctx)
    drafts = []
    for element, path in used:
        concept = element if isinstance(element, CodeableConcept) else None
        reference = element if isinstance(element, Reference) else None
        item, lot, expiry = _item_choice(
            proc, (concept, path), (reference, path), ctx, missing=("no used item", path)
        )
        quantity, unit, quantity_path = Decimal(1), None, path
        for extension in element.extension or []:
            if extension.url == ctx.used_quantity_extension:
                quantity_path = f"{path}.extension('{extension.url}')"
                quantity, unit = _quantity(extension.valueQuantity, quantity_path, required=True)
        drafts.append(
            _draft(
                {
                    "item": item[1],
                    "quantity": quantity_path,
                    "unit": quantity_path,
                    "location": location_path,
                },
                kind=MovementKind.CLINICAL_CONSUMPTION,
                source_system=ctx.source_system,
                item=item[0],
                location=location,
                quantity=quantity,
                unit=unit,
                lot=lot,
                expiry=expiry,
                occurred_at=when,
                encounter_ref=encounter,
            )
        )
    return Mapped(rt, tuple(drafts))


# --- elements --------------------------------------------------------------------------------


def _draft(paths: dict[str, str], **values: Any) -> Draft:
    try:
        return Draft(InboundMovement(**values), paths)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        name = str(problem["loc"][0]) if problem["loc"] else "resource"
        where = paths.get(name, name)
        raise UnmappableResource(
            f"{where}: {problem['msg'].split(',')[0]}", path=where, code="value"
        ) from error


def _coded_item(
    codings: Sequence[tuple[str | None, str | None, str | None, str]], path: str
) -> tuple[ExternalItem, str]:
    """The item of the best coding: (system, code, display, path) each."""
    ranked: list[tuple[int, ExternalItem, str]] = []
    refused: list[tuple[str, str]] = []
    for system, code, display, where in codings:
        if not code:
            continue
        text = display[:200] if display else None
        try:
            if system == NDC:
                # 10 bare (ASCII) digits: the resolver's job
                if not (code.isascii() and code.isdigit() and len(code) == 10):
                    normalize_ndc(code)
                ranked.append((0, ExternalItem(kind=ItemCodeKind.NDC, code=code, text=text), where))
            elif system in GTIN:
                gtin = normalize_gtin(code)
                ranked.append(
                    (1, ExternalItem(kind=ItemCodeKind.GTIN, code=gtin, text=text), where)
                )
            elif len(code) <= 64:
                issuer = GLOBAL.get(system or "")
                rank = 2 if issuer else 3
                local = ExternalItem(kind=ItemCodeKind.LOCAL, code=code, issuer=issuer, text=text)
                ranked.append((rank, local, where))
        except CodeError as error:
            refused.append((where, str(error)))
    if ranked:
        _, item, where = min(ranked, key=lambda r: r[0])
        return item, where
    if refused:
        where, why = refused[0]
        raise UnmappableResource(why, path=where, code="value")
    raise UnmappableResource("no coded item (a coding with a code)", path=path)


def _item_choice(
    owner: DomainResource,
    concept: tuple[CodeableConcept | None, str],
    reference: tuple[Reference | None, str],
    ctx: Context,
    *,
    missing: tuple[str, str],
) -> tuple[tuple[ExternalItem, str], str | None, date | None]:
    """An item given as a code or as a reference (to a Medication, which may carry lot and
    expiry): the item with the path it came from, then lot and expiry."""
    if concept[0] is not None:
        return _concept_item(concept[0], concept[1]), None, None
    if reference[0] is not None:
        return _referenced_item(owner, reference[0], ctx, reference[1])
    raise UnmappableResource(missing[0], path=missing[1])


def _concept_item(concept: CodeableConcept, path: str) -> tuple[ExternalItem, str]:
    return _coded_item(
        [
            (c.system, c.code, c.display or concept.text, f"{path}.coding[{i}]")
            for i, c in enumerate(concept.coding or [])
        ],
        path,
    )


def _resolve(owner: DomainResource, ref: Reference, ctx: Context) -> tuple[Resource | None, str]:
    """The resource a reference points to, if it is in the message; and its path."""
    target = ref.reference or ""
    if target.startswith("#"):
        for i, contained in enumerate(owner.contained or []):
            if contained.id == target[1:]:
                return contained, f"{owner.get_resource_type()}.contained[{i}]"
        raise UnmappableResource(
            f"no contained resource {target}", path=f"{owner.get_resource_type()}.contained"
        )
    return ctx.bundle.get(target), target


def _referenced_item(
    owner: DomainResource, ref: Reference, ctx: Context, path: str
) -> tuple[tuple[ExternalItem, str], str | None, date | None]:
    """Item, lot and expiry of a referenced Medication, Device or Substance."""
    target, where = _resolve(owner, ref, ctx)
    if isinstance(target, Medication) and target.code is not None:
        batch = target.batch
        lot = batch.lotNumber if batch else None
        expiry = _expiry(batch.expirationDate, f"{where}.batch.expirationDate") if batch else None
        return _concept_item(target.code, f"{where}.code"), lot, expiry
    if isinstance(target, Device):
        codings: list[tuple[str | None, str | None, str | None, str]] = [
            (
                "urn:oid:1.3.160" if _gs1(u.issuer) else u.issuer,
                u.deviceIdentifier,
                None,
                f"{where}.udiCarrier[{i}]",
            )
            for i, u in enumerate(target.udiCarrier or [])
        ]
        if target.type is not None:
            codings += [
                (c.system, c.code, c.display, f"{where}.type.coding[{i}]")
                for i, c in enumerate(target.type.coding or [])
            ]
        expiry = _expiry(target.expirationDate, f"{where}.expirationDate")
        return _coded_item(codings, where), target.lotNumber, expiry
    if isinstance(target, Substance) and target.code is not None:
        instances = target.instance or []
        expiry = _expiry(instances[0].expiry, f"{where}.instance[0].expiry") if instances else None
        return _concept_item(target.code, f"{where}.code"), None, expiry
    if ref.identifier is not None and ref.identifier.value:
        system, value = ref.identifier.system, ref.identifier.value
        return _coded_item([(system, value, ref.display, f"{path}.identifier")], path), None, None
    raise UnmappableResource(
        "the referenced item is not in the message: contain the Medication/Device/Substance, "
        "put it in the same Bundle, or give the reference an identifier (e.g. an NDC)",
        path=path,
    )


def _gs1(issuer: str | None) -> bool:
    return issuer in GTIN or issuer == "http://hl7.org/fhir/NamingSystem/gs1"


def _quantity(q: Quantity | None, path: str, *, required: bool) -> tuple[Decimal, str | None]:
    if q is None or q.value is None:
        raise UnmappableResource("no quantity value", path=path)
    value = Decimal(str(q.value))
    if value <= 0 or q.comparator:
        raise UnmappableResource("the quantity must be an exact positive amount", path=path)
    unit = (q.code or q.unit or "").strip() or None
    return value, unit


def _ref_code(owner: DomainResource, ref: Reference, path: str, ctx: Context) -> str:
    """The sender's code of a referenced place: its reference, else its identifier."""
    if ref.reference and ref.reference.startswith("#"):
        target, where = _resolve(owner, ref, ctx)
        identifiers = getattr(target, "identifier", None) or []
        found = next((i for i in identifiers if i.value), None)
        if found is None:
            raise UnmappableResource(
                "a contained place needs an identifier to be cross-referenced", path=where
            )
        code = f"{found.system}|{found.value}" if found.system else str(found.value)
    elif ref.reference:
        code = ref.reference
    elif ref.identifier is not None and ref.identifier.value:
        system, value = ref.identifier.system, str(ref.identifier.value)
        code = f"{system}|{value}" if system else value
    else:
        raise UnmappableResource(
            "a display name alone cannot be cross-referenced: send a reference or an identifier",
            path=path,
        )
    if len(code) > 120:
        raise UnmappableResource("reference longer than 120 characters", path=path, code="value")
    return code


def _location(
    owner: DomainResource, ref: Reference | None, path: str, ctx: Context
) -> tuple[str, str]:
    if ref is not None:
        return _ref_code(owner, ref, path, ctx), path
    if ctx.profile.default_location:
        return ctx.profile.default_location, path
    raise UnmappableResource("no location: which store's stock moved", path=path)


def _encounter(owner: DomainResource, ref: Reference | None, path: str, ctx: Context) -> str | None:
    if ref is None or not (ref.reference or (ref.identifier and ref.identifier.value)):
        return None
    return pseudonym(ctx.secret, ctx.source_system, _ref_code(owner, ref, path, ctx))


def _when(value: Any, path: str, ctx: Context, *fallbacks: Any) -> datetime:
    for candidate in (value, *fallbacks):
        if isinstance(candidate, datetime):
            return candidate if candidate.tzinfo else candidate.replace(tzinfo=ctx.zone)
        if isinstance(candidate, date):
            return datetime.combine(candidate, time(0), tzinfo=ctx.zone)
        if candidate is not None:
            raise UnmappableResource(
                "a partial date (year or month) does not say when stock moved", path=path
            )
    if ctx.fallback_time is not None:
        return ctx.fallback_time.astimezone(UTC)
    raise UnmappableResource("no time: when the stock moved", path=path)


def _expiry(value: Any, path: str) -> date | None:
    """Expiry date; a month-year expiry runs to the end of that month."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    if len(text) == 7 and text[4] == "-":
        year, month = int(text[:4]), int(text[5:])
        return date(year, month, calendar.monthrange(year, month)[1])
    raise UnmappableResource("an expiry needs at least year and month", path=path, code="value")
