"""Journal entries recorded straight into the store, as the ledger posting would, routed to
the one ERP of the flat settings (``tryton``) unless a router is given."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection

from medbridge.canonical.finance import JournalEntry
from medbridge.flows.erp_routing import ErpRouter
from medbridge.store import ledger as ledger_store


def record_entries(
    conn: Connection, entries: Sequence[JournalEntry], router: ErpRouter | None = None
) -> None:
    router = router or ErpRouter.single()
    deliveries = router.journal(conn, entries, datetime.now(UTC))
    ledger_store.record(conn, [], list(entries), deliveries=deliveries)
