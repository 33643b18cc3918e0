"""MedBridge's journal entries as Tryton ``account.move`` records, many per JSON-RPC call.

One batch (``MovePosting.post``) costs, whatever its size:

1. ONE ``account.move`` search for every entry id of the batch (the idempotency check: an
   entry already in the ERP is found, never created twice; a draft found there, left by a
   lost ``post`` answer, is posted with the others in step 4);
2. at most one ``search_read`` per code model (``account.account``,
   ``analytic_account.account``, ``party.party``) and one of ``account.period``, for the codes
   and dates not cached yet (ids of found codes and of open periods are kept for the
   adapter's life and forgotten whenever Tryton refuses a move, in case one went stale);
3. ONE ``account.move`` ``create`` with every new move;
4. ONE ``account.move`` ``post`` with every move still draft.

What can be validated before calling is (unknown account, cost center or party, no open
period on the date): such an entry is refused alone and never sent. The rest only Tryton
knows (a party on an account that takes none, a payable line without one ...), and Tryton
runs a list ``create`` or ``post`` in one transaction: one bad move and the whole call fails,
nothing applied (measured on trytond 7.0: ``create`` of [good, bad, good] answers the bad
move's UserError and creates none). So a refused call is split in halves and each half tried
again, down to the single move at fault: each bad entry gets its own rejection and every good
one is created (about 2 log2(n) extra calls per bad entry). A move created but refused by
``post`` stays a draft in Tryton, which a repeat after the fix finds and posts.

Any other error (``ErpUnavailable``, ``ErpAuthError``) leaves the batch where it stopped; the
repeat's step 1 finds what was applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from medbridge.canonical.erp import ErpRef, ErpRejected, PostResult
from medbridge.canonical.finance import JournalEntry
from medbridge.connectors.tryton.client import TrytonClient
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.errors import TrytonProtocolError
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

MOVE = "account.move"
ACCOUNT = "account.account"
COST_CENTER = "analytic_account.account"
PARTY = "party.party"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class _Period:
    id: int
    start: date
    end: date
    state: str


@dataclass(frozen=True)
class _Lookups:
    accounts: dict[str, int]
    centers: dict[str, int]
    parties: dict[str, int]
    periods: dict[date, _Period | None]


class MovePosting:
    """The general-ledger write path of ``TrytonErp`` (which owns the client and the journal)."""

    def __init__(
        self, client: TrytonClient, config: TrytonConfig, journal: Callable[[], int]
    ) -> None:
        self.client, self.config, self._journal = client, config, journal
        self._codes: dict[tuple[str, str], int] = {}  # (model, code) -> id
        self._periods: list[_Period] = []  # open ones only

    def forget(self) -> None:
        self._codes.clear()
        self._periods.clear()

    # --- the batch -----------------------------------------------------------------------

    def post(self, entries: Sequence[JournalEntry]) -> list[PostResult]:
        unique: dict[str, JournalEntry] = {}
        for entry in entries:
            unique.setdefault(entry.entry_id, entry)
        if not unique:
            return []
        results: dict[str, PostResult] = {}
        drafts: list[tuple[str, int]] = []
        for entry_id, move in self.existing(list(unique)).items():
            results[entry_id] = ErpRef(str(move["id"]), entry_id, created=False)
            if move["state"] == "draft":  # the create's or the post's answer was lost
                drafts.append((entry_id, int(move["id"])))
        new = [e for e in unique.values() if e.entry_id not in results]
        lookups = self._lookups(new)
        values: list[tuple[str, dict[str, Any]]] = []
        for entry in new:
            try:
                values.append((entry.entry_id, self._move(entry, lookups)))
            except ErpRejected as error:
                results[entry.entry_id] = error
        for entry_id, created in self._in_halves(values, self._create).items():
            if isinstance(created, ErpRejected):
                results[entry_id] = created
            else:
                results[entry_id] = ErpRef(str(created), entry_id, created=True)
                drafts.append((entry_id, created))
        for entry_id, posted in self._in_halves(drafts, self._post).items():
            if isinstance(posted, ErpRejected):
                results[entry_id] = posted
        log.info(
            "tryton.moves_posted",
            entries=len(unique),
            created=sum(isinstance(r, ErpRef) and r.created for r in results.values()),
            found=len(unique) - len(new),
            rejected=sum(isinstance(r, ErpRejected) for r in results.values()),
        )
        return [results[e.entry_id] for e in entries]

    def existing(self, entry_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The moves of MedBridge's journal carrying these entry ids (the oldest per id)."""
        reference = self.config.move_reference.value
        found = self.client.search_read(
            MOVE,
            [(reference, "in", list(entry_ids)), ("journal", "=", self._journal())],
            ["id", "state", reference],
            order=[("id", "ASC")],
        )
        moves: dict[str, dict[str, Any]] = {}
        for move in found:
            moves.setdefault(str(move[reference]), move)
        return moves

    # --- create and post, split on a refusal -----------------------------------------------

    def _create(self, values: list[dict[str, Any]]) -> list[int]:
        ids = self.client.create(MOVE, values)
        if len(ids) != len(values):
            raise TrytonProtocolError(f"{MOVE}.create: {len(ids)} ids for {len(values)} moves")
        return ids

    def _post(self, ids: list[int]) -> list[None]:
        self.client.button(MOVE, "post", ids)
        return [None] * len(ids)

    def _in_halves(
        self, items: list[tuple[str, T]], call: Callable[[list[T]], Sequence[R]]
    ) -> dict[str, R | ErpRejected]:
        """``call`` on every item at once; refused (one transaction: nothing applied), on each
        half again, down to the single item Tryton refuses."""
        if not items:
            return {}
        try:
            answers = call([item for _, item in items])
        except ErpRejected as error:
            self.forget()  # a cached id may be what Tryton refused
            if len(items) == 1:
                return {items[0][0]: error}
            half = len(items) // 2
            log.info("tryton.batch_refused", items=len(items), error=str(error))
            outcomes: dict[str, R | ErpRejected] = {}
            for part in (items[:half], items[half:]):
                outcomes.update(self._in_halves(part, call))
            return outcomes
        return {key: answer for (key, _), answer in zip(items, answers, strict=True)}

    # --- codes and periods ---------------------------------------------------------------

    def _lookups(self, entries: Sequence[JournalEntry]) -> _Lookups:
        lines = [line for entry in entries for line in entry.lines]
        return _Lookups(
            accounts=self._ids(ACCOUNT, {ln.account for ln in lines}, [("type", "!=", None)]),
            centers=self._ids(
                COST_CENTER,
                {ln.cost_center for ln in lines if ln.cost_center},
                [("type", "=", "normal")],
            ),
            parties=self._ids(PARTY, {ln.party for ln in lines if ln.party}, []),
            periods=self._periods_of({entry.posting_date for entry in entries}),
        )

    def _ids(self, model: str, codes: set[str], extra: list[Any]) -> dict[str, int]:
        missing = sorted(code for code in codes if (model, code) not in self._codes)
        if missing:
            for record in self.client.search_read(
                model, [("code", "in", missing), *extra], ["id", "code"]
            ):
                self._codes[(model, str(record["code"]))] = int(record["id"])
        return {code: self._codes[(model, code)] for code in codes if (model, code) in self._codes}

    def _periods_of(self, days: set[date]) -> dict[date, _Period | None]:
        def cached(day: date) -> _Period | None:
            return next((p for p in self._periods if p.start <= day <= p.end), None)

        found: dict[date, _Period | None] = {day: cached(day) for day in days}
        missing = [day for day, period in found.items() if period is None]
        if missing:
            records = self.client.search_read(
                "account.period",
                [
                    ("start_date", "<=", max(missing)),
                    ("end_date", ">=", min(missing)),
                    ("type", "=", "standard"),
                ],
                ["id", "state", "start_date", "end_date"],
                order=[("start_date", "ASC")],
            )
            periods = [
                _Period(int(r["id"]), r["start_date"], r["end_date"], str(r["state"]))
                for r in records
            ]
            self._periods.extend(p for p in periods if p.state == "open")
            for day in missing:
                found[day] = next((p for p in periods if p.start <= day <= p.end), None)
        return found

    # --- one move --------------------------------------------------------------------------

    def _move(self, entry: JournalEntry, lookups: _Lookups) -> dict[str, Any]:
        """The ``account.move`` values of ``entry``; ``ErpRejected`` naming the field when a
        code is unknown or the date has no open period (nothing is sent for it)."""
        period = lookups.periods.get(entry.posting_date)
        if period is None:
            raise ErpRejected(
                f"{entry.entry_id}: no accounting period open on {entry.posting_date}",
                field="posting_date",
            )
        if period.state != "open":
            raise ErpRejected(
                f"{entry.entry_id}: the period of {entry.posting_date} is {period.state}",
                field="posting_date",
            )
        lines = []
        for n, line in enumerate(entry.lines, start=1):
            if line.account not in lookups.accounts:
                raise ErpRejected(
                    f"{entry.entry_id}: line {n}: unknown account {line.account!r}",
                    field="account",
                )
            values: dict[str, Any] = {
                "account": lookups.accounts[line.account],
                "debit": line.debit,
                "credit": line.credit,
                "description": entry.description or None,
            }
            if line.party:
                if line.party not in lookups.parties:
                    raise ErpRejected(
                        f"{entry.entry_id}: line {n}: unknown supplier {line.party!r}",
                        field="supplier",
                    )
                values["party"] = lookups.parties[line.party]
            if line.cost_center:
                if line.cost_center not in lookups.centers:
                    raise ErpRejected(
                        f"{entry.entry_id}: line {n}: unknown cost center {line.cost_center!r}",
                        field="cost_center",
                    )
                analytic = {
                    "account": lookups.centers[line.cost_center],
                    "debit": line.debit,
                    "credit": line.credit,
                    "date": entry.posting_date,
                }
                values["analytic_lines"] = [["create", [analytic]]]
            lines.append(values)
        return {
            "journal": self._journal(),
            "period": period.id,
            "date": entry.posting_date,
            self.config.move_reference.value: entry.entry_id,
            "lines": [["create", lines]],
        }
