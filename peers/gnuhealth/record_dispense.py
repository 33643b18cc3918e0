"""Record one pharmacy dispense in a GNU Health database, as a pharmacist would.

Run with the PEER virtualenv's python, never MedBridge's (GNU Health/trytond are GPL):

    .peers/gnuhealth/bin/python peers/gnuhealth/record_dispense.py \\
        --db test_1 --config db/trytond.conf --patient-name "Ada Lovelace" \\
        --puid MRN-1 --dob 1960-02-03 --product VANCO-1G-GH --quantity 2 --lot VAN-LOT-A1

Creates the patient unless one has that PUID (party with PUID in ``ref`` and date of
birth; ``gnuhealth.patient`` is created by GNU Health itself), a prescription for the medicament signed by the prescriber the
template maps to ``admin``, and a DONE ``stock.move`` from the pharmacy's storage to the
patient's customer location with ``origin`` = the prescription and the given lot. The
prescription wizard (``gnuhealth.prescription.stock.move.create``) never sets a lot, so the
move is created here the way the wizard does, plus the lot.

Prints one JSON line: ``{"move": id, "prescription": id, "prescription_code": ..., ...}``.
A running trytond serving the same SQLite file sees the move on its next request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from decimal import Decimal


def record(args: argparse.Namespace) -> dict[str, object]:
    from proteus import Model, config

    config.set_trytond(args.db, config_file=args.config)
    User = Model.get("res.user")
    config.get_config()._context = User.get_preferences(True, {})

    Party = Model.get("party.party")
    Product = Model.get("product.product")
    Medicament = Model.get("gnuhealth.medicament")
    Lot = Model.get("stock.lot")
    Move = Model.get("stock.move")
    Prescription = Model.get("gnuhealth.prescription.order")
    Patient = Model.get("gnuhealth.patient")

    existing = Party.find([("ref", "=", args.puid)])  # the PUID is unique: a returning patient
    if existing:
        person = existing[0]
    else:
        given, _, family = args.patient_name.partition(" ")
        person = Party(
            name=given,
            lastname=family or None,
            is_person=True,
            is_patient=True,
            gender=args.gender,
            dob=dt.date.fromisoformat(args.dob),
            ref=args.puid,
        )
        person.save()
    patient = Patient.find([("party", "=", person.id)])[0]

    product = Product.find([("code", "=", args.product)])[0]
    medicament = Medicament.find([("product", "=", product.id)])[0]
    pharmacy = Party.find([("is_pharmacy", "=", True)])[0]
    quantity = Decimal(args.quantity)

    rx = Prescription(patient=patient, pharmacy=pharmacy)
    rx.pregnancy_warning = False
    rx.allergy_warning = False
    rx.prescription_warning_ack = True
    line = rx.prescription_line.new()
    line.medicament = medicament
    line.quantity = max(1, math.ceil(quantity))
    rx.save()
    rx.click("create_prescription")

    storage = pharmacy.warehouse
    if storage.type == "warehouse":
        storage = storage.storage_location
    move = Move(
        origin=rx,
        from_location=storage,
        to_location=person.customer_location,
        product=product,
        unit=product.default_uom,
        quantity=float(quantity),
        unit_price=product.list_price,
        currency=Model.get("company.company")(config.get_config().context["company"]).currency,
    )
    if args.lot:
        move.lot = Lot.find([("number", "=", args.lot), ("product", "=", product.id)])[0]
    move.save()
    Move.click([move], "do")
    move.reload()
    return {
        "move": move.id,
        "prescription": rx.id,
        "prescription_code": rx.prescription_id,
        "patient": patient.id,
        "state": move.state,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database name (file <db>.sqlite)")
    parser.add_argument("--config", required=True, help="trytond configuration file")
    parser.add_argument("--patient-name", required=True, help='"Given Family"')
    parser.add_argument("--puid", required=True, help="PUID / MRN (party.ref)")
    parser.add_argument("--dob", required=True, help="date of birth, YYYY-MM-DD")
    parser.add_argument("--gender", default="m", help="m, f, nb, other, nd, u")
    parser.add_argument("--product", required=True, help="product code (template.code)")
    parser.add_argument("--quantity", required=True, help="quantity dispensed, in units")
    parser.add_argument("--lot", default=None, help="lot number (omit for no lot)")
    args = parser.parse_args(argv)
    print(json.dumps(record(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
