"""``FakeErp``: an in-memory ``ErpPort`` that honours the contract of
``medbridge.canonical.erp`` exactly, with hooks for the failures tests need.

Shipped in the product (like ``httpx.MockTransport``) so that every flow that drives an ERP can
be tested without one, and so that the ERP contract suite runs against it as well as against
the real Tryton adapter.

Hooks:
- ``go_down()`` / ``come_up()``: while down, every call raises ``ErpUnavailable`` and applies
  nothing (connection refused).
- ``lose_next_answer(n)``: the next ``n`` calls are applied, then raise ``ErpUnavailable`` (the
  answer was lost on the way back: the case the reference check makes safe).
- ``refuse_credentials()`` / ``accept_credentials()``: calls raise ``ErpAuthError``.
- ``plant_move(...)`` / ``delete_move(...)``: change the ledger behind MedBridge's back.
- ``calls``: every call with the time it arrived (``clock``, monotonic seconds), for rate
  measurements.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from medbridge.canonical.erp import (
    ErpAccount,
    ErpAuthError,
    ErpLedgerLine,
    ErpProduct,
    ErpRef,
    ErpRejected,
    ErpSupplier,
    ErpUnavailable,
    PostResult,
)
from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.masterdata import Item, Supplier
from medbridge.canonical.procurement import GoodsReceipt, PurchaseOrder, SupplierInvoice

CENT = Decimal("0.01")


@dataclass(frozen=True)
class ErpCall:
    """One call as the fake saw it: when it arrived, what, and how it ended."""

    at: float
    method: str
    outcome: str  # ok | down | lost_answer | auth_error | rejected


@dataclass(frozen=True)
class FakeMoveLine:
    account: str
    cost_center: str | None
    debit: Decimal
    credit: Decimal
    party: str | None = None


@dataclass(frozen=True)
class FakeMove:
    move_id: str
    reference: str
    posting_date: date
    lines: tuple[FakeMoveLine, ...]


@dataclass
class _Document:
    erp_id: str
    reference: str
    kind: str
    state: str
    content: object = field(repr=False)


class FakeErp:
    """In-memory, thread-safe ERP. ``accounts``/``cost_centers``/``units`` None means any code
    exists (an account given by code alone is named by its code)."""

    def __init__(
        self,
        *,
        accounts: Iterable[str] | None = None,
        cost_centers: Iterable[str] | None = None,
        products: Sequence[ErpProduct] = (),
        suppliers: Sequence[ErpSupplier] = (),
        units: Iterable[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = None if accounts is None else set(accounts)
        self._account_names = {code: code for code in self._accounts or ()}
        self._cost_centers = None if cost_centers is None else set(cost_centers)
        self._units = None if units is None else set(units)
        self._products = {p.code: p for p in products}
        self._suppliers = {s.code: s for s in suppliers}
        self._clock = clock
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._documents: dict[str, _Document] = {}  # by erp_id
        self._by_reference: dict[tuple[str, str], str] = {}  # (kind, reference) -> erp_id
        self._moves: dict[str, FakeMove] = {}
        self._open_items: dict[str, list[str]] = {}  # purchase erp_id -> items not yet received
        self._down = False
        self._auth_refused = False
        self._lose_answers = 0
        self.calls: list[ErpCall] = []

    # --- test hooks ----------------------------------------------------------------------

    def go_down(self) -> None:
        with self._lock:
            self._down = True

    def come_up(self) -> None:
        with self._lock:
            self._down = False

    def lose_next_answer(self, n: int = 1) -> None:
        with self._lock:
            self._lose_answers += n

    def refuse_credentials(self) -> None:
        with self._lock:
            self._auth_refused = True

    def accept_credentials(self) -> None:
        with self._lock:
            self._auth_refused = False

    def add_account(self, code: str) -> None:
        with self._lock:
            if self._accounts is not None:
                self._accounts.add(code)
            self._account_names.setdefault(code, code)

    def plant_move(
        self,
        reference: str,
        posting_date: date,
        lines: Sequence[tuple[str, str | None, Decimal, Decimal]],
    ) -> str:
        """A move created directly in the ERP (lines: account, cost center, debit, credit)."""
        with self._lock:
            move_id = f"move-{next(self._ids)}"
            self._moves[move_id] = FakeMove(
                move_id,
                reference,
                posting_date,
                tuple(FakeMoveLine(a, cc, Decimal(d), Decimal(c)) for a, cc, d, c in lines),
            )
            return move_id

    def delete_move(self, move_id: str) -> None:
        with self._lock:
            del self._moves[move_id]
            self._by_reference = {k: v for k, v in self._by_reference.items() if v != move_id}

    def moves(self, reference: str | None = None) -> list[FakeMove]:
        with self._lock:
            return [m for m in self._moves.values() if reference in (None, m.reference)]

    def call_times(self, method: str | None = None) -> list[float]:
        """When calls arrived (every outcome: a refused call still reached the ERP)."""
        with self._lock:
            return [c.at for c in self.calls if method in (None, c.method)]

    # --- the call envelope ---------------------------------------------------------------

    def _enter(self, method: str) -> float:
        at = self._clock()
        if self._down:
            self.calls.append(ErpCall(at, method, "down"))
            raise ErpUnavailable(f"{method}: connection refused (fake ERP is down)")
        if self._auth_refused:
            self.calls.append(ErpCall(at, method, "auth_error"))
            raise ErpAuthError(f"{method}: credentials refused")
        return at

    def _leave(self, at: float, method: str) -> None:
        if self._lose_answers > 0:
            self._lose_answers -= 1
            self.calls.append(ErpCall(at, method, "lost_answer"))
            raise ErpUnavailable(f"{method}: connection reset after the request was applied")
        self.calls.append(ErpCall(at, method, "ok"))

    def _reject(self, at: float, method: str, message: str, field_name: str) -> ErpRejected:
        self.calls.append(ErpCall(at, method, "rejected"))
        return ErpRejected(message, field=field_name)

    def _create(self, method: str, kind: str, reference: str, content: object) -> ErpRef:
        at = self._enter(method)
        existing = self._by_reference.get((kind, reference))
        if existing is not None:
            self._leave(at, method)
            return ErpRef(existing, reference, created=False)
        erp_id = f"{kind}-{next(self._ids)}"
        self._documents[erp_id] = _Document(erp_id, reference, kind, "draft", content)
        self._by_reference[(kind, reference)] = erp_id
        self._leave(at, method)
        return ErpRef(erp_id, reference, created=True)

    def _document(self, at: float, method: str, kind: str, erp_id: str) -> _Document:
        document = self._documents.get(erp_id)
        if document is None or document.kind != kind:
            raise self._reject(at, method, f"no {kind} {erp_id!r}", "erp_id")
        return document

    # --- reads ---------------------------------------------------------------------------

    def products(self) -> Sequence[ErpProduct]:
        with self._lock:
            at = self._enter("products")
            self._leave(at, "products")
            return sorted(self._products.values(), key=lambda p: p.code)

    def suppliers(self) -> Sequence[ErpSupplier]:
        with self._lock:
            at = self._enter("suppliers")
            self._leave(at, "suppliers")
            return sorted(self._suppliers.values(), key=lambda s: s.code)

    def cost_centers(self) -> Sequence[str]:
        with self._lock:
            at = self._enter("cost_centers")
            self._leave(at, "cost_centers")
            return sorted(self._cost_centers or ())

    def accounts(self, codes: Sequence[str]) -> dict[str, str]:
        with self._lock:
            at = self._enter("accounts")
            found = {
                code: self._account_names.get(code, code)
                for code in codes
                if self._accounts is None or code in self._accounts
            }
            self._leave(at, "accounts")
            return found

    # --- master data pushes (idempotent by code) ----------------------------------------

    def upsert_product(self, item: Item) -> ErpRef:
        method = "upsert_product"
        with self._lock:
            at = self._enter(method)
            if self._units is not None and item.base_unit not in self._units:
                raise self._reject(at, method, f"unknown unit {item.base_unit!r}", "unit")
            existing = self._products.get(item.code)
            if existing is None:
                erp_id = f"product-{next(self._ids)}"
                self._products[item.code] = ErpProduct(erp_id, item.code, item.name, item.base_unit)
                ref = ErpRef(erp_id, item.code, created=True)
            elif (existing.name, existing.unit) != (item.name, item.base_unit):
                self._products[item.code] = ErpProduct(
                    existing.erp_id, item.code, item.name, item.base_unit, existing.gtins
                )
                ref = ErpRef(existing.erp_id, item.code, created=False, updated=True)
            else:
                ref = ErpRef(existing.erp_id, item.code, created=False)
            self._leave(at, method)
            return ref

    def upsert_supplier(self, supplier: Supplier) -> ErpRef:
        method = "upsert_supplier"
        with self._lock:
            at = self._enter(method)
            existing = self._suppliers.get(supplier.code)
            if existing is None:
                erp_id = f"party-{next(self._ids)}"
                self._suppliers[supplier.code] = ErpSupplier(erp_id, supplier.code, supplier.name)
                ref = ErpRef(erp_id, supplier.code, created=True)
            elif existing.name != supplier.name:
                self._suppliers[supplier.code] = ErpSupplier(
                    existing.erp_id, supplier.code, supplier.name
                )
                ref = ErpRef(existing.erp_id, supplier.code, created=False, updated=True)
            else:
                ref = ErpRef(existing.erp_id, supplier.code, created=False)
            self._leave(at, method)
            return ref

    def ensure_accounts(self, accounts: Sequence[ErpAccount]) -> list[ErpRef]:
        method = "ensure_accounts"
        with self._lock:
            at = self._enter(method)
            refs: list[ErpRef] = []
            for account in accounts:
                known = account.code in self._account_names
                if known and self._account_names[account.code] == account.name:
                    refs.append(ErpRef(account.code, account.code, created=False))
                    continue
                self._account_names[account.code] = account.name
                if self._accounts is not None:
                    self._accounts.add(account.code)
                refs.append(ErpRef(account.code, account.code, created=not known, updated=known))
            self._leave(at, method)
            return refs

    # --- procurement ---------------------------------------------------------------------

    def _check_supplier(self, at: float, method: str, code: str) -> None:
        if self._suppliers and code not in self._suppliers:
            raise self._reject(at, method, f"unknown supplier {code!r}", "supplier")

    def create_purchase_order(self, order: PurchaseOrder) -> ErpRef:
        with self._lock:
            if not self._down and not self._auth_refused:
                at = self._clock()
                self._check_supplier(at, "create_purchase_order", order.supplier)
            return self._create("create_purchase_order", "purchase", order.reference, order)

    def confirm_purchase_order(self, erp_id: str) -> None:
        method = "confirm_purchase_order"
        with self._lock:
            at = self._enter(method)
            document = self._document(at, method, "purchase", erp_id)
            if document.state == "cancelled":
                raise self._reject(at, method, f"purchase {erp_id} is cancelled", "erp_id")
            if document.state == "draft":  # like Tryton's process: one open line per order line
                assert isinstance(document.content, PurchaseOrder)
                self._open_items[erp_id] = [line.item for line in document.content.lines]
                document.state = "confirmed"
            self._leave(at, method)

    def purchase_order_state(self, erp_id: str) -> str:
        with self._lock:
            at = self._enter("purchase_order_state")
            state = self._document(at, "purchase_order_state", "purchase", erp_id).state
            self._leave(at, "purchase_order_state")
            return state

    def cancel_purchase_order(self, erp_id: str, reason: str) -> str:
        """Like Tryton: a draft order is cancelled; a confirmed one has its lines not yet
        received closed (and stays confirmed); a cancelled one is left as it is."""
        method = "cancel_purchase_order"
        with self._lock:
            at = self._enter(method)
            document = self._document(at, method, "purchase", erp_id)
            if document.state == "draft":
                document.state = "cancelled"
            elif document.state == "confirmed":
                self._open_items[erp_id] = []
            self._leave(at, method)
            return document.state

    def record_goods_receipt(self, receipt: GoodsReceipt) -> ErpRef:
        """Like Tryton: received against a confirmed purchase order, each line on one of its
        lines not yet received (by item)."""
        method = "record_goods_receipt"
        with self._lock:
            if (
                not self._down
                and not self._auth_refused
                and ("shipment", receipt.reference) not in self._by_reference
            ):
                self._receive(self._clock(), method, receipt)
            return self._create(method, "shipment", receipt.reference, receipt)

    def _receive(self, at: float, method: str, receipt: GoodsReceipt) -> None:
        order = receipt.purchase_order
        if order is None:
            raise self._reject(at, method, "received against a purchase order", "purchase_order")
        erp_id = self._by_reference.get(("purchase", order))
        if erp_id is None:
            raise self._reject(at, method, f"unknown purchase order {order!r}", "purchase_order")
        open_items = list(self._open_items.get(erp_id, ()))
        for n, line in enumerate(receipt.lines):
            if line.item not in open_items:
                raise self._reject(
                    at,
                    method,
                    f"line {n}: {line.item} is not open on purchase order {order!r}",
                    f"lines[{n}].item",
                )
            open_items.remove(line.item)
        self._open_items[erp_id] = open_items

    def create_supplier_invoice(self, invoice: SupplierInvoice) -> ErpRef:
        with self._lock:
            if not self._down and not self._auth_refused:
                at = self._clock()
                self._check_supplier(at, "create_supplier_invoice", invoice.supplier)
            return self._create("create_supplier_invoice", "invoice", invoice.reference, invoice)

    def post_supplier_invoice(self, erp_id: str) -> None:
        """Posting books the invoice's move (as Tryton's document accounting does): debit each
        line's and charge's account, credit the payable with the supplier as party."""
        with self._lock:
            at = self._enter("post_supplier_invoice")
            document = self._document(at, "post_supplier_invoice", "invoice", erp_id)
            if document.state != "posted":
                invoice = document.content
                assert isinstance(invoice, SupplierInvoice)
                move_id = f"move-{next(self._ids)}"
                self._moves[move_id] = FakeMove(
                    move_id,
                    invoice.reference,
                    invoice.accounting_date or invoice.invoice_date,
                    _invoice_move_lines(invoice),
                )
                document.state = "posted"
            self._leave(at, "post_supplier_invoice")

    def supplier_invoice_state(self, erp_id: str) -> str:
        with self._lock:
            at = self._enter("supplier_invoice_state")
            state = self._document(at, "supplier_invoice_state", "invoice", erp_id).state
            self._leave(at, "supplier_invoice_state")
            return state

    # --- general ledger ------------------------------------------------------------------

    def post_journal_entry(self, entry: JournalEntry) -> ErpRef:
        method = "post_journal_entry"
        with self._lock:
            at = self._enter(method)
            try:
                ref = self._book(entry)
            except ErpRejected as error:
                self.calls.append(ErpCall(at, method, "rejected"))
                raise error from None
            self._leave(at, method)
            return ref

    def post_journal_entries(self, entries: Sequence[JournalEntry]) -> list[PostResult]:
        """One call (one entry in ``calls``, one lost answer, one refusal while down) for the
        whole batch; a rejected entry is answered alone and the others are booked."""
        method = "post_journal_entries"
        with self._lock:
            at = self._enter(method)
            results: list[PostResult] = []
            for entry in entries:
                try:
                    results.append(self._book(entry))
                except ErpRejected as error:
                    results.append(error)
            self._leave(at, method)
            return results

    def _book(self, entry: JournalEntry) -> ErpRef:
        existing = self._by_reference.get(("move", entry.entry_id))
        if existing is not None:
            return ErpRef(existing, entry.entry_id, created=False)
        for n, line in enumerate(entry.lines, start=1):
            if self._accounts is not None and line.account not in self._accounts:
                raise ErpRejected(f"line {n}: unknown account {line.account!r}", field="account")
            if (
                self._cost_centers is not None
                and line.cost_center is not None
                and line.cost_center not in self._cost_centers
            ):
                raise ErpRejected(
                    f"line {n}: unknown cost center {line.cost_center!r}", field="cost_center"
                )
        move_id = f"move-{next(self._ids)}"
        self._moves[move_id] = FakeMove(
            move_id,
            entry.entry_id,
            entry.posting_date,
            tuple(
                FakeMoveLine(ln.account, ln.cost_center, ln.debit, ln.credit, ln.party)
                for ln in entry.lines
            ),
        )
        self._by_reference[("move", entry.entry_id)] = move_id
        return ErpRef(move_id, entry.entry_id, created=True)

    def find_journal_entry(self, entry_id: str) -> ErpRef | None:
        method = "find_journal_entry"
        with self._lock:
            at = self._enter(method)
            move_id = self._by_reference.get(("move", entry_id))
            self._leave(at, method)
            return None if move_id is None else ErpRef(move_id, entry_id, created=False)

    def ledger_lines(
        self, start: date, end: date, accounts: Sequence[str] | None = None
    ) -> Sequence[ErpLedgerLine]:
        method = "ledger_lines"
        with self._lock:
            at = self._enter(method)
            lines = [
                ErpLedgerLine(
                    reference=move.reference,
                    move_id=move.move_id,
                    posting_date=move.posting_date,
                    account=line.account,
                    cost_center=line.cost_center,
                    debit=line.debit,
                    credit=line.credit,
                    party=line.party,
                )
                for move in self._moves.values()
                if start <= move.posting_date <= end
                for line in move.lines
                if accounts is None or line.account in accounts
            ]
            self._leave(at, method)
            return lines


def _invoice_move_lines(invoice: SupplierInvoice) -> tuple[FakeMoveLine, ...]:
    """Each line's amount rounded to the cent on its own, as the ERP rounds invoice lines."""
    sign = -1 if invoice.credit_memo else 1
    amounts = [
        (ln.account or "expense", (ln.quantity * ln.unit_price.amount).quantize(CENT))
        for ln in invoice.lines
    ] + [(c.account, c.amount.amount.quantize(CENT)) for c in invoice.charges]
    lines = [_side(account, sign * amount, None) for account, amount in amounts if amount]
    total = sum((amount for _, amount in amounts), Decimal(0))
    payable = invoice.payable_account or "payable"
    lines.append(_side(payable, -sign * total, invoice.supplier))
    return tuple(lines)


def _side(account: str, net: Decimal, party: str | None) -> FakeMoveLine:
    zero = Decimal(0)
    return FakeMoveLine(account, None, max(net, zero), max(-net, zero), party)
