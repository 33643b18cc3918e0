"""Reconciliation of MedBridge's journal with the ERP's general ledger: a pure comparison.

MedBridge's lines are grouped by the reference the ERP books them under: the journal entry id
for an entry MedBridge posts, the ERP document's reference for an entry the ERP's own document
books (a supplier invoice, a credit note); the ERP's lines by move reference. Lines compare by
(account, cost center, party). Every difference is typed:

- ``missing_in_erp``: an entry with no move in the ERP (not posted yet, failed, or deleted);
- ``unexpected_in_erp``: a move whose reference is no MedBridge entry (booked in the ERP by
  hand, or by another system): one difference per move;
- ``duplicate_in_erp``: more than one move under the same reference: one per extra move;
- ``amount_differs``: the entry and its move disagree on an (account, cost center, party)
  amount;
- ``balance_differs``: a watched account's balance (inventory, GRNI, accounts payable per
  party, per facility, to the end of the period) differs and no document difference of the
  period explains it (an opening balance, a move of another period).

Totals by (account, cost center) are returned beside the differences, both sides net
(debit - credit), so that a difference can be located in the trial balance too; and the
watched balances, each with the documents behind its difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from medbridge.canonical.erp import ErpLedgerLine

Key = tuple[str, str | None, str | None]  # account, cost center, party


class DifferenceKind(StrEnum):
    MISSING_IN_ERP = "missing_in_erp"
    UNEXPECTED_IN_ERP = "unexpected_in_erp"
    DUPLICATE_IN_ERP = "duplicate_in_erp"
    AMOUNT_DIFFERS = "amount_differs"
    BALANCE_DIFFERS = "balance_differs"


@dataclass(frozen=True)
class BookLine:
    """A MedBridge journal line, as far as reconciliation cares."""

    entry_id: str
    account: str
    cost_center: str | None
    debit: Decimal
    credit: Decimal
    party: str | None = None
    erp_document: str | None = None
    """Set when the ERP's own document books the entry: the reference it is booked under."""

    @property
    def reference(self) -> str:
        return self.erp_document or self.entry_id


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    reference: str
    move_id: str | None = None
    account: str | None = None
    cost_center: str | None = None
    medbridge_amount: Decimal | None = None  # net debit - credit (entry total debit when whole)
    erp_amount: Decimal | None = None
    party: str | None = None


@dataclass(frozen=True)
class WatchedAccount:
    """An account whose balance is compared as a whole: its facility and role."""

    account: str
    facility: str
    role: str


@dataclass(frozen=True)
class Balance:
    """A watched account's balance (per party on payables) on both sides, net debit - credit,
    and the references of the period's differences that touch it."""

    facility: str
    role: str
    account: str
    party: str | None
    medbridge: Decimal
    erp: Decimal
    documents: tuple[str, ...] = ()

    @property
    def difference(self) -> Decimal:
        return self.medbridge - self.erp


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
    balances: tuple[Balance, ...] = ()

    @property
    def balanced(self) -> bool:
        return not self.differences


def _net(lines: Iterable[tuple[Key, Decimal, Decimal]]) -> dict[Key, Decimal]:
    sums: dict[Key, Decimal] = defaultdict(Decimal)
    for key, debit, credit in lines:
        sums[key] += debit - credit
    return dict(sums)


def _sort_key(key: Key) -> tuple[str, str, str]:
    return key[0], key[1] or "", key[2] or ""


