"""Build the GNU Health template database that the peer tests copy per test.

Run with the PEER virtualenv's python (``.peers/gnuhealth/bin/python``), never MedBridge's:
GNU Health and trytond are GPL and stay behind a process boundary.

    .peers/gnuhealth/bin/python peers/gnuhealth/build_template.py [--dir .peers/gnuhealth/db]

Writes, under ``--dir``:

* ``trytond.conf``   a trytond configuration (SQLite, path = that directory);
* ``template.sqlite`` health + health_stock activated and seeded: currency, company,
  institution, a prescriber mapped to ``admin``, a pharmacy with its warehouse, medicaments
  with lots (expiry) and opening stock;
* ``template.json``  what the fixtures need to know: admin login and password, product codes,
  lots, the pharmacy's storage location code, and the build fingerprint.

Idempotent: if ``template.json`` carries the fingerprint of the current requirements, this
script and the installed package versions, nothing is done (about 0.1 s). Otherwise the
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

ADMIN_PASSWORD = "medbridge-gh-admin"  # test peer only, bound to 127.0.0.1
MODULES = ("health", "health_stock")
DISTRIBUTIONS = ("trytond", "gnuhealth", "gnuhealth-stock", "proteus")

# The seeded catalogue: template.code is what product.code answers on stock.move.
MEDICAMENTS = (
    {
        "code": "VANCO-1G-GH",
        "name": "Vancomycin 1 g powder for infusion",
        "active_component": "vancomycin",
        "strength": 1000.0,
        "list_price": Decimal("12.40"),
        "lots": (("VAN-LOT-A1", 400), ("VAN-LOT-B2", 540)),
    },
    {
        "code": "00409-4332-01",
        "name": "Ceftriaxone 1 g vial",
        "active_component": "ceftriaxone",
        "strength": 1000.0,
        "list_price": Decimal("3.75"),
        "lots": (("CEF-LOT-C3", 300),),
    },
)
OPENING_QUANTITY = 500


def seed(conf: Path, name: str) -> dict[str, object]:
    """Company, institution, prescriber, pharmacy, medicaments, lots, opening stock."""
    from proteus import Model, config
    from trytond.modules.company.tests.tools import create_company, get_company
    from trytond.modules.currency.tests.tools import get_currency

    config.set_trytond(name, config_file=str(conf))
    Party = Model.get("party.party")

    currency = get_currency("USD")
    company_party = Party(name="MedBridge General Hospital", is_institution=True)
    company_party.save()
    create_company(party=company_party, currency=currency)
    company = get_company()

    Model.get("gnuhealth.institution")(
        party=company_party, code="MBGH", institution_type="hospital", public_level="public"
    ).save()

    # Prescriptions only validate if the logged-in user maps to a health professional;
    # create_target=False keeps the prescriber from also becoming a patient.
    admin = Model.get("res.user")(config.get_config().user)
    prescriber = Party(
        name="Prescriber",
        lastname="Peer",
        is_person=True,
        is_healthprof=True,
        gender="nd",
        internal_user=admin,
        create_target=False,
    )
    prescriber.is_patient = False
    prescriber.save()
    Model.get("gnuhealth.healthprofessional")(party=prescriber, code="HP-PEER").save()

    Location = Model.get("stock.location")
    warehouse = Location.find([("type", "=", "warehouse")])[0]
    supplier = Location.find([("type", "=", "supplier")])[0]
    storage = warehouse.storage_location
    pharmacy = Party(name="Satellite Pharmacy", is_pharmacy=True, warehouse=warehouse)
    pharmacy.save()

    unit = Model.get("product.uom").find([("name", "=", "Unit")])[0]
    Template = Model.get("product.template")
    Medicament = Model.get("gnuhealth.medicament")
    Lot = Model.get("stock.lot")
    Move = Model.get("stock.move")
    today = dt.date.today()

    products: dict[str, dict[str, object]] = {}
    opening = []
    for spec in MEDICAMENTS:
        template = Template(
            name=spec["name"],
            code=spec["code"],
            type="goods",
            default_uom=unit,
            list_price=spec["list_price"],
        )
        template.save()
        product = template.products[0]
        product.is_medicament = True
        product.cost_price = spec["list_price"]
        product.save()
        Medicament(
            product=product,
            active_component=spec["active_component"],
            strength=spec["strength"],
        ).save()
        lots: dict[str, str] = {}
        for number, days_to_expiry in spec["lots"]:
            expiry = today + dt.timedelta(days=days_to_expiry)
            lot = Lot(number=number, product=product, expiration_date=expiry)
            lot.save()
            lots[number] = expiry.isoformat()
            opening.append(
                Move(
                    product=product,
                    lot=lot,
                    quantity=OPENING_QUANTITY,
                    unit=unit,
                    from_location=supplier,
                    to_location=storage,
                    unit_price=spec["list_price"],
                    currency=currency,
                )
            )
        products[str(spec["code"])] = {"id": product.id, "name": spec["name"], "lots": lots}
    Move.save(opening)
    Move.click(opening, "do")

    return {
        "company": company.id,
        "pharmacy": {"party": pharmacy.id, "storage_code": storage.code},
        "products": products,
    }


PEER = shared.Peer(
    name="gnuhealth",
    script=Path(__file__).resolve(),
    modules=MODULES,
    distributions=DISTRIBUTIONS,
    admin_password=ADMIN_PASSWORD,
    seed=seed,
)


if __name__ == "__main__":
    sys.exit(PEER.main(sys.argv[1:], __doc__.splitlines()[0]))
