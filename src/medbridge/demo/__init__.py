"""The demo network: its master data, the traffic and cabinets that dispense from it, the
simulated suppliers that answer its orders, and the real Tryton ERP it posts to.

Nothing outside ``demo`` imports it but the composition root (``medbridge.app``), the tests
and the benchmarks: it stands at the level of ``api`` and ``cli`` and may use every layer
below it."""
