"""The ERP port: the system API MedBridge drives an ERP through (Tryton is the real adapter).

Contract (every adapter passes ``tests/contract/test_erp_contract.py``):

- Every create is idempotent by the document's ``reference`` (MedBridge's idempotency key):
  the adapter looks for a document with that reference before creating one, and returns
  the existing one (``ErpRef.created`` False) if found. A retry after a lost answer therefore
  never creates a second document.
- A posted supplier invoice is booked by the ERP's own document accounting: debit each line's
  and charge's ``account``, credit ``payable_account`` with the supplier as party, on
  ``accounting_date``; a credit memo the other way round. ``ledger_lines`` shows that move
  under the invoice's ``reference``.
- ``post_journal_entry`` writes a balanced move in the ERP's general ledger (per line:
  account code, debit, credit, cost center as an analytic account) and posts it; idempotent
  by ``entry.entry_id``.
- ``post_journal_entries(entries)`` does the same for many entries in one port call (a batch:
  the ERP's list create and post) and answers one result per entry, in order: its ``ErpRef``,
  or the ``ErpRejected`` that refused that entry alone. An entry the ERP refuses never sinks
  the others of its batch. The batch is idempotent per entry: a repeat (after a lost answer)
  finds every entry already in the ERP (``created`` False) and creates only the missing ones.
  Errors that concern the whole call (``ErpUnavailable``, ``ErpAuthError``) are raised, and
  then any part of the batch may have been applied, which the per-entry idempotency makes
  safe. ``post_each`` is the batch in terms of the single call, for adapters without lists.
- ``cancel_purchase_order(erp_id, reason)`` is the compensation for a purchase order: it cancels
  what is still open of it and returns the order's resulting state; safe to repeat. A draft or
  quoted order becomes ``cancelled``. On a confirmed order the lines not yet received are
  cancelled, so nothing more is expected and a goods receipt against the order is then
  refused; goods already received stay (a recorded receipt is not unwound), so the order is
  not ``cancelled`` (Tryton shows it ``processing``). A ``done`` or ``cancelled`` order is left
  as it is. An unknown ``erp_id`` is an ``ErpRejected`` on ``erp_id``.
- Reads return what the ERP holds now.
- Master data pushes (``upsert_product``, ``upsert_supplier``, ``ensure_accounts``) are
  idempotent by the record's code (MedBridge's item, supplier or GL account code): the
  adapter finds the record by code, creates it if missing (``ErpRef.created`` True), and
  otherwise updates what differs of what MedBridge owns (a product's name and unit, a
  supplier's name, an account's name; ``ErpRef.updated`` True when it wrote). A push of
  what the ERP holds already answers ``created`` and ``updated`` False and writes nothing,
  so a repeat (after a lost answer, or a second sync) changes nothing. ``ErpRef.reference``
  is the code. An account's type and place in the chart are set when it is created and never
  changed after (the ERP's ledger hangs on them): a new account takes those of the account
  named by ``ErpAccount.like`` when the ERP has it (the same role at another facility), else
  the ERP's type for its ``type`` (a ``payable`` account keeps every line's party). A unit
  the ERP does not know is an ``ErpRejected`` on ``unit``, an account type it cannot place
  one on ``type``; nothing of that record is written. A pushed product is one
  ``products()`` reads back, an ensured account one a journal entry may post to.

The port is split by capability (``GeneralLedgerPort``, ``ProcurementPort``,
``PayablesPort``, ``MasterDataPort``); ``ErpPort`` is all four.

Errors (all subclasses of ``ErpError``):
- ``ErpUnavailable``: transient (connection refused or reset, timeout, 5xx): retry later; the
  request may or may not have been applied, which the reference check makes safe.
- ``ErpAuthError``: the credentials were refused: retrying will not help until fixed.
- ``ErpRejected``: the ERP refused the content (unknown account, closed period, bad value):
  permanent for this document; ``field`` names the culprit when known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.masterdata import AccountType, Item, Supplier
from medbridge.canonical.procurement import GoodsReceipt, PurchaseOrder, SupplierInvoice


class ErpError(Exception):
    """Root of the ERP port's errors."""


class ErpUnavailable(ErpError):
    """Transient: the ERP could not be reached or failed; retry later."""


class ErpAuthError(ErpError):
    """The ERP refused the credentials."""


