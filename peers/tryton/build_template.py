"""Build the Tryton ERP template database that the peer tests copy per test.

Run with the PEER virtualenv's python (``.peers/tryton/bin/python``), never MedBridge's:
trytond is GPL and stays behind a process boundary.

    .peers/tryton/bin/python peers/tryton/build_template.py [--dir .peers/tryton/db]

Writes, under ``--dir``:

* ``trytond.conf``    a trytond configuration (SQLite, path = that directory);
* ``template.sqlite`` purchase, stock (lots, expiry), invoicing and analytic accounting
  activated and seeded: company (USD), a minimal chart of accounts, a fiscal year with monthly
  periods covering today, GL accounts whose codes are MedBridge's demo account codes
  (``1400-H1`` ...), analytic accounts for the demo cost centers, a ``MB`` journal for
  MedBridge's postings, units named like MedBridge's unit codes, the suppliers ``MCK`` and
  ``MEDSURG`` and the demo items as purchasable goods;
* ``template.json``   what the fixtures need: admin login and password, codes, ids, the
  fiscal year's dates and the build fingerprint.

Idempotent: if ``template.json`` carries the fingerprint of the current requirements, this
script and the installed package versions, AND its fiscal year still covers today (a fiscal
year created "now" covers about -6/+5 months), nothing is done (about 0.1 s). Otherwise the
database is rebuilt in a scratch file and renamed into place, so a crash never leaves a
half-built template behind.
"""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # peers/, for trytond_template
import trytond_template as shared

ADMIN_PASSWORD = "medbridge-erp-admin"  # test peer only, bound to 127.0.0.1
MODULES = (
    "purchase",
    "stock",
    "stock_lot",
    "stock_lot_sled",
    "account_invoice",
    "account_invoice_stock",
    "analytic_account",
)
DISTRIBUTIONS = ("trytond", "proteus", *(f"trytond_{m}" for m in MODULES))

STOCK_ACCOUNTING = """No stock accounting in the ERP (no ``account_stock_continental`` nor
anglo-saxon method): a hospital's perpetual inventory is MedBridge's stock ledger, which sees
every receipt, dispense, clinical consumption, transfer, wastage and count per location and
lot, values it at moving average and books it to the ERP's ledger as journal entries on the
facility's inventory account. The ERP's own stock module sees only the supplier shipments
(never a dispense), so valuation moves of its own would book every receipt a second time and
never the consumption. The ERP keeps the payables: its supplier invoice documents book AP per
supplier (party) against each facility's GRNI."""
JOURNAL_CODE = "MB"

# MedBridge's demo network (src/medbridge/demo/network.py), repeated here because
# this runs in the peer's virtualenv, which cannot import MedBridge.
FACILITIES = ("H1", "H2")
GL_ACCOUNTS = (  # code pattern, name, kind (balance-sheet side or expense)
    ("1400-{f}", "Inventory {f}", "asset"),
    ("2100-{f}", "Goods received not invoiced {f}", "grni"),
    ("2000-{f}", "Accounts payable {f}", "payable"),
    ("5100-{f}", "Drug expense {f}", "expense"),
    ("5200-{f}", "Medical supply expense {f}", "expense"),
    ("5300-{f}", "Wastage and expiry {f}", "expense"),
    ("5400-{f}", "Inventory count adjustment {f}", "expense"),
    ("5500-{f}", "Purchase price variance {f}", "expense"),
)
COST_CENTERS = (
    ("H1-CC-PHARM", "H1 pharmacy"),
    ("H1-CC-ICU", "H1 intensive care"),
    ("H1-CC-OR", "H1 surgery"),
    ("H2-CC-PHARM", "H2 pharmacy"),
    ("H2-CC-ED", "H2 emergency"),
)
SUPPLIERS = (("MCK", "Wholesale drug distributor"), ("MEDSURG", "Med/surg supplies distributor"))
UNITS = ("VIAL", "CAP", "BAG", "EA")  # MedBridge base units, as Tryton units of 1
ITEMS = (  # code, name, unit, cost price (USD per unit)
    ("VANCO-1G", "Vancomycin HCl 1 g vial", "VIAL", Decimal("6.85")),
    ("AMPI-250", "Ampicillin 250 mg capsule", "CAP", Decimal("0.42")),
    ("NICAR-40", "Nicardipine 40 mg/200 mL premixed bag", "BAG", Decimal("38.10")),
    ("DILUENT-10", "Sterile diluent 10 mL vial", "VIAL", Decimal("1.15")),
    ("AMOX-500", "Amoxicillin 500 mg oral capsule", "CAP", Decimal("0.19")),
    ("DRAPE-SM", "Drape, small towel, clear plastic, adhesive strip", "EA", Decimal("2.94")),
    ("TUBE-BLUE", "Blood collection tube, blue cap", "EA", Decimal("0.31")),
)


