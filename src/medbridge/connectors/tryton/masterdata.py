"""Master data on Tryton (7.0 and 8.0 alike): the ERP's products, suppliers, cost centers and GL
accounts read, and MedBridge's pushed, idempotent by code (``canonical.erp``'s contract):

- an item is a ``product.template`` with its one ``product.product``, found by the product's
  ``code``; created as purchasable goods with its name, code, base unit (default and purchase
  unit) and the first accounting category; its name and unit updated when they differ;
- a supplier is a ``party.party`` (never the company's own), found by ``code``; created with
  name and code; its name updated when it differs;
- a GL account is an ``account.account``, found by ``code``; created with code, name, type and
  parent (those of ``like``, else by kind, below), party required and reconciled when payable;
  its name updated when it differs.

Every push first searches; a record already as MedBridge has it is not written at all. A unit
is found by its symbol (``product.uom``); an unknown one is an ``ErpRejected`` on ``unit``
before anything is written. Tryton refuses to change a product's unit once stock moves use it
(``UserError``): that arrives as an ``ErpRejected`` too.

A new account's type, when no ``like`` account is there, is the company's first leaf type
(``account.account.type`` without children) that fits its kind: expense and revenue the
income-statement types so flagged; an asset a balance-sheet asset that is neither receivable
nor stock; a payable account the payable type; another liability a balance-sheet type below
the top level, neither asset, receivable nor payable, one a supplier invoice may debit
(``debt``) first; equity a top-level balance-sheet leaf that is none of those. Its parent is
the chart's root.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medbridge.canonical.erp import ErpAccount, ErpProduct, ErpRef, ErpRejected, ErpSupplier
from medbridge.canonical.masterdata import AccountType, Item, Supplier
from medbridge.connectors.tryton.client import TrytonClient
from medbridge.connectors.tryton.config import TrytonConfig
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

PRODUCT = "product.product"
TEMPLATE = "product.template"
PRODUCT_UOM = "product.uom"
PARTY = "party.party"
ACCOUNT = "account.account"
ACCOUNT_TYPE = "account.account.type"

_LEAF: list[Any] = [("childs", "=", None)]
_NOT_ASSET: list[Any] = [
    ("statement", "=", "balance"),
    ("assets", "=", False),
    ("receivable", "=", False),
    ("payable", "=", False),
]
_TYPES: dict[AccountType, list[Any]] = {
    AccountType.EXPENSE: [("statement", "=", "income"), ("expense", "=", True)],
    AccountType.REVENUE: [("statement", "=", "income"), ("revenue", "=", True)],
    AccountType.ASSET: [
        ("statement", "=", "balance"),
        ("assets", "=", True),
        ("receivable", "=", False),
        ("stock", "=", False),
    ],
    AccountType.LIABILITY: [*_NOT_ASSET, ("parent.parent", "!=", None)],
    AccountType.EQUITY: [*_NOT_ASSET, ("parent.parent", "=", None)],
}
_PAYABLE: list[Any] = [("statement", "=", "balance"), ("payable", "=", True)]


def _nested(record: dict[str, Any], field: str, sub: str) -> Any:
    value = record.get(f"{field}.")
    return value.get(sub) if isinstance(value, dict) else None


class TrytonMasterData:
    """The master-data part of ``TrytonErp`` (which owns the client)."""

    def __init__(self, client: TrytonClient, config: TrytonConfig) -> None:
        self.client, self.config = client, config
        self._cache: dict[str, Any] = {}

    # --- reads ---------------------------------------------------------------------------

    def products(self) -> list[ErpProduct]:
        records = self.client.search_read(
            PRODUCT,
            [("code", "!=", None)],
            ["id", "code", "name", "default_uom.symbol"],
            order=[("code", "ASC")],
        )
        return [
            ErpProduct(
                erp_id=str(r["id"]),
                code=str(r["code"]),
                name=str(r["name"]),
                unit=str(_nested(r, "default_uom", "symbol") or ""),
            )
            for r in records
        ]

    def _own_parties(self) -> list[int]:
        if "own" not in self._cache:
            companies = self.client.search_read("company.company", [], ["party"])
            self._cache["own"] = [int(c["party"]) for c in companies]
        return list(self._cache["own"])

    def suppliers(self) -> list[ErpSupplier]:
        records = self.client.search_read(
            PARTY,
            [("code", "!=", None), ("id", "not in", self._own_parties())],
            ["id", "code", "name"],
            order=[("code", "ASC")],
        )
        return [ErpSupplier(str(r["id"]), str(r["code"]), str(r["name"])) for r in records]

    def cost_centers(self) -> list[str]:
        records = self.client.search_read(
            "analytic_account.account",
            [("type", "=", "normal"), ("code", "!=", None)],
            ["code"],
            order=[("code", "ASC")],
        )
        return [str(r["code"]) for r in records]

    def accounts(self, codes: Sequence[str]) -> dict[str, str]:
        if not codes:
            return {}
        records = self.client.search_read(
            ACCOUNT, [("code", "in", sorted(set(codes)))], ["code", "name"]
        )
        return {str(r["code"]): str(r["name"]) for r in records}

    # --- products ------------------------------------------------------------------------

    def _unit(self, symbol: str) -> int:
        key = f"unit:{symbol}"
        if key not in self._cache:
            found = self.client.search_read(PRODUCT_UOM, [("symbol", "=", symbol)], ["id"], limit=1)
            if not found:
                raise ErpRejected(f"{self.config.database}: unknown unit {symbol!r}", field="unit")
            self._cache[key] = int(found[0]["id"])
        return int(self._cache[key])

    def _category(self) -> int | None:
        """The accounting category new products take (their invoice lines' expense account)."""
        if "category" not in self._cache:
            found = self.client.search_read(
                "product.category",
                [("accounting", "=", True)],
                ["id"],
                limit=1,
                order=[("id", "ASC")],
            )
            self._cache["category"] = int(found[0]["id"]) if found else None
        category = self._cache["category"]
        return None if category is None else int(category)

    def upsert_product(self, item: Item) -> ErpRef:
        unit = self._unit(item.base_unit)
        found = self.client.search_read(
            PRODUCT,
            [("code", "=", item.code)],
            ["id", "name", "template", "default_uom"],
            limit=1,
            order=[("id", "ASC")],
        )
        if found:
            product = found[0]
            update: dict[str, Any] = {}
            if product["name"] != item.name:
                update["name"] = item.name
            if product["default_uom"] != unit:
                update |= {"default_uom": unit, "purchase_uom": unit}
            if update:
                self.client.write(TEMPLATE, [int(product["template"])], update)
                log.info("tryton.product_updated", code=item.code, fields=sorted(update))
            return ErpRef(str(product["id"]), item.code, created=False, updated=bool(update))
        values: dict[str, Any] = {
            "name": item.name,
            "code": item.code,
            "type": "goods",
            "default_uom": unit,
            "purchasable": True,
            "purchase_uom": unit,
            "products": [["create", [{}]]],
        }
        category = self._category()
        if category is not None:
            values["account_category"] = category
        (template_id,) = self.client.create(TEMPLATE, [values])
        created = self.client.search_read(
            PRODUCT, [("template", "=", template_id)], ["id"], limit=1, order=[("id", "ASC")]
        )
        log.info("tryton.product_created", code=item.code, template=template_id)
        return ErpRef(str(created[0]["id"]), item.code, created=True)

    # --- suppliers -----------------------------------------------------------------------

    def upsert_supplier(self, supplier: Supplier) -> ErpRef:
        found = self.client.search_read(
            PARTY,
            [("code", "=", supplier.code), ("id", "not in", self._own_parties())],
            ["id", "name"],
            limit=1,
            order=[("id", "ASC")],
        )
        if found:
            party = found[0]
            changed = party["name"] != supplier.name
            if changed:
                self.client.write(PARTY, [int(party["id"])], {"name": supplier.name})
                log.info("tryton.supplier_updated", code=supplier.code)
            return ErpRef(str(party["id"]), supplier.code, created=False, updated=changed)
        (party_id,) = self.client.create(PARTY, [{"name": supplier.name, "code": supplier.code}])
        log.info("tryton.supplier_created", code=supplier.code, id=party_id)
        return ErpRef(str(party_id), supplier.code, created=True)

    # --- GL accounts ---------------------------------------------------------------------

    def ensure_accounts(self, accounts: Sequence[ErpAccount]) -> list[ErpRef]:
        if not accounts:
            return []
        codes = {a.code for a in accounts} | {a.like for a in accounts if a.like}
        records = self.client.search_read(
            ACCOUNT,
            [("code", "in", sorted(codes))],
            ["id", "code", "name", "type", "parent", "party_required", "reconcile"],
            order=[("id", "ASC")],
        )
        existing: dict[str, dict[str, Any]] = {}
        for r in records:
            existing.setdefault(str(r["code"]), r)
        refs: list[ErpRef] = []
        for account in accounts:
            found = existing.get(account.code)
            if found is None:
                found = self._create_account(account, existing.get(account.like or ""))
                existing[account.code] = found
                refs.append(ErpRef(str(found["id"]), account.code, created=True))
                continue
            changed = found["name"] != account.name
            if changed:
                self.client.write(ACCOUNT, [int(found["id"])], {"name": account.name})
                found["name"] = account.name
                log.info("tryton.account_updated", code=account.code)
            refs.append(ErpRef(str(found["id"]), account.code, created=False, updated=changed))
        return refs

    def _create_account(self, account: ErpAccount, like: dict[str, Any] | None) -> dict[str, Any]:
        company = self._company()
        values: dict[str, Any] = {
            "code": account.code,
            "name": account.name,
            "company": company,
        }
        if like is not None and like.get("type"):
            values |= {
                "type": like["type"],
                "parent": like["parent"],
                "party_required": bool(like["party_required"]),
                "reconcile": bool(like["reconcile"]),
            }
        else:
            values |= {
                "type": self._account_type(account, company),
                "parent": self._chart_root(company),
                "party_required": account.payable,
                "reconcile": account.payable,
            }
        (account_id,) = self.client.create(ACCOUNT, [values])
        log.info("tryton.account_created", code=account.code, id=account_id)
        return {"id": account_id, "code": account.code, "name": account.name} | values

    def _company(self) -> int:
        if "company" not in self._cache:
            companies = self.client.search_read(
                "company.company", [], ["id"], limit=1, order=[("id", "ASC")]
            )
            if not companies:
                raise ErpRejected(f"{self.config.database}: no company", field="company")
            self._cache["company"] = int(companies[0]["id"])
        return int(self._cache["company"])

    def _account_type(self, account: ErpAccount, company: int) -> int:
        payable = account.payable and account.type is AccountType.LIABILITY
        domain = [*(_PAYABLE if payable else _TYPES[account.type]), *_LEAF]
        order = [("debt", "DESC"), ("id", "ASC")]
        found = self.client.search_read(
            ACCOUNT_TYPE, [("company", "=", company), *domain], ["id"], limit=1, order=order
        )
        if not found:
            raise ErpRejected(
                f"{self.config.database}: no account type for a {account.type.value} account"
                f" ({account.code})",
                field="type",
            )
        return int(found[0]["id"])

    def _chart_root(self, company: int) -> int | None:
        found = self.client.search_read(
            ACCOUNT,
            [("company", "=", company), ("parent", "=", None)],
            ["id"],
            limit=1,
            order=[("id", "ASC")],
        )
        return int(found[0]["id"]) if found else None
