"""``TrytonErp``: the ERP port (``medbridge.canonical.erp.ErpPort``) over Tryton 7.0 or 8.0
JSON-RPC (``TrytonConfig.series``: what differs between them).

Exactly-once writes: every document MedBridge creates carries its idempotency key in a
reference field, and every create first searches for it:

| document | Tryton model | key field |
| --- | --- | --- |
| purchase order | ``purchase.purchase`` | ``reference`` = ``order.reference`` |
| goods receipt | ``stock.shipment.in`` | ``reference`` = ``receipt.reference`` |
| supplier invoice, credit | ``account.invoice`` (``in``) | ``reference`` = ``invoice.reference`` |
| journal entry | ``account.move`` (MedBridge's journal) | ``description`` = ``entry.entry_id`` |

Master data (products, suppliers, GL accounts) is read and pushed by code: ``masterdata``.

Journal entries go many per call (``post_journal_entries``, see ``moves``): one search for all
their ids, one ``create``, one ``post``; a single entry is a batch of one.

A retry after a lost answer therefore finds the document and returns it (``created`` False);
a found document that is not yet as far as the call takes it (a draft move whose ``post``
answer was lost, a shipment not yet done) is carried on from where it stopped, so every call
is safe to repeat. The search-then-create is not atomic: two MedBridge workers creating the
same document at the same instant could both create it; MedBridge's outbound queue sends one
document from one worker at a time (ordered per key), which is what makes this sufficient.

Codes are resolved to Tryton ids before any write: an unknown supplier, product, unit, GL
account or cost center is an ``ErpRejected`` naming the field, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import httpx

from medbridge.canonical.erp import (
    ErpAccount,
    ErpLedgerLine,
    ErpPort,
    ErpProduct,
    ErpRef,
    ErpRejected,
    ErpSupplier,
    PostResult,
)
from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.masterdata import Item, Supplier
from medbridge.canonical.procurement import GoodsReceipt, PurchaseOrder, SupplierInvoice
from medbridge.connectors.tryton.client import TrytonClient
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.connectors.tryton.errors import TrytonProtocolError
from medbridge.connectors.tryton.masterdata import TrytonMasterData
from medbridge.connectors.tryton.moves import MovePosting
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

PURCHASE = "purchase.purchase"
SHIPMENT = "stock.shipment.in"
INVOICE = "account.invoice"
MOVE = "account.move"


def _ids(records: Sequence[dict[str, Any]]) -> list[int]:
    return [int(r["id"]) for r in records]


def _nested(record: dict[str, Any], field: str, sub: str) -> Any:
    """trytond 7 answers dotted fields nested under ``"<field>."`` (None when unset)."""
    value = record.get(f"{field}.")
    return value.get(sub) if isinstance(value, dict) else None


PRICE_DIGITS = Decimal("0.0001")
"""Tryton's unit prices carry 4 decimals (``price_decimal``)."""


def _price(amount: Decimal, field: str) -> Decimal:
    """``amount`` with Tryton's 4 decimals; a price that would lose a digit is refused."""
    price = amount.quantize(PRICE_DIGITS)
    if price != amount:
        raise ErpRejected(f"unit price {amount} has more than 4 decimals", field=field)
    return price


