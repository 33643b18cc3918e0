"""Wire formats shared by connectors that speak the same protocol to different systems.

Connectors never import each other; what two of them share lives here (``tryton``: the
JSON-RPC value encoding of trytond, used by the GNU Health and the Tryton ERP connectors).
No I/O at import time; nothing here knows a connector's error tree.
"""
