"""Default posting rules (medbridge.domain.posting): a valued movement -> a balanced journal entry.

The table in DESIGN.md ("Finance, by default"):

| movement                        | debit                                 | credit              |
| receipt                         | Inventory (facility)                  | GRNI                |
| dispense / clinical consumption | Drug or supply expense (cost center)  | Inventory           |
| transfer                        | Inventory (destination facility)      | Inventory (source)  |
| wastage                         | Wastage expense (cost center)         | Inventory           |
| return to supplier              | GRNI                                  | Inventory           |
| count adjustment, gain / loss   | Inventory / Count adjustment          | Count adj. / Inv.   |
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import AccountRole, ItemCategory
from medbridge.canonical.movements import MovementKind
from medbridge.domain.errors import DomainError, MissingAccount
from medbridge.domain.ledger import LedgerMovement, ValuedMovement
from medbridge.domain.posting import AccountMap, PostingContext, journal_entry_for

D = Decimal
F1, F2 = "F1", "F2"
ICU = "CC-ICU"

GL_CODES = {
    AccountRole.INVENTORY: "1400",
    AccountRole.GRNI: "2150",
    AccountRole.ACCOUNTS_PAYABLE: "2100",
    AccountRole.DRUG_EXPENSE: "5100",
    AccountRole.SUPPLY_EXPENSE: "5200",
    AccountRole.WASTAGE_EXPENSE: "5300",
    AccountRole.COUNT_ADJUSTMENT: "5900",
    AccountRole.PURCHASE_PRICE_VARIANCE: "5950",
}


def gl(facility: str, role: AccountRole) -> str:
    """The account code of ``role`` at ``facility``: 1400-F1 is F1's inventory."""
    return f"{GL_CODES[role]}-{facility}"


ACCOUNTS: AccountMap = {(f, role): gl(f, role) for f in (F1, F2) for role in AccountRole}


def valued(
    kind: MovementKind,
    amount: str = "12.34",
    *,
    quantity: str = "3",
    item: str = "AMOX-500",
    location: str = "F1-MAIN",
    to_location: str | None = None,
) -> ValuedMovement:
    movement = LedgerMovement(kind, item, location, D(quantity), to_location=to_location)
    return ValuedMovement(movement, D(amount), ())


def context(
    category: ItemCategory = ItemCategory.DRUG,
    *,
    facility: str = F1,
    cost_center: str | None = ICU,
    to_facility: str | None = None,
) -> PostingContext:
    return PostingContext(
        entry_id="je-0001",
        source_event_id="evt-0001",
        correlation_id="corr-0001",
        posting_date=date(2025, 3, 14),
        category=category,
        facility=facility,
        cost_center=cost_center,
        to_facility=to_facility,
    )


def post(
    movement: ValuedMovement, ctx: PostingContext, accounts: AccountMap = ACCOUNTS
) -> JournalEntry:
    entry = journal_entry_for(movement, ctx, accounts)
    assert entry is not None
    return entry


def debit_and_credit(entry: JournalEntry) -> tuple[JournalLine, JournalLine]:
    """The entry's one debit line and one credit line, after checking it balances."""
    debits = [line for line in entry.lines if line.debit]
    credits = [line for line in entry.lines if line.credit]
    assert len(debits) == len(credits) == 1
    assert len(entry.lines) == 2
    assert sum(line.debit for line in entry.lines) == sum(line.credit for line in entry.lines)
    return debits[0], credits[0]


def side(line: JournalLine) -> tuple[str, str, str | None]:
    return (line.account, line.facility, line.cost_center)


INVENTORY_F1 = (gl(F1, AccountRole.INVENTORY), F1, None)


# --- the table, row by row ----------------------------------------------------------------


def test_receipt_debits_inventory_and_credits_grni() -> None:
    entry = post(valued(MovementKind.RECEIPT), context())

    debit, credit = debit_and_credit(entry)
    assert side(debit) == INVENTORY_F1
    assert side(credit) == (gl(F1, AccountRole.GRNI), F1, None)
    assert debit.debit == credit.credit == D("12.34")


@pytest.mark.parametrize("kind", [MovementKind.DISPENSE, MovementKind.CLINICAL_CONSUMPTION])
@pytest.mark.parametrize(
    ("category", "expense"),
    [
        (ItemCategory.DRUG, AccountRole.DRUG_EXPENSE),
        (ItemCategory.SUPPLY, AccountRole.SUPPLY_EXPENSE),
    ],
)
def test_consumption_debits_the_category_expense_at_the_cost_center_and_credits_inventory(
    kind: MovementKind, category: ItemCategory, expense: AccountRole
) -> None:
    entry = post(valued(kind), context(category))

    debit, credit = debit_and_credit(entry)
    assert side(debit) == (gl(F1, expense), F1, ICU)
    assert side(credit) == INVENTORY_F1
    assert debit.debit == credit.credit == D("12.34")