class ErpRejected(ErpError):
    """The ERP refused the document's content. Permanent for that document."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ErpRef:
    """A document in the ERP: its id there, MedBridge's reference, and whether this call
    created it (False: it was already there, e.g. a retry after a lost answer)."""

    erp_id: str
    reference: str
    created: bool
    updated: bool = False
    """Master data pushes: this call changed a record the ERP had (its name or unit)."""


PostResult = ErpRef | ErpRejected
"""What a batch posting answers for one entry: the move, or why the ERP refused that entry."""


@dataclass(frozen=True)
class ErpProduct:
    erp_id: str
    code: str
    name: str
    unit: str
    gtins: tuple[str, ...] = ()


@dataclass(frozen=True)
class ErpSupplier:
    erp_id: str
    code: str
    name: str


@dataclass(frozen=True)
class ErpAccount:
    """A GL account as MedBridge pushes it (``MasterDataPort.ensure_accounts``)."""

    code: str
    name: str
    type: AccountType
    payable: bool = False
    """Accounts payable: every line on it names its party (the supplier)."""
    like: str | None = None
    """An account of the same role (another facility's) the ERP may hold already: a new
    account takes its type and place in the chart."""


@dataclass(frozen=True)
class ErpLedgerLine:
    """One line of a posted move, for reconciliation."""

    reference: str
    """The move's reference: a MedBridge journal entry id (MedBridge's journal), the
    ``reference`` of the supplier invoice a document move books, or whatever the ERP has."""
    move_id: str
    posting_date: date
    account: str
    cost_center: str | None
    debit: Decimal
    credit: Decimal
    party: str | None = None
    """The party's code (the supplier, on payable lines)."""


class MasterDataPort(Protocol):
    """Capability ``master_data``: the ERP's items, suppliers, cost centers and GL accounts,
    read, and MedBridge's pushed (idempotent by code, see the module's contract)."""

    def products(self) -> Sequence[ErpProduct]: ...

    def suppliers(self) -> Sequence[ErpSupplier]: ...

    def cost_centers(self) -> Sequence[str]: ...

    def accounts(self, codes: Sequence[str]) -> dict[str, str]:
        """The GL accounts of these codes the ERP holds: their names, by code."""
        ...

    def upsert_product(self, item: Item) -> ErpRef:
        """The item as a purchasable product (code, name, base unit)."""
        ...

    def upsert_supplier(self, supplier: Supplier) -> ErpRef:
        """The supplier as a party (code, name)."""
        ...

    def ensure_accounts(self, accounts: Sequence[ErpAccount]) -> list[ErpRef]:
        """Each account found or created (in order, one result each); a rejection raised
        (the accounts before it stay ensured, which a repeat finds)."""
        ...


class ProcurementPort(Protocol):
    """Capability ``procurement``: purchase orders and goods receipts."""

    def create_purchase_order(self, order: PurchaseOrder) -> ErpRef: ...

    def confirm_purchase_order(self, erp_id: str) -> None: ...

    def purchase_order_state(self, erp_id: str) -> str: ...

    def cancel_purchase_order(self, erp_id: str, reason: str) -> str: ...

    def record_goods_receipt(self, receipt: GoodsReceipt) -> ErpRef: ...


class PayablesPort(Protocol):
    """Capability ``payables``: supplier invoices and credit notes, booked by the ERP."""

    def create_supplier_invoice(self, invoice: SupplierInvoice) -> ErpRef: ...

    def post_supplier_invoice(self, erp_id: str) -> None: ...

    def supplier_invoice_state(self, erp_id: str) -> str: ...


class GeneralLedgerPort(Protocol):
    """Capability ``general_ledger``: journal entries posted, and the ledger read back."""

    def post_journal_entry(self, entry: JournalEntry) -> ErpRef: ...

    def post_journal_entries(self, entries: Sequence[JournalEntry]) -> list[PostResult]:
        """Post many entries in one call; one result per entry, in order (see the module's
        contract)."""
        ...

    def find_journal_entry(self, entry_id: str) -> ErpRef | None: ...

    def ledger_lines(
        self, start: date, end: date, accounts: Sequence[str] | None = None
    ) -> Sequence[ErpLedgerLine]:
        """Lines of posted moves dated ``start``..``end`` (inclusive), every journal; only
        those on ``accounts`` (codes) when given."""
        ...


class ErpPort(MasterDataPort, ProcurementPort, PayablesPort, GeneralLedgerPort, Protocol):
    """An ERP offering every capability (the Tryton adapter). A destination that offers some
    only is routed only the domains those serve (``domain.erp_routing.NEEDS``); each flow
    asks for the part it uses."""


class _PostsOne(Protocol):
    def post_journal_entry(self, entry: JournalEntry) -> ErpRef: ...


def post_each(erp: _PostsOne, entries: Sequence[JournalEntry]) -> list[PostResult]:
    """``post_journal_entries`` in terms of ``post_journal_entry``: one call per entry, a
    rejection kept for its entry, anything else raised (the entries before it are posted,
    which a repeat finds)."""
    results: list[PostResult] = []
    for entry in entries:
        try:
            results.append(erp.post_journal_entry(entry))
        except ErpRejected as error:
            results.append(error)
    return results