class TrytonErp:
    """The ERP port on one Tryton database. Not thread-safe: one per worker."""

    def __init__(
        self,
        config: TrytonConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        client: TrytonClient | None = None,
    ) -> None:
        self.config = config
        self.client = client or TrytonClient(config, transport=transport)
        self._cache: dict[str, Any] = {}
        self.moves = MovePosting(self.client, config, self._medbridge_journal)
        self.masterdata = TrytonMasterData(self.client, config)

    def close(self) -> None:
        self.client.close()

    # --- code -> id lookups --------------------------------------------------------------

    def _one(self, model: str, domain: list[Any], what: str, field: str) -> dict[str, Any]:
        found = self.client.search_read(model, domain, ["id"], limit=1)
        if not found:
            raise ErpRejected(f"{self.config.database}: unknown {what}", field=field)
        return found[0]

    def _supplier(self, code: str) -> int:
        return int(
            self._one("party.party", [("code", "=", code)], f"supplier {code!r}", "supplier")["id"]
        )

    def _product(self, code: str, field: str) -> dict[str, Any]:
        found = self.client.search_read(
            "product.product",
            [("code", "=", code)],
            ["id", "cost_price", "template.account_category.account_expense"],
            limit=1,
        )
        if not found:
            raise ErpRejected(f"{self.config.database}: unknown item {code!r}", field=field)
        return found[0]

    def _expense_account(self, product: dict[str, Any], field: str) -> int:
        """What Tryton's invoice line takes for a product: its accounting category's expense."""
        category = _nested(product, "template", "account_category.")
        account = category.get("account_expense") if isinstance(category, dict) else None
        if not isinstance(account, int):
            raise ErpRejected(f"item {product['id']} has no expense account", field=field)
        return account

    def _unit(self, symbol: str, field: str) -> int:
        key = f"unit:{symbol}"
        if key not in self._cache:
            found = self._one("product.uom", [("symbol", "=", symbol)], f"unit {symbol!r}", field)
            self._cache[key] = int(found["id"])
        return int(self._cache[key])

    def _address(self, party: int) -> int | None:
        found = self.client.search_read("party.address", [("party", "=", party)], ["id"], limit=1)
        return int(found[0]["id"]) if found else None

    def _journal(self, domain: list[Any], what: str) -> int:
        key = f"journal:{domain!r}"
        if key not in self._cache:
            self._cache[key] = int(self._one("account.journal", domain, what, "journal")["id"])
        return int(self._cache[key])

    def _currency(self) -> int:
        if "currency" not in self._cache:
            companies = self.client.search_read("company.company", [], ["currency"], limit=1)
            if not companies:
                raise ErpRejected(f"{self.config.database}: no company", field="company")
            self._cache["currency"] = int(companies[0]["currency"])
        return int(self._cache["currency"])

    def _warehouse(self) -> dict[str, Any]:
        if "warehouse" not in self._cache:
            domain: list[Any] = [("type", "=", "warehouse")]
            if self.config.warehouse:
                domain.append(("code", "=", self.config.warehouse))
            found = self.client.search_read(
                "stock.location", domain, ["id", "input_location", "storage_location"], limit=1
            )
            if not found:
                raise ErpRejected(f"{self.config.database}: no warehouse", field="warehouse")
            self._cache["warehouse"] = found[0]
        return dict(self._cache["warehouse"])

    def _find(self, model: str, domain: list[Any]) -> dict[str, Any] | None:
        found = self.client.search_read(
            model, domain, ["id", "state"], limit=1, order=[("id", "ASC")]
        )
        return found[0] if found else None

    def _state(self, model: str, erp_id: str) -> str:
        try:
            record_id = int(erp_id)
        except ValueError:
            raise ErpRejected(f"not a {model} id: {erp_id!r}", field="erp_id") from None
        found = self.client.search_read(model, [("id", "=", record_id)], ["state"], limit=1)
        if not found:
            raise ErpRejected(f"{self.config.database}: no {model} {erp_id}", field="erp_id")
        return str(found[0]["state"])

    # --- master data (``masterdata.TrytonMasterData``) ------------------------------------

    def products(self) -> Sequence[ErpProduct]:
        return self.masterdata.products()

    def suppliers(self) -> Sequence[ErpSupplier]:
        return self.masterdata.suppliers()

    def cost_centers(self) -> Sequence[str]:
        return self.masterdata.cost_centers()

    def accounts(self, codes: Sequence[str]) -> dict[str, str]:
        return self.masterdata.accounts(codes)

    def upsert_product(self, item: Item) -> ErpRef:
        return self.masterdata.upsert_product(item)

    def upsert_supplier(self, supplier: Supplier) -> ErpRef:
        return self.masterdata.upsert_supplier(supplier)

    def ensure_accounts(self, accounts: Sequence[ErpAccount]) -> list[ErpRef]:
        return self.masterdata.ensure_accounts(accounts)

    # --- purchase orders -----------------------------------------------------------------

    def create_purchase_order(self, order: PurchaseOrder) -> ErpRef:
        existing = self._find(PURCHASE, [("reference", "=", order.reference)])
        if existing is not None:
            if existing["state"] == "draft":  # the create's answer was lost before the quote
                self.client.button(PURCHASE, "quote", [existing["id"]])
            log.info("tryton.purchase_exists", reference=order.reference, id=existing["id"])
            return ErpRef(str(existing["id"]), order.reference, created=False)
        supplier = self._supplier(order.supplier)
        lines = []
        for n, line in enumerate(order.lines):
            product = self._product(line.item, f"lines[{n}].item")
            lines.append(
                {
                    "type": "line",
                    "product": product["id"],
                    "quantity": float(line.quantity),
                    "unit": self._unit(line.unit, f"lines[{n}].unit"),
                    "unit_price": _price(line.unit_price.amount, f"lines[{n}].unit_price"),
                    "description": line.item,
                }
            )
        values: dict[str, Any] = {
            "party": supplier,
            "invoice_address": self._address(supplier),
            "reference": order.reference,
            "purchase_date": order.order_date,
            "warehouse": self._warehouse()["id"],
            "invoice_method": "manual",  # MedBridge records the supplier's invoice itself
            "lines": [["create", lines]],
        }
        (purchase_id,) = self.client.create(PURCHASE, [values])
        self.client.button(PURCHASE, "quote", [purchase_id])
        log.info("tryton.purchase_created", reference=order.reference, id=purchase_id)
        return ErpRef(str(purchase_id), order.reference, created=True)

    def confirm_purchase_order(self, erp_id: str) -> None:
        """quote -> confirm -> process, from wherever the order is (safe to repeat)."""
        state = self._state(PURCHASE, erp_id)
        ids = [int(erp_id)]
        if state == "draft":
            self.client.button(PURCHASE, "quote", ids)
            state = "quotation"
        if state == "quotation":
            self.client.button(PURCHASE, "confirm", ids)
            state = self._state(PURCHASE, erp_id)
        if state == "confirmed":
            self.client.button(PURCHASE, "process", ids)
        elif state in ("cancelled",):
            raise ErpRejected(f"purchase {erp_id} is {state}", field="erp_id")

    def purchase_order_state(self, erp_id: str) -> str:
        return self._state(PURCHASE, erp_id)

    def cancel_purchase_order(self, erp_id: str, reason: str) -> str:
        """Cancel what is still open of the order; the order's state after it (safe to repeat).

        A draft or quoted order: Tryton's ``cancel`` button (state ``cancelled``). A confirmed or
        processing order: its incoming moves not yet received (``draft``/``assigned``) are
        cancelled (``stock.move`` ``cancel``), so nothing more is expected; Tryton then shows
        the order ``processing`` with a shipment exception. Received moves stay (a recorded
        receipt is not unwound here). A ``done`` or ``cancelled`` order is left as it is.
        """
        state = self._state(PURCHASE, erp_id)
        ids = [int(erp_id)]
        if state in ("draft", "quotation"):
            self.client.button(PURCHASE, "cancel", ids)
            state = self._state(PURCHASE, erp_id)
            log.info("tryton.purchase_cancelled", id=ids[0], state=state, reason=reason)
        elif state in ("confirmed", "processing"):
            moves = self.client.search_read(
                "stock.move",
                [("purchase", "=", ids[0]), ("state", "in", ["draft", "assigned"])],
                ["id"],
                order=[("id", "ASC")],
            )
            if moves:
                self.client.button("stock.move", "cancel", _ids(moves))
                state = self._state(PURCHASE, erp_id)
            log.info(
                "tryton.purchase_cancelled",
                id=ids[0],
                state=state,
                moves_cancelled=len(moves),
                reason=reason,
            )
        return state

    # --- goods receipts ------------------------------------------------------------------

    def record_goods_receipt(self, receipt: GoodsReceipt) -> ErpRef:
        existing = self._find(SHIPMENT, [("reference", "=", receipt.reference)])
        if existing is not None:
            self._finish_receipt(int(existing["id"]), str(existing["state"]))
            return ErpRef(str(existing["id"]), receipt.reference, created=False)
        supplier = self._supplier(receipt.supplier)
        warehouse = self._warehouse()
        open_moves = self._order_moves(receipt)
        moves: list[int] = []
        for n, line in enumerate(receipt.lines):
            product = self._product(line.item, f"lines[{n}].item")
            move = next((m for m in open_moves if m["product"] == product["id"]), None)
            if move is None:
                raise ErpRejected(
                    f"{receipt.reference}: line {n}: {line.item} is not open on purchase "
                    f"order {receipt.purchase_order!r}",
                    field=f"lines[{n}].item",
                )
            open_moves.remove(move)
            update: dict[str, Any] = {
                "quantity": float(line.quantity),
                "unit": self._unit(line.unit, f"lines[{n}].unit"),
                "planned_date": receipt.received_on,
            }
            if line.unit_price is not None:
                update["unit_price"] = _price(line.unit_price.amount, f"lines[{n}].unit_price")
            if line.lot:
                update["lot"] = self._lot(int(product["id"]), line.lot, line.expiry)
            self.client.write("stock.move", [move["id"]], update)
            moves.append(int(move["id"]))
        values: dict[str, Any] = {
            "supplier": supplier,
            "reference": receipt.reference,
            "warehouse": warehouse["id"],
            "warehouse_input": warehouse["input_location"],
            "warehouse_storage": warehouse["storage_location"],
            "planned_date": receipt.received_on,
            "incoming_moves": [["add", moves]],
        }
        (shipment_id,) = self.client.create(SHIPMENT, [values])
        self._finish_receipt(shipment_id, "draft")
        log.info("tryton.receipt_recorded", reference=receipt.reference, id=shipment_id)
        return ErpRef(str(shipment_id), receipt.reference, created=True)

    def _order_moves(self, receipt: GoodsReceipt) -> list[dict[str, Any]]:
        """The order's moves not yet received. Tryton wants every move from a supplier to have
        an origin (a purchase line): a receipt is recorded against its purchase order."""
        if receipt.purchase_order is None:
            raise ErpRejected(
                f"{receipt.reference}: Tryton receives against a purchase order",
                field="purchase_order",
            )
        order = self._find(PURCHASE, [("reference", "=", receipt.purchase_order)])
        if order is None:
            raise ErpRejected(
                f"{receipt.reference}: unknown purchase order {receipt.purchase_order!r}",
                field="purchase_order",
            )
        return self.client.search_read(
            "stock.move",
            [("purchase", "=", order["id"]), ("state", "=", "draft"), ("shipment", "=", None)],
            ["id", "product"],
            order=[("id", "ASC")],
        )

    def _lot(self, product: int, number: str, expiry: date | None) -> int:
        """The ``stock.lot`` of that number for that product, created if new."""
        found = self.client.search_read(
            "stock.lot", [("number", "=", number), ("product", "=", product)], ["id"], limit=1
        )
        if found:
            return int(found[0]["id"])
        values: dict[str, Any] = {"number": number, "product": product}
        if expiry is not None:
            values["expiration_date"] = expiry
        return self.client.create("stock.lot", [values])[0]

    def _finish_receipt(self, shipment_id: int, state: str) -> None:
        if state == "draft":
            self.client.button(SHIPMENT, "receive", [shipment_id])
            state = "received"
        if state == "received":
            self.client.button(SHIPMENT, self.config.series.receipt_done_button, [shipment_id])

    # --- supplier invoices ---------------------------------------------------------------

    def create_supplier_invoice(self, invoice: SupplierInvoice) -> ErpRef:
        """A supplier invoice (type ``in``; a credit memo: negative quantities) whose lines
        are booked on the accounts MedBridge names (GRNI, PPV, tax) and whose payable is the
        facility's AP account with the supplier as party, dated ``accounting_date``."""
        existing = self._find(INVOICE, [("type", "=", "in"), ("reference", "=", invoice.reference)])
        if existing is not None:
            return ErpRef(str(existing["id"]), invoice.reference, created=False)
        supplier = self._supplier(invoice.supplier)
        party = self.client.search_read(
            "party.party",
            [("id", "=", supplier)],
            ["account_payable", "supplier_payment_term"],
            limit=1,
        )[0]
        named = {ln.account for ln in invoice.lines if ln.account} | {
            c.account for c in invoice.charges
        }
        if invoice.payable_account:
            named.add(invoice.payable_account)
        accounts = self._codes("account.account", named, [("type", "!=", None)])
        sign = -1 if invoice.credit_memo else 1
        lines = []
        for n, line in enumerate(invoice.lines):
            product = self._product(line.item, f"lines[{n}].item")
            lines.append(
                {
                    "type": "line",
                    "product": product["id"],
                    "account": self._account(accounts, line.account, f"lines[{n}].account")
                    if line.account
                    else self._expense_account(product, f"lines[{n}].item"),
                    "quantity": float(sign * line.quantity),
                    "unit": self._unit(line.unit, f"lines[{n}].unit"),
                    "unit_price": _price(line.unit_price.amount, f"lines[{n}].unit_price"),
                    "description": line.item,
                }
            )
        for n, charge in enumerate(invoice.charges):
            lines.append(
                {
                    "type": "line",
                    "account": self._account(accounts, charge.account, f"charges[{n}].account"),
                    "quantity": float(sign),
                    "unit_price": _price(charge.amount.amount, f"charges[{n}].amount"),
                    "description": charge.description,
                }
            )
        payable = (
            self._account(accounts, invoice.payable_account, "payable_account")
            if invoice.payable_account
            else party["account_payable"] or self._default_payable()
        )
        values: dict[str, Any] = {
            "type": "in",
            "party": supplier,
            "invoice_address": self._address(supplier),
            "account": payable,
            "payment_term": party["supplier_payment_term"],
            "journal": self._journal([("type", "=", "expense")], "expense journal"),
            "reference": invoice.reference,
            "description": invoice.invoice_number,
            "invoice_date": invoice.invoice_date,
            "accounting_date": invoice.accounting_date or invoice.invoice_date,
            "lines": [["create", lines]],
        }
        (invoice_id,) = self.client.create(INVOICE, [values])
        log.info("tryton.invoice_created", reference=invoice.reference, id=invoice_id)
        return ErpRef(str(invoice_id), invoice.reference, created=True)

    def _account(self, accounts: dict[str, int], code: str | None, field: str) -> int:
        if code not in accounts:
            raise ErpRejected(f"{self.config.database}: unknown account {code!r}", field=field)
        return accounts[code]

    def post_supplier_invoice(self, erp_id: str) -> None:
        state = self._state(INVOICE, erp_id)
        if state in ("draft", "validated"):
            self.client.button(INVOICE, "post", [int(erp_id)])
        elif state == "cancelled":
            raise ErpRejected(f"invoice {erp_id} is cancelled", field="erp_id")

    def _default_payable(self) -> int:
        found = self.client.search_read("account.configuration", [], ["default_account_payable"])
        account = found[0].get("default_account_payable") if found else None
        if not isinstance(account, int):
            raise ErpRejected("no payable account for the supplier", field="supplier")
        return account

    def supplier_invoice_state(self, erp_id: str) -> str:
        return self._state(INVOICE, erp_id)

    # --- general ledger ------------------------------------------------------------------

    def _medbridge_journal(self) -> int:
        return self._journal([("code", "=", self.config.journal)], "MedBridge journal")

    def _move_domain(self, entry_id: str) -> list[Any]:
        reference = self.config.move_reference.value
        return [(reference, "=", entry_id), ("journal", "=", self._medbridge_journal())]

    def post_journal_entry(self, entry: JournalEntry) -> ErpRef:
        """A batch of one (``moves.MovePosting``): its rejection raised."""
        [result] = self.moves.post([entry])
        if isinstance(result, ErpRejected):
            raise result
        return result

    def post_journal_entries(self, entries: Sequence[JournalEntry]) -> list[PostResult]:
        """Many entries in one search, one create and one post (``moves.MovePosting``)."""
        return self.moves.post(entries)

    def _codes(self, model: str, codes: set[str], extra: list[Any]) -> dict[str, int]:
        if not codes:
            return {}
        records = self.client.search_read(
            model, [("code", "in", sorted(codes)), *extra], ["id", "code"]
        )
        return {str(r["code"]): int(r["id"]) for r in records}

    def find_journal_entry(self, entry_id: str) -> ErpRef | None:
        existing = self._find(MOVE, self._move_domain(entry_id))
        return None if existing is None else ErpRef(str(existing["id"]), entry_id, created=False)

    def ledger_lines(
        self, start: date, end: date, accounts: Sequence[str] | None = None
    ) -> Sequence[ErpLedgerLine]:
        """Lines of posted moves dated ``start``..``end`` (inclusive), every journal; only on
        ``accounts`` when given. A supplier invoice's move is shown under the invoice's
        ``reference`` (MedBridge's key), any other under its description or number."""
        domain: list[Any] = [
            ("move.state", "=", "posted"),
            ("move.date", ">=", start),
            ("move.date", "<=", end),
        ]
        if accounts is not None:
            domain.append(("account.code", "in", sorted(accounts)))
        records = self.client.search_read(
            "account.move.line",
            domain,
            [
                "id",
                "move",
                "debit",
                "credit",
                "move.date",
                "move.description",
                "move.number",
                "move.origin",
                "account.code",
                "account.name",
                "party.code",
            ],
            order=[("move", "ASC"), ("id", "ASC")],
        )
        centers: dict[int, str] = {}
        invoices: dict[str, str] = {}
        if records:
            analytic = self.client.search_read(
                "analytic_account.line",
                [("move_line", "in", _ids(records))],
                ["move_line", "account.code"],
                order=[("id", "ASC")],
            )
            for a in analytic:
                centers.setdefault(int(a["move_line"]), str(_nested(a, "account", "code")))
            origins = {str(_nested(r, "move", "origin") or "") for r in records}
            invoice_ids = sorted(
                int(o.split(",")[1]) for o in origins if o.startswith(f"{INVOICE},")
            )
            if invoice_ids:
                for inv in self.client.search_read(
                    INVOICE, [("id", "in", invoice_ids)], ["id", "reference"]
                ):
                    if inv.get("reference"):
                        invoices[f"{INVOICE},{inv['id']}"] = str(inv["reference"])
        return [self._ledger_line(r, centers.get(int(r["id"])), invoices) for r in records]

    @staticmethod
    def _ledger_line(
        record: dict[str, Any], cost_center: str | None, invoices: dict[str, str]
    ) -> ErpLedgerLine:
        posted = _nested(record, "move", "date")
        if not isinstance(posted, date):
            raise TrytonProtocolError(f"account.move.line {record.get('id')}: no move date")
        reference = (
            invoices.get(str(_nested(record, "move", "origin") or ""))
            or _nested(record, "move", "description")
            or _nested(record, "move", "number")
        )
        party = _nested(record, "party", "code")
        return ErpLedgerLine(
            reference=str(reference or f"account.move,{record['move']}"),
            move_id=str(record["move"]),
            posting_date=posted,
            account=str(_nested(record, "account", "code") or _nested(record, "account", "name")),
            cost_center=cost_center,
            debit=Decimal(record["debit"]),
            credit=Decimal(record["credit"]),
            party=str(party) if party else None,
        )


def _is_an_erp_port(adapter: TrytonErp) -> ErpPort:
    return adapter  # mypy checks here that TrytonErp implements the port