def test_consumption_without_a_cost_center_posts_without_one() -> None:
    entry = post(valued(MovementKind.DISPENSE), context(cost_center=None))

    debit, _ = debit_and_credit(entry)
    assert side(debit) == (gl(F1, AccountRole.DRUG_EXPENSE), F1, None)


@pytest.mark.parametrize("category", list(ItemCategory))
def test_wastage_debits_wastage_expense_at_the_cost_center_and_credits_inventory(
    category: ItemCategory,
) -> None:
    entry = post(valued(MovementKind.WASTAGE), context(category))

    debit, credit = debit_and_credit(entry)
    assert side(debit) == (gl(F1, AccountRole.WASTAGE_EXPENSE), F1, ICU)
    assert side(credit) == INVENTORY_F1


def test_return_to_supplier_debits_grni_and_credits_inventory() -> None:
    entry = post(valued(MovementKind.RETURN_TO_SUPPLIER), context())

    debit, credit = debit_and_credit(entry)
    assert side(debit) == (gl(F1, AccountRole.GRNI), F1, None)
    assert side(credit) == INVENTORY_F1


def test_transfer_debits_the_destination_inventory_and_credits_the_source_inventory() -> None:
    movement = valued(MovementKind.TRANSFER, location="F1-MAIN", to_location="F2-MAIN")

    entry = post(movement, context(facility=F1, to_facility=F2))

    debit, credit = debit_and_credit(entry)
    assert side(debit) == (gl(F2, AccountRole.INVENTORY), F2, None)
    assert side(credit) == INVENTORY_F1
    assert entry.description == "transfer AMOX-500 x3 @ F1-MAIN->F2-MAIN"


def test_transfer_within_a_facility_debits_and_credits_the_same_inventory_account() -> None:
    movement = valued(MovementKind.TRANSFER, location="F1-MAIN", to_location="F1-ICU")

    entry = post(movement, context(facility=F1, to_facility=F1))

    debit, credit = debit_and_credit(entry)
    assert side(debit) == side(credit) == INVENTORY_F1


def test_count_gain_debits_inventory_and_credits_count_adjustment() -> None:
    entry = post(valued(MovementKind.COUNT_ADJUSTMENT, quantity="2"), context())

    debit, credit = debit_and_credit(entry)
    assert side(debit) == INVENTORY_F1
    assert side(credit) == (gl(F1, AccountRole.COUNT_ADJUSTMENT), F1, ICU)


def test_count_loss_debits_count_adjustment_and_credits_inventory() -> None:
    entry = post(valued(MovementKind.COUNT_ADJUSTMENT, quantity="-2"), context())

    debit, credit = debit_and_credit(entry)
    assert side(debit) == (gl(F1, AccountRole.COUNT_ADJUSTMENT), F1, ICU)
    assert side(credit) == INVENTORY_F1
    assert debit.debit == credit.credit == D("12.34")  # the loss's value, positive
    assert entry.description == "count_adjustment AMOX-500 x2 @ F1-MAIN"


@pytest.mark.parametrize("facility", [F1, F2])
def test_accounts_are_those_of_the_movement_facility(facility: str) -> None:
    entry = post(valued(MovementKind.RECEIPT), context(facility=facility))

    debit, credit = debit_and_credit(entry)
    assert side(debit) == (gl(facility, AccountRole.INVENTORY), facility, None)
    assert side(credit) == (gl(facility, AccountRole.GRNI), facility, None)


# --- the entry itself ---------------------------------------------------------------------


def test_entry_carries_the_context_identifiers_date_and_currency() -> None:
    ctx = replace(context(), currency="EUR")

    entry = post(valued(MovementKind.DISPENSE, quantity="2.5"), ctx)

    assert entry.entry_id == "je-0001"
    assert entry.source_event_id == "evt-0001"
    assert entry.correlation_id == "corr-0001"
    assert entry.posting_date == date(2025, 3, 14)
    assert entry.period == "2025-03"
    assert entry.currency == "EUR"
    assert entry.description == "dispense AMOX-500 x2.5 @ F1-MAIN"


def test_a_long_description_is_cut_to_200_characters() -> None:
    entry = post(valued(MovementKind.DISPENSE, item="X" * 64, location="L" * 64), context())

    assert len(entry.description) <= 200


@pytest.mark.parametrize("kind", list(MovementKind))
def test_every_kind_posts_one_balanced_entry_of_the_movement_amount(kind: MovementKind) -> None:
    to_location = "F2-MAIN" if kind is MovementKind.TRANSFER else None
    movement = valued(kind, "1234.56", to_location=to_location)

    entry = post(movement, context(to_facility=F2 if to_location else None))

    debit, credit = debit_and_credit(entry)
    assert debit.debit == credit.credit == D("1234.56")
    assert debit.credit == credit.debit == 0


