"""Domain errors.

DomainError
 +-- UnknownUnit          the item has no such unit (refused at the door, 422)
 +-- InsufficientStock    a request (wastage, return to supplier, transfer, count loss)
 |                        larger than what the ledger holds (permanent: needs a receipt or a
 |                        count adjustment, then a replay). Never raised for a dispense or a
 |                        clinical consumption: those are facts, applied and flagged
 |                        (medbridge.domain.ledger.StockDiscrepancy)
 +-- MissingAccount       a posting rule found no GL account for a role at a facility
 |                        (configuration: fixable, then replayed)
 +-- InvalidMovement      a movement the ledger cannot apply as given (a transfer to nowhere
                          or to its own location)
"""

from __future__ import annotations

from decimal import Decimal


class DomainError(Exception):
    """Root of the domain's errors. ``field`` names the input at fault where there is one."""

    field: str | None = None


class UnknownUnit(DomainError):
    field = "unit"

    def __init__(self, item: str, unit: str, known: list[str]) -> None:
        super().__init__(f"item {item} has no unit {unit!r} (known: {', '.join(known)})")
        self.item, self.unit = item, unit


class InsufficientStock(DomainError):
    field = "quantity"

    def __init__(self, item: str, location: str, lot: str | None, wanted: Decimal, held: Decimal):
        where = f"{item}@{location}" + (f" lot {lot}" if lot else "")
        super().__init__(f"{where}: cannot issue {wanted}, on hand {held}")
        self.item, self.location, self.lot, self.wanted, self.held = (
            item,
            location,
            lot,
            wanted,
            held,
        )


class MissingAccount(DomainError):
    def __init__(self, facility: str, role: str) -> None:
        super().__init__(f"no GL account assigned for role {role} at facility {facility}")
        self.facility, self.role = facility, role


class InvalidMovement(DomainError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
