"""A stock movement as a REST client posts it to ``/v1/stock-movements``: the demo's
vancomycin vials unless told otherwise; a receipt carries a unit cost (and an expiry when it
names a lot)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def movement(
    key: str,
    kind: str,
    location: str = "H1-PHARM",
    quantity: str | int = "5",
    *,
    lot: str | None = None,
    at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": key,
        "kind": kind,
        "item": "VANCO-1G",
        "location": location,
        "quantity": str(quantity),
        "unit": "VIAL",
        "occurred_at": at or datetime.now(UTC).isoformat(),
    }
    if lot is not None:
        body["lot"] = lot
    if kind == "receipt":
        body["unit_cost"] = {"amount": "6.85", "currency": "USD"}
        if lot is not None:
            body["expiry"] = "2028-03-31"
    return body | extra
