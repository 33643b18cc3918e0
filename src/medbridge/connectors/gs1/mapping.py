"""A decoded receiving scan -> one receipt ``InboundMovement`` in the scanner's codes.

The item stays a GTIN (``ExternalItem(kind=GTIN)``): ``masterdata`` resolves it to the item,
or to the item and pack unit for a pack GTIN, and an unknown GTIN is parked in the exception
queue by ``medbridge.flows.inbound``, never guessed here.

``unit_cost`` is left ``None``: a scan carries no price. A receipt needs a unit cost
downstream; receiving against a purchase order supplies it (the PO line's price).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import ValidationError

from medbridge.canonical.inbound import ExternalItem, InboundMovement, ItemCodeKind
from medbridge.canonical.movements import MovementKind
from medbridge.connectors.gs1.codec import Gs1Scan
from medbridge.connectors.gs1.config import Gs1Config
from medbridge.connectors.gs1.errors import Expired, Malformed, NoGtin


def use_by(scan: Gs1Scan) -> date | None:
    """The date after which the goods must not be used: expiry (17), else best before (15)."""
    return scan.expiry or scan.best_before


def to_receipt_line(
    scan: Gs1Scan,
    *,
    location: str,
    source_system: str,
    received_at: datetime,
    quantity: int | Decimal | None = None,
    config: Gs1Config | None = None,
) -> InboundMovement:
    """One receipt of the scanned trade item at ``location`` (in ``source_system``'s codes).

    Quantity: ``quantity`` if given, else the scan's (30)/(37) count, else 1, counted in the
    scanned GTIN's level (a pack GTIN resolves to its pack unit). ``NoGtin`` for a scan with
    no (01) (an SSCC label is a logistic unit, not a receipt line); ``Expired`` when
    ``config.refuse_expired`` and the use-by date is before ``config.today`` (default: the
    date of ``received_at``).
    """
    config = config or Gs1Config()
    if scan.gtin is None:
        raise NoGtin("the scan carries no GTIN (01): not a trade item")
    expiry = use_by(scan)
    today = config.today or received_at.date()
    if config.refuse_expired and expiry is not None and expiry < today:
        raise Expired(f"GTIN {scan.gtin} lot {scan.lot}: expired on {expiry.isoformat()}")
    count = quantity if quantity is not None else (scan.quantity or 1)
    reason = f"serial {scan.serial}" if scan.serial else None
    try:
        return _movement(scan, expiry, count, reason, location, source_system, received_at)
    except ValidationError as error:  # e.g. a lot of only spaces: no lot at all
        problem = error.errors(include_url=False)[0]
        name = ".".join(str(part) for part in problem["loc"])
        reason = f"the scan's {name} does not fit a receipt line: {problem['msg']}"
        raise Malformed(reason) from None


def _movement(
    scan: Gs1Scan,
    expiry: date | None,
    count: int | Decimal,
    reason: str | None,
    location: str,
    source_system: str,
    received_at: datetime,
) -> InboundMovement:
    return InboundMovement(
        source_system=source_system,
        kind=MovementKind.RECEIPT,
        item=ExternalItem(kind=ItemCodeKind.GTIN, code=scan.gtin),
        location=location,
        quantity=Decimal(count),
        lot=scan.lot,
        expiry=expiry,
        occurred_at=received_at,
        reason=reason,
    )
