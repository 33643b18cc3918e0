"""The shadow run's comparison: what two ERP destinations hold for a period, side by side.
Pure: the posted ledger lines of each side (``canonical.erp.ErpLedgerLine``) and where each
reference belongs come in, the report goes out.

Each side's lines are grouped by their move's ``reference``: a MedBridge journal entry id
(``JE-...``), a GL summary id (``SUM-...``), a supplier invoice's reference, or whatever else
an ERP holds (a move booked there by hand). A reference belongs to a domain and a facility:

- as MedBridge routed it (``Origin``: its outbox row, or its GL summary);
- else (a reference MedBridge never sent) to no domain (``None``), and to the facility of
  the first of its lines whose account is assigned to one facility (``account_facilities``).

Per (domain, facility) the report lists, sorted by reference:

- ``only_left`` / ``only_right``: a reference with lines on one side only;
- ``amount_differs``: a reference on both sides whose debit or credit on an account differs
  (the sums of its lines on that account, every move under the reference together, so a move
  posted twice on one side shows as twice the amount);

and its totals: references and debits on each side. Amounts compare as ``Decimal`` values:
two sides that agree give exactly no difference, never a rounding remainder.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from medbridge.canonical.erp import ErpLedgerLine

ZERO = Decimal(0)


class ComparisonKind(StrEnum):
    ONLY_LEFT = "only_left"
    """The reference is booked on the left side only."""
    ONLY_RIGHT = "only_right"
    """The reference is booked on the right side only."""
    AMOUNT_DIFFERS = "amount_differs"
    """Both sides book the reference, with another debit or credit on ``account``."""


@dataclass(frozen=True)
class Origin:
    """Where MedBridge routed a reference: its domain (an ``ErpDomain`` value) and
    facility."""

    domain: str
    facility: str | None


@dataclass(frozen=True)
class Side:
    """Debit and credit of one reference (on one account, or all of them) on one side."""

    debit: Decimal = ZERO
    credit: Decimal = ZERO

    def plus(self, debit: Decimal, credit: Decimal) -> Side:
        return Side(self.debit + debit, self.credit + credit)


@dataclass(frozen=True)
class ComparedDocument:
    """One difference: a reference on one side only (``account`` None, the reference's whole
    amounts), or an account of a reference both sides book with other amounts."""

    kind: ComparisonKind
    reference: str
    domain: str | None
    facility: str | None
    account: str | None
    left: Side
    right: Side

    @property
    def difference(self) -> Decimal:
        """Left minus right, net (debit - credit)."""
        return (self.left.debit - self.left.credit) - (self.right.debit - self.right.credit)


@dataclass(frozen=True)
class GroupComparison:
    """One (domain, facility): its differences and totals."""

    domain: str | None
    facility: str | None
    left_documents: int
    right_documents: int
    left_debit: Decimal
    right_debit: Decimal
    left_credit: Decimal
    right_credit: Decimal
    differences: tuple[ComparedDocument, ...]

    def count(self, kind: ComparisonKind) -> int:
        return sum(1 for d in self.differences if d.kind is kind)

    @property
    def debit_difference(self) -> Decimal:
        return self.left_debit - self.right_debit

    @property
    def credit_difference(self) -> Decimal:
        return self.left_credit - self.right_credit


@dataclass(frozen=True)
class ErpComparison:
    left: str
    right: str
    groups: tuple[GroupComparison, ...]

    @property
    def differences(self) -> tuple[ComparedDocument, ...]:
        return tuple(d for g in self.groups for d in g.differences)

    @property
    def identical(self) -> bool:
        return not self.differences

    def within(self, facilities: Collection[str]) -> ErpComparison:
        """The groups of ``facilities`` only (a client bound to facilities)."""
        kept = tuple(g for g in self.groups if g.facility is not None and g.facility in facilities)
        return ErpComparison(self.left, self.right, kept)


Group = tuple[str | None, str | None]


def _sort_group(group: Group) -> tuple[str, str]:
    return group[0] or "~", group[1] or "~"  # no domain / facility last


def _by_reference(lines: Iterable[ErpLedgerLine]) -> dict[str, list[ErpLedgerLine]]:
    found: dict[str, list[ErpLedgerLine]] = defaultdict(list)
    for line in lines:
        found[line.reference].append(line)
    return dict(found)


def _by_account(lines: Iterable[ErpLedgerLine]) -> dict[str, Side]:
    sums: dict[str, Side] = defaultdict(Side)
    for line in lines:
        sums[line.account] = sums[line.account].plus(line.debit, line.credit)
    return dict(sums)


def _whole(lines: Iterable[ErpLedgerLine]) -> Side:
    side = Side()
    for line in lines:
        side = side.plus(line.debit, line.credit)
    return side


def _group_of(
    reference: str,
    lines: Sequence[ErpLedgerLine],
    origins: Mapping[str, Origin],
    account_facilities: Mapping[str, str],
) -> Group:
    origin = origins.get(reference)
    if origin is not None:
        return origin.domain, origin.facility
    facility = next(
        (account_facilities[ln.account] for ln in lines if ln.account in account_facilities), None
    )
    return None, facility


@dataclass
class _Tally:
    left_documents: int = 0
    right_documents: int = 0
    left: Side = Side()
    right: Side = Side()

    def group(self, group: Group, differences: Sequence[ComparedDocument]) -> GroupComparison:
        return GroupComparison(
            group[0],
            group[1],
            self.left_documents,
            self.right_documents,
            self.left.debit,
            self.right.debit,
            self.left.credit,
            self.right.credit,
            tuple(differences),
        )


def compare(
    left_name: str,
    left: Sequence[ErpLedgerLine],
    right_name: str,
    right: Sequence[ErpLedgerLine],
    origins: Mapping[str, Origin],
    account_facilities: Mapping[str, str] | None = None,
    domains: Collection[str] | None = None,
) -> ErpComparison:
    """Compare the two sides' lines (see the module). ``domains``: report only the
    references of these domains (and those of no domain); None: every domain."""
    accounts = account_facilities or {}
    mine, theirs = _by_reference(left), _by_reference(right)
    differences: dict[Group, list[ComparedDocument]] = defaultdict(list)
    tallies: dict[Group, _Tally] = defaultdict(_Tally)
    for reference in sorted(set(mine) | set(theirs)):
        ours, others = mine.get(reference, []), theirs.get(reference, [])
        group = _group_of(reference, ours + others, origins, accounts)
        if domains is not None and group[0] is not None and group[0] not in domains:
            continue
        a, b = _whole(ours), _whole(others)
        tally = tallies[group]
        tally.left, tally.right = (
            tally.left.plus(a.debit, a.credit),
            tally.right.plus(b.debit, b.credit),
        )
        tally.left_documents += 1 if ours else 0
        tally.right_documents += 1 if others else 0
        found = differences[group]
        if not others:
            found.append(
                ComparedDocument(ComparisonKind.ONLY_LEFT, reference, *group, None, a, Side())
            )
        elif not ours:
            found.append(
                ComparedDocument(ComparisonKind.ONLY_RIGHT, reference, *group, None, Side(), b)
            )
        else:
            x, y = _by_account(ours), _by_account(others)
            for account in sorted(set(x) | set(y)):
                p, q = x.get(account, Side()), y.get(account, Side())
                if p != q:
                    found.append(
                        ComparedDocument(
                            ComparisonKind.AMOUNT_DIFFERS, reference, *group, account, p, q
                        )
                    )
    return ErpComparison(
        left_name,
        right_name,
        tuple(
            tallies[group].group(group, differences[group])
            for group in sorted(tallies, key=_sort_group)
        ),
    )
