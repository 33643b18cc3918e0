"""A stock movement of the demo's vancomycin at H1's pharmacy, as a REST client posts it
to ``/v1/stock-movements`` (the tests that run MedBridge as a child process)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def movement(kind: str, quantity: int, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "item": "VANCO-1G",
        "location": "H1-PHARM",
        "quantity": str(quantity),
        "unit": "VIAL",
        "occurred_at": datetime.now(UTC).isoformat(),
        "idempotency_key": key,
        **extra,
    }