# --- nothing to post, or nowhere to post it -----------------------------------------------


@pytest.mark.parametrize("kind", list(MovementKind))
def test_a_movement_that_moved_no_value_posts_nothing(kind: MovementKind) -> None:
    to_location = "F2-MAIN" if kind is MovementKind.TRANSFER else None
    movement = valued(kind, "0.00", to_location=to_location)

    # no entry, and no account is looked up: an empty map is no error
    assert journal_entry_for(movement, context(to_facility=F2), {}) is None


@pytest.mark.parametrize(
    ("kind", "category", "missing"),
    [
        (MovementKind.RECEIPT, ItemCategory.DRUG, AccountRole.GRNI),
        (MovementKind.RECEIPT, ItemCategory.DRUG, AccountRole.INVENTORY),
        (MovementKind.DISPENSE, ItemCategory.DRUG, AccountRole.DRUG_EXPENSE),
        (MovementKind.CLINICAL_CONSUMPTION, ItemCategory.SUPPLY, AccountRole.SUPPLY_EXPENSE),
        (MovementKind.WASTAGE, ItemCategory.DRUG, AccountRole.WASTAGE_EXPENSE),
        (MovementKind.RETURN_TO_SUPPLIER, ItemCategory.SUPPLY, AccountRole.GRNI),
        (MovementKind.COUNT_ADJUSTMENT, ItemCategory.DRUG, AccountRole.COUNT_ADJUSTMENT),
    ],
)
def test_missing_account_names_the_facility_and_the_role(
    kind: MovementKind, category: ItemCategory, missing: AccountRole
) -> None:
    accounts = {key: code for key, code in ACCOUNTS.items() if key != (F2, missing)}

    with pytest.raises(MissingAccount) as refused:
        journal_entry_for(valued(kind), context(category, facility=F2), accounts)

    error = refused.value
    assert (error.facility, error.role) == (F2, missing.value)
    assert isinstance(error, DomainError)
    assert f"role {missing.value}" in str(error)
    assert f"facility {F2}" in str(error)


def test_missing_account_of_an_unused_role_is_no_error() -> None:
    accounts = {key: code for key, code in ACCOUNTS.items() if key != (F1, AccountRole.GRNI)}

    assert journal_entry_for(valued(MovementKind.DISPENSE), context(), accounts) is not None


def test_transfer_to_a_facility_without_an_inventory_account_names_the_destination() -> None:
    movement = valued(MovementKind.TRANSFER, to_location="F3-MAIN")

    with pytest.raises(MissingAccount) as refused:
        journal_entry_for(movement, context(to_facility="F3"), ACCOUNTS)

    assert (refused.value.facility, refused.value.role) == ("F3", "inventory")


# --- an arrival that filled a negative balance corrects the consumption expense -------------


def lines_of(entry: JournalEntry) -> list[tuple[str, str, str | None, Decimal, Decimal]]:
    return [(*side(line), line.debit, line.credit) for line in entry.lines]


def test_a_receipt_filling_a_hole_that_cost_more_debits_the_expense_and_credits_inventory() -> None:
    movement = replace(valued(MovementKind.RECEIPT, "24.00"), revaluation=D("5.00"))

    entry = post(movement, context())

    assert lines_of(entry) == [
        (*INVENTORY_F1, D("24.00"), D(0)),
        (gl(F1, AccountRole.GRNI), F1, None, D(0), D("24.00")),
        (gl(F1, AccountRole.DRUG_EXPENSE), F1, ICU, D("5.00"), D(0)),
        (*INVENTORY_F1, D(0), D("5.00")),
    ]


def test_a_hole_filled_cheaper_credits_the_expense_back_even_when_the_receipt_was_free() -> None:
    movement = replace(valued(MovementKind.RECEIPT, "0"), revaluation=D("-3.00"))

    entry = post(movement, context(ItemCategory.SUPPLY))

    assert lines_of(entry) == [
        (*INVENTORY_F1, D("3.00"), D(0)),
        (gl(F1, AccountRole.SUPPLY_EXPENSE), F1, ICU, D(0), D("3.00")),
    ]


def test_a_transfer_filling_a_hole_corrects_the_expense_of_the_destination() -> None:
    movement = replace(
        valued(MovementKind.TRANSFER, "20.00", location="F1-MAIN", to_location="F2-ER"),
        revaluation=D("6.00"),
    )
    ctx = replace(context(facility=F1, to_facility=F2), to_cost_center="CC-ER")

    entry = post(movement, ctx)

    assert lines_of(entry)[2:] == [
        (gl(F2, AccountRole.DRUG_EXPENSE), F2, "CC-ER", D("6.00"), D(0)),
        (gl(F2, AccountRole.INVENTORY), F2, None, D(0), D("6.00")),
    ]
