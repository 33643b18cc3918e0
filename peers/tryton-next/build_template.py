"""Build the template database of the SECOND Tryton ERP peer: the same seed as the first
(``peers/tryton/build_template.py``: company, chart, fiscal year, MedBridge's accounts, cost
centers, ``MB`` journal, units, suppliers, items), on the next long-term-support series
(8.0, pinned in ``requirements.txt``), as a migration from the on-premise 7.0 ERP would meet.

Run with THIS peer's python (``.peers/tryton-next/bin/python``), never MedBridge's:

    .peers/tryton-next/bin/python peers/tryton-next/build_template.py [--dir .peers/tryton-next/db]

Writes ``trytond.conf``, ``template.sqlite`` and ``template.json`` under ``--dir``, exactly as
the first peer's builder does; idempotent in the same way (its fingerprint also covers the
first peer's builder, whose seed it runs).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PEERS))  # peers/, for trytond_template
import trytond_template as shared

FIRST = PEERS / "tryton" / "build_template.py"
_spec = importlib.util.spec_from_file_location("tryton_first_build_template", FIRST)
assert _spec is not None and _spec.loader is not None
first = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(first)

PEER = shared.Peer(
    name="tryton-next",
    script=Path(__file__).resolve(),
    modules=first.MODULES,
    distributions=first.DISTRIBUTIONS,
    admin_password=first.ADMIN_PASSWORD,
    seed=first.seed,
    still_current=first._fiscal_year_covers_today,
    sources=(FIRST,),
)


if __name__ == "__main__":
    sys.exit(PEER.main(sys.argv[1:], __doc__.splitlines()[0]))
