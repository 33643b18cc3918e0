"""Partners' 832 price catalogs propose contract price changes (the ``contracts`` consumer).

A catalog received (``trade.catalog_received.v1``, the partner is the supplier) is read line
by line, in one transaction with the consumer's dedup claim, so a redelivered or resent
catalog proposes nothing twice (and a resent interchange never reaches the bus again):

- the item is resolved from the partner's ids: its supplier SKU (issuer: the partner), the
  GTIN (of the item or of one of its packs, the catalog's pack levels' GTINs too), the NDC,
  our own item code (buyer part). None resolves: ``unknown_item``, listed for review.
- the contract: the partner's contract for the item valid on the day the price takes effect
  (its effective date, or today if that is past). None: ``no_contract``.
- the price "for us": the list price (a CTP without tier), or the tier named by the setting
  ``contract_catalog_tier``, or the one tier the catalog has; several tiers and none named:
  ``no_price``. A price in another unit is converted with the item's pack conversions
  (CA 66.50 with CA = 20 EA is 3.325 per EA).
- equal to the contract price: ``unchanged``. Within ``tolerance`` percent: ``applied`` at
  once (the contract saved, audited with the catalog as its source). Beyond: ``pending``, a
  procurement task opened (approve, adjust the price, or reject); the price changes only on
  approval (``settle``), a rejection changes nothing. A newer catalog's proposal for the same
  contract supersedes a pending one (its task closed: rejected by the system, with why).
- a catalog whose validity ended before today: every line ``expired``.

A line reported for review (unknown item, no contract, no price) is read again on request
(``reread``), once the cross-reference or the contract exists: its report gives way to what
the line proposes now, audited (``contracts.proposal.reread``, the report's state before).

A contract with price tiers keeps its structure: every tier is scaled by the new price over
the old (the catalog prices one unit; it says nothing of quantity breaks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, select

from medbridge.bus.port import BusMessage
from medbridge.canonical.masterdata import CodeSystem, Contract, Item
from medbridge.canonical.tasks import Action, Decision, NewTask, WorkQueue
from medbridge.canonical.trade import CatalogDocument, CatalogItem, PartnerItem
from medbridge.domain.contract_pricing import SIX, change_percent, our_price, repriced
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.store import audit, dedup, work_items
from medbridge.store import contract_proposals as store
from medbridge.store.tables import item_packs, items
from medbridge.store.work_items import WorkItem

CONSUMER = "contracts"
CATALOG_RECEIVED = "trade.catalog_received.v1"
TASK_KIND = "contract_price_change"
ACTOR = audit.system_actor("contract-catalog")
SWEEP_EVERY = 60.0
"""Seconds between sweeps for decided tasks whose proposal is still pending (the process
that decided stopped before applying it): a consumer batch runs one at most this often."""

log = get_logger(__name__)


class ProposalStatus(StrEnum):
    APPLIED = "applied"  # within tolerance: the contract price changed at once
    PENDING = "pending"  # beyond tolerance: a procurement task decides
    APPROVED = "approved"  # the task approved it (or adjusted the price): applied
    REJECTED = "rejected"  # the task rejected it: nothing changed
    SUPERSEDED = "superseded"  # a newer catalog proposed another price before a decision
    UNCHANGED = "unchanged"  # the catalog price is the contract price
    UNKNOWN_ITEM = "unknown_item"  # no item known by the partner's ids
    NO_CONTRACT = "no_contract"  # the item is known, the partner has no contract for it
    NO_PRICE = "no_price"  # no price of ours in a unit the item converts
    EXPIRED = "expired"  # the catalog's validity ended before it was read


REPORTED = frozenset(
    {ProposalStatus.UNKNOWN_ITEM, ProposalStatus.NO_CONTRACT, ProposalStatus.NO_PRICE}
)
"""What a person can fix in master data, then have read again."""


class ProposalNotFound(LookupError):
    pass


class NotRereadable(ValueError):
    """Only a reported line of a stored catalog can be read again."""


@dataclass(frozen=True)
class CatalogPolicy:
    tolerance: Decimal = Decimal(5)
    """Percent of the contract price a change may move without a person deciding."""
    tier: str | None = None
    """Our tier in the partners' contract pricing (e.g. ``C01``)."""


@dataclass(frozen=True)
class _Line:
    key: str
    partner: str
    number: str
    line: int
    entry: CatalogItem
    currency: str


