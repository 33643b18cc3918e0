"""Default posting rules (DESIGN.md, "Finance, by default"): a valued movement -> a balanced
journal entry.

| movement                         | debit                               | credit               |
| receipt                          | Inventory (facility)                | GRNI                 |
| dispense / clinical consumption  | Drug or supply expense (cost center)| Inventory            |
| transfer                         | Inventory (destination facility)    | Inventory (source)   |
| wastage                          | Wastage expense (cost center)       | Inventory            |
| return to supplier               | GRNI                                | Inventory            |
| count adjustment, gain / loss    | Inventory / Count adjustment        | Count adj. / Inventory|

An arrival that filled a negative balance (``ValuedMovement.revaluation``, see
medbridge.domain.ledger) adds two lines at the arrival's facility and cost center: the
difference between what the dispensed units cost and what they were expensed at corrects the
consumption expense (Dr drug or supply expense, Cr Inventory when the hole cost more; the
reverse when it cost less). A hole only ever comes from a dispense or a clinical consumption,
so that is the expense it corrects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import AccountRole, ItemCategory
from medbridge.canonical.movements import MovementKind
from medbridge.domain.errors import MissingAccount
from medbridge.domain.ledger import ValuedMovement

AccountMap = Mapping[tuple[str, AccountRole], str]
"""(facility, role) -> GL account code."""

Side = tuple[str, AccountRole, str | None]
"""(facility, role, cost center) of one side of a posting."""


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
    to_cost_center: str | None = None
    """The destination's cost center (a transfer that fills a negative balance there)."""
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
    if valued.amount == 0 and valued.revaluation == 0:
        return None
    m = valued.movement
    kind = m.kind
    inventory = (ctx.facility, AccountRole.INVENTORY, None)
    expense_role = _expense_role(ctx)
    debit: Side
    credit: Side
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
    lines = _pair(accounts, debit, credit, valued.amount) if valued.amount else []
    if valued.revaluation:
        lines += _revaluation(valued, ctx, accounts)
    where = m.location if kind is not MovementKind.TRANSFER else f"{m.location}->{m.to_location}"
    return JournalEntry(
        entry_id=ctx.entry_id,
        posting_date=ctx.posting_date,
        currency=ctx.currency,
        description=f"{kind.value} {m.item} x{abs(m.quantity)} @ {where}"[:200],
        source_event_id=ctx.source_event_id,
        correlation_id=ctx.correlation_id,
        lines=tuple(lines),
    )


def _expense_role(ctx: PostingContext) -> AccountRole:
    if ctx.category is ItemCategory.DRUG:
        return AccountRole.DRUG_EXPENSE
    return AccountRole.SUPPLY_EXPENSE


def _pair(accounts: AccountMap, debit: Side, credit: Side, amount: Decimal) -> list[JournalLine]:
    return [
        JournalLine(
            account=_account(accounts, debit[0], debit[1]),
            debit=amount,
            cost_center=debit[2],
            facility=debit[0],
        ),
        JournalLine(
            account=_account(accounts, credit[0], credit[1]),
            credit=amount,
            cost_center=credit[2],
            facility=credit[0],
        ),
    ]


def _revaluation(
    valued: ValuedMovement, ctx: PostingContext, accounts: AccountMap
) -> list[JournalLine]:
    """The consumption expense corrected where the arrival filled a negative balance."""
    if valued.movement.kind is MovementKind.TRANSFER:
        assert ctx.to_facility is not None
        facility, cost_center = ctx.to_facility, ctx.to_cost_center
    else:
        facility, cost_center = ctx.facility, ctx.cost_center
    expense: Side = (facility, _expense_role(ctx), cost_center)
    inventory: Side = (facility, AccountRole.INVENTORY, None)
    if valued.revaluation > 0:
        return _pair(accounts, expense, inventory, valued.revaluation)
    return _pair(accounts, inventory, expense, -valued.revaluation)
