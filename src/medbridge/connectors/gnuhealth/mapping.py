"""A done GNU Health ``stock.move`` whose origin is a prescription -> one ``InboundMovement``.

What is read (``MOVE_FIELDS``) is all that is ever asked of the server: product, unit, lot,
source location, quantity, dates and the origin reference. The patient (``origin.patient``:
name, PUID/MRN, date of birth) is never requested, so it cannot leak from here; the only trace
of the prescription is ``encounter_ref``, a keyed pseudonym of its record id.

Codes stay the source's own: ``product.code`` (``ExternalItem`` of the configured kind, local by
default), the source location's code, the unit's symbol; ``masterdata`` resolves them. A
product or location without a code is passed on as ``product:<id>`` / ``location:<id>``
(the record's own identity in GNU Health), so it parks in the exception queue with a
reason instead of being dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from medbridge.canonical.inbound import ExternalItem, InboundMovement
from medbridge.canonical.movements import MovementKind
from medbridge.connectors.gnuhealth.codec import to_utc
from medbridge.connectors.gnuhealth.config import NAME, GnuHealthConfig
from medbridge.connectors.gnuhealth.errors import GnuHealthProtocolError

MOVE_MODEL = "stock.move"
PRESCRIPTION_MODEL = "gnuhealth.prescription.order"

MOVE_FIELDS: tuple[str, ...] = (
    "id",
    "state",
    "write_date",
    "create_date",
    "effective_date",
    "quantity",
    "origin",
    "product.code",
    "product.name",
    "unit.symbol",
    "lot.number",
    "lot.expiration_date",
    "from_location.code",
)
"""The fields asked of the server. Nothing about the patient: keep it that way."""

_ORIGIN = re.compile(rf"^{re.escape(PRESCRIPTION_MODEL)},(\d+)$")
_MICRO = Decimal("0.000001")


def idempotency_key(database: str, move_id: int) -> str:
    """``gnuhealth:<database>:stock.move:<id>``. Frozen: changing it re-applies every dispense."""
    return f"{NAME}:{database}:{MOVE_MODEL}:{move_id}"


def encounter_ref(secret: bytes, database: str, prescription_id: int) -> str:
    """HMAC-SHA256(secret, ``gnuhealth:<database>:<prescription id>``), 32 hex characters."""
    message = f"{NAME}:{database}:{prescription_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def modified_at(record: dict[str, Any]) -> datetime:
    """The cursor position of a record: its ``write_date`` (else ``create_date``), aware UTC."""
    stamp = record.get("write_date") or record.get("create_date")
    if not isinstance(stamp, datetime):
        raise _bad(record, "write_date", "missing or not a datetime")
    return to_utc(stamp)


def parse(record: dict[str, Any], config: GnuHealthConfig) -> InboundMovement:
    """Map one decoded ``search_read`` record (``MOVE_FIELDS``) to an inbound dispense."""
    move_id = record.get("id")
    if not isinstance(move_id, int):
        raise GnuHealthProtocolError(f"{MOVE_MODEL} record without an integer id")
    product = _related(record, "product")
    if product is None:
        raise _bad(record, "product", "a move without a product")
    location = _related(record, "from_location")
    if location is None:
        raise _bad(record, "from_location", "a move without a source location")
    unit = _related(record, "unit") or {}
    lot = _related(record, "lot")
    secret = config.pseudonym_secret.get_secret_value().encode()
    return InboundMovement(
        source_system=config.source_system,
        kind=MovementKind.DISPENSE,
        item=ExternalItem(
            kind=config.item_code_kind,
            code=product.get("code") or f"product:{product.get('id')}",
            text=str(product["name"])[:200] if product.get("name") else None,
        ),
        location=location.get("code") or f"location:{location.get('id')}",
        quantity=_quantity(record),
        unit=unit.get("symbol") or None,
        lot=(lot or {}).get("number") or None,
        expiry=_date_or_none(record, (lot or {}).get("expiration_date"), "lot.expiration_date"),
        occurred_at=_occurred_at(record),
        encounter_ref=encounter_ref(secret, config.database, _prescription_id(record)),
    )


def _related(record: dict[str, Any], field: str) -> dict[str, Any] | None:
    """trytond 7 answers dotted fields nested under ``"<field>."`` (None when unset)."""
    value = record.get(f"{field}.")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(record, field, "related values are not an object")
    return value


def _prescription_id(record: dict[str, Any]) -> int:
    origin = record.get("origin")
    match = _ORIGIN.match(origin) if isinstance(origin, str) else None
    if match is None:
        raise _bad(record, "origin", f"not a {PRESCRIPTION_MODEL} reference")
    return int(match.group(1))


def _quantity(record: dict[str, Any]) -> Decimal:
    raw = record.get("quantity")
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
        raise _bad(record, "quantity", "missing or not a number")
    quantity = Decimal(str(raw))  # str(): 0.1 stays 0.1, not the float's binary expansion
    exponent = quantity.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        quantity = quantity.quantize(_MICRO)
    return quantity


def _occurred_at(record: dict[str, Any]) -> datetime:
    """When the move was done: ``write_date``, unless ``effective_date`` says another day
    (back-dated entry); then noon UTC of that day, which is that calendar day from UTC-11 to
    UTC+11."""
    done = modified_at(record)
    effective = _date_or_none(record, record.get("effective_date"), "effective_date")
    if effective is None or effective == done.date():
        return done
    return datetime.combine(effective, time(12), tzinfo=UTC)


def _date_or_none(record: dict[str, Any], value: Any, field: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise _bad(record, field, "not a date")
    return value


def _bad(record: dict[str, Any], field: str, reason: str) -> GnuHealthProtocolError:
    return GnuHealthProtocolError(f"{MOVE_MODEL} {record.get('id')}: {field}: {reason}")