def reconcile(book: Sequence[BookLine], erp: Sequence[ErpLedgerLine]) -> Reconciliation:
    entries: dict[str, list[BookLine]] = defaultdict(list)
    for line in book:
        entries[line.reference].append(line)
    moves: dict[str, dict[str, list[ErpLedgerLine]]] = defaultdict(lambda: defaultdict(list))
    for erp_line in erp:
        moves[erp_line.reference][erp_line.move_id].append(erp_line)

    differences: list[Difference] = []
    for entry_id in sorted(entries):
        expected = _net(
            ((ln.account, ln.cost_center, ln.party), ln.debit, ln.credit)
            for ln in entries[entry_id]
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
        actual = _net(
            ((ln.account, ln.cost_center, ln.party), ln.debit, ln.credit) for ln in posted[first]
        )
        for key in sorted(set(expected) | set(actual), key=_sort_key):
            mine, theirs = expected.get(key, Decimal(0)), actual.get(key, Decimal(0))
            if mine != theirs:
                differences.append(
                    Difference(
                        DifferenceKind.AMOUNT_DIFFERS,
                        entry_id,
                        first,
                        key[0],
                        key[1],
                        mine,
                        theirs,
                        key[2],
                    )
                )
    for reference in sorted(set(moves) - set(entries)):
        for move_id in sorted(moves[reference]):
            total = sum((ln.debit for ln in moves[reference][move_id]), Decimal(0))
            differences.append(
                Difference(DifferenceKind.UNEXPECTED_IN_ERP, reference, move_id, erp_amount=total)
            )

    book_net = _net(((ln.account, ln.cost_center, None), ln.debit, ln.credit) for ln in book)
    erp_net = _net(((ln.account, ln.cost_center, None), ln.debit, ln.credit) for ln in erp)
    totals = tuple(
        AccountTotal(key[0], key[1], book_net.get(key, Decimal(0)), erp_net.get(key, Decimal(0)))
        for key in sorted(set(book_net) | set(erp_net), key=_sort_key)
    )
    return Reconciliation(
        tuple(differences), totals, len(entries), sum(len(m) for m in moves.values())
    )


def _touches(difference: Difference, account: str, lines: Mapping[str, set[str]]) -> bool:
    if difference.account is not None:
        return difference.account == account
    return account in lines.get(difference.reference, set())


def with_balances(
    report: Reconciliation,
    watched: Sequence[WatchedAccount],
    book: Sequence[BookLine],
    erp: Sequence[ErpLedgerLine],
) -> Reconciliation:
    """``report`` with the watched accounts' balances compared (``book`` and ``erp``: every
    line up to the end of the period). A balance that differs with no document difference of
    the period behind it is a ``balance_differs`` difference of its own."""
    by_account = {w.account: w for w in watched}
    accounts_of: dict[str, set[str]] = defaultdict(set)
    for line in book:
        accounts_of[line.reference].add(line.account)
    for erp_line in erp:
        accounts_of[erp_line.reference].add(erp_line.account)
    mine = _net(
        ((ln.account, None, ln.party), ln.debit, ln.credit)
        for ln in book
        if ln.account in by_account
    )
    theirs = _net(
        ((ln.account, None, ln.party), ln.debit, ln.credit)
        for ln in erp
        if ln.account in by_account
    )
    balances, unexplained = [], []
    for key in sorted(
        set(mine) | set(theirs) | {(a, None, None) for a in by_account}, key=_sort_key
    ):
        account, _, party = key
        w = by_account[account]
        ours, erps = mine.get(key, Decimal(0)), theirs.get(key, Decimal(0))
        documents = tuple(
            sorted(
                {
                    d.reference
                    for d in report.differences
                    if _touches(d, account, accounts_of) and (d.party is None or d.party == party)
                }
            )
            if ours != erps
            else ()
        )
        balances.append(Balance(w.facility, w.role, account, party, ours, erps, documents))
        if ours != erps and not documents:
            unexplained.append(
                Difference(
                    DifferenceKind.BALANCE_DIFFERS,
                    f"{w.facility} {w.role}" + (f" {party}" if party else ""),
                    account=account,
                    medbridge_amount=ours,
                    erp_amount=erps,
                    party=party,
                )
            )
    return Reconciliation(
        report.differences + tuple(unexplained),
        report.totals,
        report.entries,
        report.moves,
        tuple(balances),
    )
