"""Reconciliation of MedBridge's journal with the ERP's general ledger: a pure comparison.

MedBridge's lines are grouped by journal entry id, the ERP's by move reference (the entry id
MedBridge posted it under). Every difference is typed:

- ``missing_in_erp``: an entry with no move in the ERP (not posted yet, failed, or deleted);
- ``unexpected_in_erp``: a move whose reference is no MedBridge entry (booked in the ERP by
  hand, or by another system): one difference per move;
- ``duplicate_in_erp``: more than one move under the same reference: one per extra move;
- ``amount_differs``: the entry and its move disagree on an (account, cost center) amount.

Totals by (account, cost center) are returned beside the differences, both sides net
(debit - credit), so that a difference can be located in the trial balance too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from medbridge.canonical.erp import ErpLedgerLine

Key = tuple[str, str | None]  # account, cost center


class DifferenceKind(StrEnum):
    MISSING_IN_ERP = "missing_in_erp"
    UNEXPECTED_IN_ERP = "unexpected_in_erp"
    DUPLICATE_IN_ERP = "duplicate_in_erp"
    AMOUNT_DIFFERS = "amount_differs"


@dataclass(frozen=True)
class BookLine:
    """A MedBridge journal line, as far as reconciliation cares."""

    entry_id: str
    account: str
    cost_center: str | None
    debit: Decimal
    credit: Decimal


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    reference: str
    move_id: str | None = None
    account: str | None = None
    cost_center: str | None = None
    medbridge_amount: Decimal | None = None  # net debit - credit (entry total debit when whole)
    erp_amount: Decimal | None = None


@dataclass(frozen=True)
class AccountTotal:
    account: str
    cost_center: str | None
    medbridge: Decimal
    erp: Decimal

    @property
    def difference(self) -> Decimal:
        return self.medbridge - self.erp


@dataclass(frozen=True)
class Reconciliation:
    differences: tuple[Difference, ...]
    totals: tuple[AccountTotal, ...]
    entries: int
    moves: int

    @property
    def balanced(self) -> bool:
        return not self.differences


def _net(lines: Iterable[tuple[Key, Decimal, Decimal]]) -> dict[Key, Decimal]:
    sums: dict[Key, Decimal] = defaultdict(Decimal)
    for key, debit, credit in lines:
        sums[key] += debit - credit
    return dict(sums)


def _sort_key(key: Key) -> tuple[str, str]:
    return key[0], key[1] or ""


def reconcile(book: Sequence[BookLine], erp: Sequence[ErpLedgerLine]) -> Reconciliation:
    entries: dict[str, list[BookLine]] = defaultdict(list)
    for line in book:
        entries[line.entry_id].append(line)
    moves: dict[str, dict[str, list[ErpLedgerLine]]] = defaultdict(lambda: defaultdict(list))
    for erp_line in erp:
        moves[erp_line.reference][erp_line.move_id].append(erp_line)

    differences: list[Difference] = []
    for entry_id in sorted(entries):
        expected = _net(
            ((ln.account, ln.cost_center), ln.debit, ln.credit) for ln in entries[entry_id]
        )
        posted = moves.get(entry_id)
        if not posted:
            total = sum((ln.debit for ln in entries[entry_id]), Decimal(0))
            differences.append(
                Difference(DifferenceKind.MISSING_IN_ERP, entry_id, medbridge_amount=total)
            )
            continue
        first, *extra = sorted(posted)
        for move_id in extra:
            total = sum((ln.debit for ln in posted[move_id]), Decimal(0))
            differences.append(
                Difference(DifferenceKind.DUPLICATE_IN_ERP, entry_id, move_id, erp_amount=total)
            )
        actual = _net(((ln.account, ln.cost_center), ln.debit, ln.credit) for ln in posted[first])
        for key in sorted(set(expected) | set(actual), key=_sort_key):
            mine, theirs = expected.get(key, Decimal(0)), actual.get(key, Decimal(0))
            if mine != theirs:
                differences.append(
                    Difference(
                        DifferenceKind.AMOUNT_DIFFERS, entry_id, first, key[0], key[1], mine, theirs
                    )
                )
    for reference in sorted(set(moves) - set(entries)):
        for move_id in sorted(moves[reference]):
            total = sum((ln.debit for ln in moves[reference][move_id]), Decimal(0))
            differences.append(
                Difference(DifferenceKind.UNEXPECTED_IN_ERP, reference, move_id, erp_amount=total)
            )

    book_net = _net(((ln.account, ln.cost_center), ln.debit, ln.credit) for ln in book)
    erp_net = _net(((ln.account, ln.cost_center), ln.debit, ln.credit) for ln in erp)
    totals = tuple(
        AccountTotal(key[0], key[1], book_net.get(key, Decimal(0)), erp_net.get(key, Decimal(0)))
        for key in sorted(set(book_net) | set(erp_net), key=_sort_key)
    )
    return Reconciliation(
        tuple(differences), totals, len(entries), sum(len(m) for m in moves.values())
    )