def seed(conf: Path, name: str) -> dict[str, object]:
    """Company, chart, fiscal year, MedBridge's accounts and cost centers, parties, items."""
    from proteus import Model, config
    from trytond.modules.account.tests.tools import create_chart, create_fiscalyear, get_accounts
    from trytond.modules.account_invoice.tests.tools import (
        create_payment_term,
        set_fiscalyear_invoice_sequences,
    )
    from trytond.modules.company.tests.tools import create_company, get_company
    from trytond.modules.currency.tests.tools import get_currency

    config.set_trytond(name, config_file=str(conf))
    Party = Model.get("party.party")
    company_party = Party(name="MedBridge Hospital Network")
    company_party.save()
    create_company(party=company_party, currency=get_currency("USD"))
    company = get_company()

    today = dt.date.today()
    fiscalyear = set_fiscalyear_invoice_sequences(create_fiscalyear(company, today))
    fiscalyear.click("create_period")  # no stock accounting method: see STOCK_ACCOUNTING

    create_chart(company)
    accounts = get_accounts(company)
    Account = Model.get("account.account")
    AccountType = Model.get("account.account.type")
    payable = accounts["payable"].type
    # GRNI: a liability a supplier invoice may debit (``debt``), beside the payables
    grni = AccountType(
        name="Goods received not invoiced",
        statement="balance",
        assets=False,
        debt=True,
        parent=payable.parent,
        company=company,
    )
    grni.save()
    types = {
        "asset": AccountType.find(
            [
                ("company", "=", company.id),
                ("statement", "=", "balance"),
                ("assets", "=", True),
                ("receivable", "=", False),
                ("childs", "=", None),
            ],
            limit=1,
        )[0],
        "expense": accounts["expense"].type,
        "grni": grni,
        "payable": payable,
    }
    parent = accounts["expense"].parent
    gl: dict[str, int] = {}
    for facility in FACILITIES:
        for pattern, label, kind in GL_ACCOUNTS:
            code = pattern.format(f=facility)
            account = Account(
                name=label.format(f=facility),
                code=code,
                type=types[kind],
                parent=parent,
                company=company,
                # AP is kept per supplier: every payable line names its party
                party_required=kind == "payable",
                reconcile=kind == "payable",
            )
            account.save()
            gl[code] = account.id

    Analytic = Model.get("analytic_account.account")
    root = Analytic(name="MedBridge cost centers", code="MB-CC", type="root", company=company)
    root.save()
    cost_centers: dict[str, int] = {}
    for code, label in COST_CENTERS:
        cc = Analytic(name=label, code=code, type="normal", root=root, parent=root, company=company)
        cc.save()
        cost_centers[code] = cc.id

    journal = Model.get("account.journal")(name="MedBridge", code=JOURNAL_CODE, type="general")
    journal.save()

    payment_term = create_payment_term()
    payment_term.save()
    suppliers: dict[str, int] = {}
    for code, label in SUPPLIERS:
        supplier = Party(name=label, code=code)
        supplier.supplier_payment_term = payment_term
        supplier.save()
        suppliers[code] = supplier.id

    Uom = Model.get("product.uom")
    unit = Uom.find([("name", "=", "Unit")])[0]
    uoms = {}
    for symbol in UNITS:
        uom = Uom(
            name=f"MedBridge {symbol}",
            symbol=symbol,
            category=unit.category,
            factor=1,
            rate=1,
            rounding=Decimal("0.0001"),
            digits=4,
        )
        uom.save()
        uoms[symbol] = uom

    Category = Model.get("product.category")
    category = Category(name="MedBridge stock", accounting=True)
    category.account_expense = accounts["expense"]
    category.account_revenue = accounts["revenue"]
    category.save()

    Template = Model.get("product.template")
    products: dict[str, dict[str, object]] = {}
    for code, label, symbol, cost in ITEMS:
        template = Template(
            name=label,
            code=code,
            type="goods",
            default_uom=uoms[symbol],
            purchasable=True,
            purchase_uom=uoms[symbol],
            list_price=cost * 2,
            cost_price_method="fixed",
            account_category=category,
        )
        template.save()
        product = template.products[0]
        product.cost_price = cost
        product.save()
        products[code] = {"id": product.id, "unit": symbol, "cost_price": str(cost)}

    return {
        "company": company.id,
        "fiscal_year": {
            "start": fiscalyear.start_date.isoformat(),
            "end": fiscalyear.end_date.isoformat(),
        },
        "journal": JOURNAL_CODE,
        "accounts": gl,
        "cost_centers": cost_centers,
        "suppliers": suppliers,
        "products": products,
    }


def _fiscal_year_covers_today(meta: dict[str, object]) -> bool:
    """A fiscal year (with periods) that still covers today."""
    year = meta.get("fiscal_year")
    if not isinstance(year, dict):
        return False
    today = dt.date.today().isoformat()
    return bool(year["start"] <= today <= year["end"])


PEER = shared.Peer(
    name="tryton",
    script=Path(__file__).resolve(),
    modules=MODULES,
    distributions=DISTRIBUTIONS,
    admin_password=ADMIN_PASSWORD,
    seed=seed,
    still_current=_fiscal_year_covers_today,
)


if __name__ == "__main__":
    sys.exit(PEER.main(sys.argv[1:], __doc__.splitlines()[0]))
