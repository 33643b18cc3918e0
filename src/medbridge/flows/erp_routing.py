"""Routing documents to ERP destinations (``domain.erp_routing``) on the store: the base
routes of the settings with the cutovers recorded in ``erp_routes``, and what each document
becomes in the outbox: one row per (document, destination).

The cutovers are read in the transaction that queues the documents (a small table; with one
destination there is nothing to read), so a cutover made by any process applies to every
document queued after its effective moment, and never to one queued before.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from medbridge.canonical.finance import BookedBy, JournalEntry
from medbridge.domain.erp_routing import (
    DEFAULT_DESTINATION,
    ErpDomain,
    Role,
    Route,
    RoutingTable,
    single,
)
from medbridge.domain.gl_summary import GlPostingMode
from medbridge.store import erp_routes
from medbridge.store.erp_postings import Delivery, DocumentKind


@dataclass(frozen=True)
class ErpRouter:
    table: RoutingTable
    gl_modes: Mapping[str, GlPostingMode]
    """Each destination's GL posting mode (summarised: consumption entries in slices)."""

    @classmethod
    def single(
        cls, name: str = DEFAULT_DESTINATION, gl: GlPostingMode = GlPostingMode.PER_EVENT
    ) -> ErpRouter:
        return cls(single(name), {name: gl})

    @property
    def names(self) -> list[str]:
        return list(self.table.destinations)

    def current(self, conn: Connection, *, for_queueing: bool = False) -> RoutingTable:
        """The table with every recorded cutover (``for_queueing``: read by a transaction
        that queues documents by it, so that no cutover commits in between; see
        ``store.erp_routes``)."""
        if len(self.table.destinations) == 1:
            return self.table
        return self.table.with_cutovers(erp_routes.cutovers(conn, for_queueing=for_queueing))

    def route(
        self,
        conn: Connection,
        domain: ErpDomain,
        facility: str | None,
        at: datetime,
        *,
        for_queueing: bool = False,
    ) -> Route | None:
        return self.current(conn, for_queueing=for_queueing).route(domain, facility, at)

    def journal(
        self,
        conn: Connection,
        entries: Sequence[JournalEntry],
        now: datetime,
        summarisable: Collection[str] = (),
    ) -> list[Delivery]:
        """The outbox rows of ``entries``: per destination of its GL route (its facility: the
        first line's), ``summarising`` where that destination summarises and the entry is
        ``summarisable`` (a consumption entry of one facility). An entry the ERP's own
        document books (a supplier invoice's mirror) is never sent."""
        table = self.current(conn, for_queueing=True)
        deliveries: list[Delivery] = []
        for entry in entries:
            if entry.booked_by is not BookedBy.MEDBRIDGE:
                continue
            facility = entry.lines[0].facility if entry.lines else None
            route = table.route(ErpDomain.GL, facility, now)
            if route is None:
                continue
            for destination, role in route.deliveries():
                summarising = (
                    entry.entry_id in summarisable
                    and self.gl_modes.get(destination) is GlPostingMode.SUMMARISED
                )
                deliveries.append(
                    Delivery(
                        document=entry.entry_id,
                        destination=destination,
                        kind=DocumentKind.JOURNAL_ENTRY,
                        role=role,
                        domain=ErpDomain.GL,
                        facility=facility,
                        summarising=summarising,
                    )
                )
        return deliveries

    def document(
        self,
        conn: Connection,
        *,
        document: str,
        kind: DocumentKind,
        domain: ErpDomain,
        facility: str | None,
        now: datetime,
        payload: str | None = None,
        after: str | None = None,
    ) -> list[Delivery]:
        """The outbox rows of one document of a workflow (a purchase order, a receipt...):
        one per destination of its route, the system of record first."""
        route = self.route(conn, domain, facility, now, for_queueing=True)
        if route is None:
            return []
        return [
            Delivery(
                document=document,
                destination=destination,
                kind=kind,
                role=role,
                domain=domain,
                facility=facility,
                payload=payload,
                after=after,
            )
            for destination, role in route.deliveries()
        ]


__all__ = ["DEFAULT_DESTINATION", "ErpRouter", "Role"]