def describe(item: PartnerItem) -> str:
    named = [
        f"supplier part {item.supplier_part}" if item.supplier_part else "",
        f"GTIN {item.gtin}" if item.gtin else "",
        f"NDC {item.ndc}" if item.ndc else "",
        f"buyer part {item.buyer_part}" if item.buyer_part else "",
        repr(item.description) if item.description else "",
    ]
    return ", ".join(n for n in named if n)[:200]


class ContractCatalog:
    """The ``contracts`` consumer group's handler, and the settling of its tasks' decisions."""

    def __init__(
        self,
        engine: Engine,
        masterdata: MasterDataRepository,
        policy: CatalogPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine, self.masterdata = engine, masterdata
        self.policy = policy or CatalogPolicy()
        self.clock = clock
        self._swept_at = -SWEEP_EVERY

    @property
    def name(self) -> str:
        return CONSUMER

    def __call__(self, messages: Sequence[BusMessage]) -> None:
        catalogs = [m for m in messages if m.type == CATALOG_RECEIVED]
        if catalogs:
            with self.engine.begin() as conn:
                for message in dedup.claim(conn, CONSUMER, catalogs):
                    envelope = json.loads(message.payload)
                    document = CatalogDocument.model_validate(envelope["data"])
                    partner = message.subject.split(":", 1)[0]
                    self.propose(conn, message.idempotency_key, partner, document)
        if catalogs or time.monotonic() - self._swept_at >= SWEEP_EVERY:
            self._swept_at = time.monotonic()
            self.settle_decided()

    # --- proposing -------------------------------------------------------------------

    def propose(
        self, conn: Connection, key: str, partner: str, document: CatalogDocument
    ) -> list[int]:
        """Record what ``document`` proposes (see the module docstring); the proposals' ids.
        Nothing when this catalog (``key``) was read before."""
        if store.exists(conn, key):
            return []
        today = self.clock().date()
        ids: list[int] = []
        for n, entry in enumerate(document.items, start=1):
            line = _Line(key, partner, document.catalog_id, n, entry, document.currency)
            if document.effective_to is not None and document.effective_to < today:
                reason = f"the catalog was valid until {document.effective_to.isoformat()}"
                ids.append(self._report(conn, line, ProposalStatus.EXPIRED, reason))
                continue
            ids += self._line(conn, line, document, today)
        counts: dict[str, int] = {}
        for proposal_id in ids:
            row = store.get(conn, proposal_id)
            if row is not None:
                counts[row["status"]] = counts.get(row["status"], 0) + 1
        log.info("contracts.catalog_read", partner=partner, catalog=key, **counts)
        return ids

    def _line(
        self, conn: Connection, line: _Line, document: CatalogDocument, today: date
    ) -> list[int]:
        code = self._resolve(conn, line.partner, line.entry)
        if code is None:
            reason = f"no item is known as {describe(line.entry.item)}: map it, then reread"
            return [self._report(conn, line, ProposalStatus.UNKNOWN_ITEM, reason)]
        item = self.masterdata.items(conn, [code])[code]
        effective = _effective(line.entry, document)
        day = max(effective or today, today)
        theirs = [c for c in self.masterdata.contracts(conn, [code]) if c.supplier == line.partner]
        done = store.units_of(conn, line.key, line.line)  # a line read again: the rest stand
        valid = [c for c in theirs if c.valid_on(day) and c.unit not in done]
        if not valid:
            why = "none valid on " + day.isoformat() if theirs else "none"
            reason = f"{line.partner} has no contract for {code} ({why})"
            return [self._report(conn, line, ProposalStatus.NO_CONTRACT, reason, item=code)]
        return [self._contract(conn, line, item, c, effective, document) for c in valid]

    def _contract(
        self,
        conn: Connection,
        line: _Line,
        item: Item,
        contract: Contract,
        effective: date | None,
        document: CatalogDocument,
    ) -> int:
        base = {"item": item.code, "contract": contract.code, "unit": contract.unit}
        base["currency"] = contract.price.currency
        found = our_price(item, contract, line.entry.prices, document.currency, self.policy.tier)
        if isinstance(found, str):
            return self._report(conn, line, ProposalStatus.NO_PRICE, found, **base)
        current = contract.price.amount
        change = change_percent(current, found)
        row = base | {
            "current_price": current,
            "proposed_price": found,
            "change_percent": change,
            "effective_from": effective,
        }
        pending = store.pending_for(conn, contract.code)
        if found != current and any(p["proposed_price"] == found for p in pending):
            return self._report(
                conn, line, ProposalStatus.UNCHANGED, "already proposed, pending a task", **row
            )
        for earlier in pending:  # a newer catalog's price, the current one included, wins
            self._supersede(conn, earlier, f"superseded by catalog {line.number} of {line.partner}")
        if found == current:
            return self._report(conn, line, ProposalStatus.UNCHANGED, "the contract price", **row)
        shown = "from 0" if change is None else f"{change:+.2f}%"
        if change is not None and abs(change) <= self.policy.tolerance:
            reason = f"{current} -> {found} ({shown}): within {self.policy.tolerance}%"
            proposal = self._report(conn, line, ProposalStatus.APPLIED, reason, **row)
            self._apply(conn, contract, found, ACTOR, source=line.key, proposal=proposal)
            return proposal
        reason = f"{current} -> {found} ({shown}): beyond {self.policy.tolerance}%, to decide"
        proposal = self._report(conn, line, ProposalStatus.PENDING, reason, **row)
        task, _ = work_items.open_task(conn, self._task(proposal, line, contract, row, reason))
        store.link_task(conn, proposal, task.id)
        return proposal

    @staticmethod
    def _supersede(conn: Connection, earlier: dict[str, Any], why: str) -> None:
        """Close an earlier pending proposal and its task (decided by the system: rejected,
        with the reason). A task a person decided already keeps its decision: its proposal
        stays pending and is settled by it."""
        task = earlier["task_id"]
        if task is not None:
            decision = Decision(action=Action.REJECT, note=why)
            if not work_items.decide(conn, int(task), decision, ACTOR, actor=ACTOR):
                return
        store.settle(
            conn, earlier["id"], ProposalStatus.SUPERSEDED.value, decided_by=ACTOR, reason=why
        )

    def _resolve(self, conn: Connection, partner: str, entry: CatalogItem) -> str | None:
        named = entry.item
        repo = self.masterdata
        if named.supplier_part:
            found = repo.item_by_code(conn, CodeSystem.SUPPLIER_SKU, named.supplier_part, partner)
            if found:
                return found
        gtins = [g for g in (named.gtin, *(p.gtin for p in entry.packs)) if g]
        for gtin in gtins:
            found = (
                repo.item_by_code(conn, CodeSystem.GTIN, gtin)
                or conn.execute(
                    select(item_packs.c.item).where(item_packs.c.gtin == gtin).limit(1)
                ).scalar_one_or_none()
            )
            if found:
                return found
        if named.ndc:
            found = repo.item_by_code(conn, CodeSystem.NDC, named.ndc)
            if found:
                return found
        if named.buyer_part:
            return conn.execute(
                select(items.c.code).where(items.c.code == named.buyer_part)
            ).scalar_one_or_none()
        return None

    def _report(
        self, conn: Connection, line: _Line, status: ProposalStatus, reason: str, **row: Any
    ) -> int:
        unit = row.pop("unit", None) or line.entry.prices[0].unit
        return store.record(
            conn,
            {
                "catalog_key": line.key,
                "line": line.line,
                "unit": unit,
                "partner": line.partner,
                "catalog_number": line.number,
                "partner_item": describe(line.entry.item) or "?",
                "currency": row.pop("currency", line.currency),
                "status": status.value,
                "reason": reason,
            }
            | row,
        )

    @staticmethod
    def _task(
        proposal: int, line: _Line, contract: Contract, row: dict[str, Any], reason: str
    ) -> NewTask:
        return NewTask(
            key=f"contract_price:{proposal}",
            queue=WorkQueue.PROCUREMENT,
            kind=TASK_KIND,
            subject=f"contract {contract.code}: {contract.item} from {line.partner}"[:200],
            reason=f"catalog {line.number} of {line.partner}: {reason}"[:1000],
            context={
                "proposal": proposal,
                "contract": contract.code,
                "item": contract.item,
                "supplier": line.partner,
                "unit": contract.unit,
                "currency": contract.price.currency,
                "current_price": str(row["current_price"]),
                "proposed_price": str(row["proposed_price"]),
                "change_percent": _text(row["change_percent"]),
                "catalog": line.number,
                "catalog_key": line.key,
                "line": line.line,
            },
            actions=(Action.APPROVE, Action.ADJUST_PRICE, Action.REJECT),
        )

    def _apply(
        self,
        conn: Connection,
        contract: Contract,
        price: Decimal,
        actor: str,
        *,
        source: str,
        proposal: int,
    ) -> None:
        self.masterdata.save_contract(
            conn,
            repriced(contract, price),
            actor=actor,
            detail={"source": "x12 832 catalog", "catalog": source, "proposal": proposal},
        )

    def reread(self, proposal_id: int, *, actor: str) -> list[int]:
        """Read a reported line again (see the module docstring); the ids it now has.
        ProposalNotFound, or NotRereadable naming why."""
        with self.engine.begin() as conn:
            row = store.get(conn, proposal_id)
            if row is None:
                raise ProposalNotFound(f"no contract price proposal {proposal_id}")
            if row["status"] not in REPORTED:
                raise NotRereadable(
                    f"proposal {proposal_id} is {row['status']}: only "
                    f"{', '.join(sorted(REPORTED))} lines are read again"
                )
            stored = store.catalog_document(conn, row["catalog_key"])
            if stored is None:
                raise NotRereadable(f"catalog {row['catalog_key']} is no longer stored")
            document = CatalogDocument.model_validate(stored)
            today = self.clock().date()
            if document.effective_to is not None and document.effective_to < today:
                until = document.effective_to.isoformat()
                raise NotRereadable(f"catalog {document.catalog_id} was valid until {until}")
            entry = document.items[int(row["line"]) - 1]
            line = _Line(
                row["catalog_key"],
                row["partner"],
                document.catalog_id,
                int(row["line"]),
                entry,
                document.currency,
            )
            store.remove(conn, proposal_id)
            ids = self._line(conn, line, document, today)
            audit.append(
                conn,
                actor=actor,
                action="contracts.proposal.reread",
                target_type="contract_price_proposal",
                target_id=proposal_id,
                before=row,
                after=None,
                detail={"status": row["status"], "now": ids},
            )
        return ids

    # --- decisions -------------------------------------------------------------------

    def settle(self, task: WorkItem) -> str | None:
        """Apply a decided task's proposal (approve: the proposed price; adjust_price: the
        price decided; reject: nothing); the proposal's new status, None if there was
        nothing to settle (not ours, undecided, settled already, superseded)."""
        if task.kind != TASK_KIND or task.decision is None:
            return None
        with self.engine.begin() as conn:
            proposal = store.by_task(conn, task.id)
            if proposal is None or proposal["status"] != ProposalStatus.PENDING.value:
                return None
            by = task.decided_by or ACTOR
            action = task.decision.action
            if action is Action.REJECT:
                store.settle(conn, proposal["id"], ProposalStatus.REJECTED.value, decided_by=by)
                return ProposalStatus.REJECTED.value
            price = proposal["proposed_price"]
            if action is Action.ADJUST_PRICE and task.decision.unit_price is not None:
                price = task.decision.unit_price.quantize(SIX)
            contract = next(
                (
                    c
                    for c in self.masterdata.contracts(conn, [proposal["item"]])
                    if c.code == proposal["contract"]
                ),
                None,
            )
            if contract is None:
                store.settle(
                    conn,
                    proposal["id"],
                    ProposalStatus.REJECTED.value,
                    decided_by=by,
                    reason=f"contract {proposal['contract']} no longer exists",
                )
                return ProposalStatus.REJECTED.value
            self._apply(
                conn, contract, price, by, source=proposal["catalog_key"], proposal=proposal["id"]
            )
            store.settle(
                conn, proposal["id"], ProposalStatus.APPROVED.value, decided_by=by, price=price
            )
        log.info("contracts.price_approved", contract=contract.code, price=str(price), by=by)
        return ProposalStatus.APPROVED.value

    def settle_decided(self) -> int:
        """Settle every pending proposal whose task was decided but not applied (the process
        that decided stopped first); how many."""
        with self.engine.connect() as conn:
            task_ids = store.decided_pending(conn)
            tasks = [work_items.get(conn, task_id) for task_id in task_ids]
        return sum(1 for task in tasks if task is not None and self.settle(task))


def _effective(entry: CatalogItem, document: CatalogDocument) -> date | None:
    dates = [p.effective_from for p in entry.prices if p.effective_from is not None]
    return max(dates) if dates else document.effective_from


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
