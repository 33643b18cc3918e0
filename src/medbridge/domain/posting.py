"""Default posting rules (DESIGN.md, "Finance, by default"): a valued movement -> a balanced
journal entry.

| movement                         | debit                               | credit               |
| receipt                          | Inventory (facility)                | GRNI                 |
| dispense / clinical consumption  | Drug or supply expense (cost center)| Inventory            |
| transfer                         | Inventory (destination facility)    | Inventory (source)   |
| wastage                          | Wastage expense (cost center)       | Inventory            |
| return to supplier               | GRNI                                | Inventory            |
| count adjustment, gain / loss    | Inventory / Count adjustment        | Count adj. / Inventory|
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import AccountRole, ItemCategory
from medbridge.canonical.movements import MovementKind
from medbridge.domain.errors import MissingAccount
from medbridge.domain.ledger import ValuedMovement

AccountMap = Mapping[tuple[str, AccountRole], str]
"""(facility, role) -> GL account code."""


@dataclass(frozen=True)
class PostingContext:
    """What the rules need besides the movement: where it happened, in money terms."""

    entry_id: str
    source_event_id: str
    correlation_id: str
    posting_date: date
    category: ItemCategory
    facility: str
    cost_center: str | None
    to_facility: str | None = None
    currency: str = "USD"


def _account(accounts: AccountMap, facility: str, role: AccountRole) -> str:
    try:
        return accounts[(facility, role)]
    except KeyError:
        raise MissingAccount(facility, role.value) from None


def journal_entry_for(
    valued: ValuedMovement, ctx: PostingContext, accounts: AccountMap
) -> JournalEntry | None:
    """The journal entry for a valued movement, or None when it moved no value."""
    if valued.amount == 0:
        return None
    m = valued.movement
    kind = m.kind
    inventory = (ctx.facility, AccountRole.INVENTORY, None)
    expense_role = (
        AccountRole.DRUG_EXPENSE
        if ctx.category is ItemCategory.DRUG
        else AccountRole.SUPPLY_EXPENSE
    )
    debit: tuple[str, AccountRole, str | None]
    credit: tuple[str, AccountRole, str | None]
    if kind is MovementKind.RECEIPT:
        debit, credit = inventory, (ctx.facility, AccountRole.GRNI, None)
    elif kind in (MovementKind.DISPENSE, MovementKind.CLINICAL_CONSUMPTION):
        debit, credit = (ctx.facility, expense_role, ctx.cost_center), inventory
    elif kind is MovementKind.WASTAGE:
        debit, credit = (ctx.facility, AccountRole.WASTAGE_EXPENSE, ctx.cost_center), inventory
    elif kind is MovementKind.RETURN_TO_SUPPLIER:
        debit, credit = (ctx.facility, AccountRole.GRNI, None), inventory
    elif kind is MovementKind.TRANSFER:
        assert ctx.to_facility is not None
        debit, credit = (ctx.to_facility, AccountRole.INVENTORY, None), inventory
    else:  # count adjustment
        adjustment = (ctx.facility, AccountRole.COUNT_ADJUSTMENT, ctx.cost_center)
        debit, credit = (inventory, adjustment) if valued.is_gain else (adjustment, inventory)
    lines = (
        JournalLine(
            account=_account(accounts, debit[0], debit[1]),
            debit=valued.amount,
            cost_center=debit[2],
            facility=debit[0],
        ),
        JournalLine(
            account=_account(accounts, credit[0], credit[1]),
            credit=valued.amount,
            cost_center=credit[2],
            facility=credit[0],
        ),
    )
    where = m.location if kind is not MovementKind.TRANSFER else f"{m.location}->{m.to_location}"
    return JournalEntry(
        entry_id=ctx.entry_id,
        posting_date=ctx.posting_date,
        currency=ctx.currency,
        description=f"{kind.value} {m.item} x{abs(m.quantity)} @ {where}"[:200],
        source_event_id=ctx.source_event_id,
        correlation_id=ctx.correlation_id,
        lines=lines,
    )
