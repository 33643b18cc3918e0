"""HL7 v2 -> canonical: RDS (dispense) and DFT (charged supply or drug) become inbound
movements; RDE (pharmacy order) becomes expected demand.

- RDS^O13 (O01 before 2.5), per RXD: 2 give code, 3 dispensed at, 4 amount, 5 unit, 18 lot,
  19 expiry, 30 dispensing pharmacy (the location).
- DFT^P03 / DFT^P11, per FT1 of type CG: 4 date, 7 code (or 29 NDC), 10 quantity (default 1),
  13 department (the location).
- RDE^O11 / RDE^O25 (O01): RXE 2 give code, 10 amount, 11 unit; ORC-2/3 order number.
- All: MSH-3/4 sender (the cross-reference namespace), 10 control id, 12 version; PV1-3.1
  point of care (-> cost center), PV1-19 visit number (-> an HMAC pseudonym).

PID is never read: no patient identity enters MedBridge. Location: the dispensing pharmacy
(RXD-30) or department (FT1-13), else the sending facility (MSH-4), mapped through the
location cross-reference of the sender.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import ValidationError

from medbridge.canonical.base import CanonicalModel
from medbridge.canonical.codes import CodeError, normalize_gtin, normalize_ndc
from medbridge.canonical.demand import PharmacyOrder
from medbridge.canonical.inbound import ExternalItem, InboundMovement, ItemCodeKind
from medbridge.canonical.movements import MovementKind
from medbridge.connectors.hl7v2.codec import Message, Segment, parse_date, parse_ts
from medbridge.connectors.hl7v2.errors import (
    ContentError,
    RequiredFieldMissing,
    UnsupportedMessage,
    UnsupportedVersion,
)

SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)
DISPENSE = {("RDS", "O13"), ("RDS", "O01")}
CHARGE = {("DFT", "P03"), ("DFT", "P11")}
ORDER = {("RDE", "O11"), ("RDE", "O25"), ("RDE", "O01")}
NDC_SYSTEMS = {"NDC", "N"}
GTIN_SYSTEMS = {"GTIN", "GS1"}
GLOBAL_SYSTEMS = {"RXNORM": "RXNORM", "RXN": "RXNORM", "SCT": "SCT", "SNM": "SCT"}
LOCAL_SYSTEMS = {"", "L", "LN", "99LOCAL"}

M = TypeVar("M", bound=CanonicalModel)
Where = tuple[str, int, int]
"""(segment, sequence, field) of the HL7 field a canonical field is read from."""


@dataclass(frozen=True)
class Header:
    version: str
    message_type: str
    trigger: str
    structure: str
    control_id: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    processing_id: str

    @property
    def source_system(self) -> str:
        """The cross-reference namespace: ``hl7:<application>@<facility>``."""
        return f"hl7:{self.sending_application}@{self.sending_facility}"

    @property
    def idempotency_key(self) -> str:
        """Sending application/facility + MSH-10. Frozen: never change this derivation."""
        return f"hl7:{self.sending_application}^{self.sending_facility}:{self.control_id}"


@dataclass
class Mapped:
    header: Header
    movements: list[InboundMovement] = field(default_factory=list)
    orders: list[PharmacyOrder] = field(default_factory=list)


def read_header(message: Message) -> Header:
    msh = message.msh
    version = msh.get(12)
    if not version:
        raise RequiredFieldMissing("MSH-12 version id is empty", segment="MSH", field=12)
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(
            f"HL7 version {version} is not supported (2.3 to 2.8)", segment="MSH", field=12
        )
    control_id = msh.get(10)
    if not control_id:
        raise RequiredFieldMissing("MSH-10 message control id is empty", segment="MSH", field=10)
    message_type, trigger = msh.get(9, 1), msh.get(9, 2)
    if (message_type, trigger) not in DISPENSE | CHARGE | ORDER:
        raise UnsupportedMessage(
            f"message type {message_type}^{trigger} is not taken here "
            "(RDS^O13, DFT^P03, DFT^P11, RDE^O11, RDE^O25)",
            segment="MSH",
            field=9,
        )
    return Header(
        version=version,
        message_type=message_type,
        trigger=trigger,
        structure=msh.get(9, 3),
        control_id=control_id,
        sending_application=msh.get(3),
        sending_facility=msh.get(4),
        receiving_application=msh.get(5),
        receiving_facility=msh.get(6),
        processing_id=msh.get(11) or "P",
    )


def pseudonym(secret: bytes, header: Header, visit: str) -> str | None:
    """A keyed pseudonym of the encounter: the same visit gives the same reference, and
    nobody without the secret can tell which visit it is."""
    if not visit:
        return None
    digest = hmac.new(secret, f"{header.sending_facility}|{visit}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def build(model: type[M], where: dict[str, Where], **values: Any) -> M:
    """``model(**values)``; a value the canonical model refuses (too long, empty once
    whitespace such as U+2028 is stripped, too many digits) is a ``ContentError`` naming the
    HL7 field it was read from (``where``, by canonical field name; MSH-4 for the rest)."""
    try:
        return model(**values)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        name = ".".join(str(part) for part in problem["loc"])
        segment, sequence, number = where.get(name, where.get(name.split(".")[0], _MSH4))
        cls = RequiredFieldMissing if problem["type"] == "string_too_short" else ContentError
        raise cls(
            f"{segment}-{number} ({model.__name__}.{name}): {problem['msg']}",
            segment=segment,
            sequence=sequence,
            field=number,
        ) from None


_MSH4: Where = ("MSH", 1, 4)
_SOURCE = {"source_system": _MSH4}


def map_message(message: Message, secret: bytes) -> Mapped:
    header = read_header(message)
    kind = (header.message_type, header.trigger)
    pv1 = message.first("PV1")
    visit = pseudonym(secret, header, pv1.get(19) if pv1 else "")
    patient_location = (pv1.get(3) or None) if pv1 else None
    mapped = Mapped(header)
    if kind in DISPENSE:
        rxds = message.all("RXD")
        if not rxds:
            raise RequiredFieldMissing(
                "an RDS message needs at least one RXD segment", segment="RXD"
            )
        for number, rxd in enumerate(rxds, start=1):
            mapped.movements.append(_dispense(header, rxd, number, visit, patient_location))
    elif kind in CHARGE:
        for number, ft1 in enumerate(message.all("FT1"), start=1):
            if ft1.get(6) == "CG":  # charges consume; credits and payments move no stock
                mapped.movements.append(_charge(header, ft1, number, visit, patient_location))
    else:
        rxe = message.first("RXE")
        if rxe is None:
            raise RequiredFieldMissing("an RDE message needs an RXE segment", segment="RXE")
        mapped.orders.append(_order(header, message, rxe, visit))
    return mapped


def _item(segment: Segment, number: int, sequence: int, header: Header) -> ExternalItem:
    code, text, system = (
        segment.get(number, 1),
        segment.get(number, 2),
        segment.get(number, 3).upper(),
    )
    if not code:
        raise RequiredFieldMissing(
            f"{segment.name}-{number} has no item code",
            segment=segment.name,
            sequence=sequence,
            field=number,
        )
    where = dict.fromkeys(("code", "text", "issuer"), (segment.name, sequence, number))
    try:
        if system in NDC_SYSTEMS:
            if not (
                code.isascii()
                and code.replace("-", "").isdigit()
                and len(code.replace("-", "")) == 10
                and "-" not in code
            ):
                normalize_ndc(code)  # validates the shape; 10 undashed digits are resolved later
            return build(ExternalItem, where, kind=ItemCodeKind.NDC, code=code, text=text or None)
        if system in GTIN_SYSTEMS:
            gtin = normalize_gtin(code)
            return build(ExternalItem, where, kind=ItemCodeKind.GTIN, code=gtin, text=text or None)
    except CodeError as error:
        raise ContentError(
            str(error), segment=segment.name, sequence=sequence, field=number
        ) from error
    issuer = None if system in LOCAL_SYSTEMS else GLOBAL_SYSTEMS.get(system, system)
    return build(
        ExternalItem,
        where,
        kind=ItemCodeKind.LOCAL,
        code=code,
        issuer=issuer,
        text=text or None,
    )


def _decimal(
    segment: Segment, number: int, sequence: int, default: Decimal | None = None
) -> Decimal:
    raw = segment.get(number)
    if not raw:
        if default is not None:
            return default
        raise RequiredFieldMissing(
            f"{segment.name}-{number} quantity is empty",
            segment=segment.name,
            sequence=sequence,
            field=number,
        )
    try:
        # NM is ASCII: Decimal() would also read Arabic-Indic digits, NaN and Infinity
        value = Decimal(raw) if raw.isascii() else Decimal("NaN")
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ContentError(
            f"{segment.name}-{number} {raw[:40]!r} is not a number",
            segment=segment.name,
            sequence=sequence,
            field=number,
        )
    if value <= 0:
        raise ContentError(
            f"{segment.name}-{number} must be positive",
            segment=segment.name,
            sequence=sequence,
            field=number,
        )
    return value


def _location(header: Header, segment: Segment, number: int) -> str:
    location = segment.get(number) or header.sending_facility
    if not location:
        raise RequiredFieldMissing(
            f"no location: {segment.name}-{number} and MSH-4 are both empty", segment="MSH", field=4
        )
    return location


def _dispense(
    header: Header, rxd: Segment, sequence: int, visit: str | None, patient_location: str | None
) -> InboundMovement:
    when = rxd.get(3)
    if not when:
        raise RequiredFieldMissing(
            "RXD-3 date/time dispensed is empty", segment="RXD", sequence=sequence, field=3
        )
    expiry = rxd.get(19)
    return build(
        InboundMovement,
        {
            **_SOURCE,
            "location": ("RXD", sequence, 30),
            "quantity": ("RXD", sequence, 4),
            "unit": ("RXD", sequence, 5),
            "lot": ("RXD", sequence, 18),
            "patient_location": ("PV1", 1, 3),
            "occurred_at": ("RXD", sequence, 3),
        },
        source_system=header.source_system,
        kind=MovementKind.DISPENSE,
        item=_item(rxd, 2, sequence, header),
        location=_location(header, rxd, 30),
        quantity=_decimal(rxd, 4, sequence),
        unit=rxd.get(5) or None,
        lot=rxd.get(18) or None,
        expiry=parse_date(expiry, ("RXD", 19)) if expiry else None,
        patient_location=patient_location,
        occurred_at=parse_ts(when, ("RXD", 3)),
        encounter_ref=visit,
    )


def _charge(
    header: Header, ft1: Segment, sequence: int, visit: str | None, patient_location: str | None
) -> InboundMovement:
    when = ft1.get(4)
    if not when:
        raise RequiredFieldMissing(
            "FT1-4 transaction date is empty", segment="FT1", sequence=sequence, field=4
        )
    item = _item(ft1, 29, sequence, header) if ft1.get(29) else _item(ft1, 7, sequence, header)
    return build(
        InboundMovement,
        {
            **_SOURCE,
            "location": ("FT1", sequence, 13),
            "quantity": ("FT1", sequence, 10),
            "patient_location": ("PV1", 1, 3),
            "occurred_at": ("FT1", sequence, 4),
        },
        source_system=header.source_system,
        kind=MovementKind.CLINICAL_CONSUMPTION,
        item=item,
        location=_location(header, ft1, 13),
        quantity=_decimal(ft1, 10, sequence, default=Decimal(1)),
        unit=None,
        patient_location=patient_location,
        occurred_at=parse_ts(when, ("FT1", 4)),
        encounter_ref=visit,
    )


def _order(header: Header, message: Message, rxe: Segment, visit: str | None) -> PharmacyOrder:
    orc = message.first("ORC")
    order_ref = (orc.get(2) or orc.get(3)) if orc else ""
    when = (orc.get(9) if orc else "") or message.msh.get(7)
    return build(
        PharmacyOrder,
        {
            **_SOURCE,
            "order_ref": ("ORC", 1, 2) if orc and orc.get(2) else ("ORC", 1, 3),
            "quantity": ("RXE", 1, 10),
            "unit": ("RXE", 1, 11),
            "location": _MSH4,
            "ordered_at": ("ORC", 1, 9) if orc and orc.get(9) else ("MSH", 1, 7),
        },
        source_system=header.source_system,
        order_ref=order_ref or header.control_id,
        item=_item(rxe, 2, 1, header),
        quantity=_decimal(rxe, 10, 1) if rxe.get(10) else None,
        unit=rxe.get(11) or None,
        location=header.sending_facility or None,
        ordered_at=parse_ts(when, ("ORC", 9) if orc and orc.get(9) else ("MSH", 7)),
        encounter_ref=visit,
    )
