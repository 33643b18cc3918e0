"""Pure business rules over canonical objects: stock ledger, valuation, posting rules.

No I/O, no framework: an import-linter contract checks it. Every function here can be
property-tested on its own.
"""
