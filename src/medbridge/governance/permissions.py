"""Who may do what: permissions, the roles that bundle them, and the principal a request acts
as (an API key's client, or the subject of an OAuth2 token).

Every route declares the ONE permission it needs (``api.auth.require``). A client holds one or
more roles; its permissions are their union. An OAuth2 token carries permissions as its scopes
(space-separated, the permission names below), never more than its client holds.

Facility scopes: a client may be bound to facilities (``facilities``; None = every facility).
Its reads are filtered to them, its writes anywhere else are refused (403), and what belongs to
no one facility (master data, cross-references, dead letters, trading-partner documents) is
refused to it altogether: a client of H1 never sees or changes what H2 shares.

The roles (the README has the same table):

============  ==================================================================================
role          permissions
============  ==================================================================================
reader        every ``*:read`` except ``audit:read`` and ``encounters:read``
integration   reader + ``movements:write``, ``trade:write``, ``receiving:write``,
              ``messages:reprocess`` and the decisions of every work queue (the
              integration engine's own account)
pharmacy      ``stock:read``, ``ledger:read``, ``work:read``, ``work:pharmacy``,
              ``movements:write``, ``encounters:read``, ``dashboard:read``, ``lots:read``,
              ``lots:quarantine``
procurement   ``stock:read``, ``procurement:read``, ``trade:read``, ``work:read``,
              ``work:procurement``, ``receiving:write``, ``dashboard:read``, ``lots:read``,
              ``contracts:read``, ``contracts:write``
ap_clerk      ``procurement:read``, ``trade:read``, ``work:read``, ``work:ap``, ``erp:read``,
              ``dashboard:read``
finance       ``stock:read``, ``ledger:read``, ``erp:read``, ``erp:requeue``,
              ``erp:cutover``, ``procurement:read``, ``work:read``, ``work:ap``, ``dashboard:read``,
              ``periods:read``, ``periods:close``, ``contracts:read``
auditor       every ``*:read`` but ``encounters:read``, ``audit:read`` included; changes
              nothing
admin         every permission (the only role with ``masterdata:write``)
============  ==================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from medbridge.canonical.tasks import WorkQueue


class Permission(StrEnum):
    """One thing a client may do. The value is also the OAuth2 scope name (frozen)."""

    STOCK_READ = "stock:read"  # on-hand stock
    LEDGER_READ = "ledger:read"  # journal entries, ledger reconciliation, traces
    MOVEMENTS_WRITE = "movements:write"  # stock movements, FHIR resources
    OPERATIONS_READ = "operations:read"  # dead letters, parked inbound exceptions
    DEAD_LETTERS_REPLAY = "dead_letters:replay"
    EXCEPTIONS_DECIDE = "exceptions:decide"  # replay or discard a parked inbound message
    XREF_WRITE = "xref:write"  # code cross-references (master data)
    ERP_READ = "erp:read"  # ERP postings and the ERP ledger reconciliation
    ERP_REQUEUE = "erp:requeue"
    ERP_CUTOVER = "erp:cutover"  # switch a domain's ERP system of record (cutover, rollback)
    TRADE_READ = "trade:read"  # trading-partner documents
    TRADE_WRITE = "trade:write"  # X12 and cXML from partners
    PROCUREMENT_READ = "procurement:read"  # purchase orders, invoices
    RECEIVING_WRITE = "receiving:write"  # goods receipts
    WORK_READ = "work:read"  # work items
    WORK_PHARMACY = "work:pharmacy"  # decide tasks of the pharmacy queue
    WORK_PROCUREMENT = "work:procurement"
    WORK_AP = "work:ap"
    AUDIT_READ = "audit:read"
    CATALOG_READ = "catalog:read"  # the API and event catalog, the AsyncAPI document
    DASHBOARD_READ = "dashboard:read"  # KPIs per facility, consumer lag, ERP outbox, queues
    ENCOUNTERS_READ = "encounters:read"  # see encounter pseudonyms (governance.minimisation)
    CLIENTS_ADMIN = "clients:admin"  # clients, keys, roles
    MESSAGES_READ = "messages:read"  # the message browser: inbound and outbound messages
    MESSAGES_REPROCESS = "messages:reprocess"  # feed stored messages back through their path
    PERIODS_READ = "periods:read"  # accounting periods and their close reports
    PERIODS_CLOSE = "periods:close"  # close (lock) an accounting period
    LOTS_READ = "lots:read"  # a lot's trace (recall): where it came from, is, went
    LOTS_QUARANTINE = "lots:quarantine"  # quarantine a lot, and release it
    MASTERDATA_READ = "masterdata:read"  # items, locations, cost centers, suppliers
    MASTERDATA_WRITE = "masterdata:write"  # write them, one by one or by bulk import
    CONTRACTS_READ = "contracts:read"  # supplier contracts, price tiers, catalog proposals
    CONTRACTS_WRITE = "contracts:write"  # create and change contracts


WORK_DECISIONS = {
    WorkQueue.PHARMACY: Permission.WORK_PHARMACY,
    WorkQueue.PROCUREMENT: Permission.WORK_PROCUREMENT,
    WorkQueue.AP: Permission.WORK_AP,
}
"""Deciding a task of a queue needs the queue's permission (and, where the queue has named
owners in the settings, being one of them)."""

_READS = frozenset(p for p in Permission if p.value.endswith(":read")) - {
    Permission.ENCOUNTERS_READ
}
"""Every read of business data. Encounter pseudonyms are not business data: only the roles that
work with encounters (pharmacy, admin) see them, never an analytics reader."""


class Role(StrEnum):
    READER = "reader"
    INTEGRATION = "integration"
    PHARMACY = "pharmacy"
    PROCUREMENT = "procurement"
    AP_CLERK = "ap_clerk"
    FINANCE = "finance"
    AUDITOR = "auditor"
    ADMIN = "admin"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.READER: _READS - {P.AUDIT_READ},
    Role.INTEGRATION: (_READS - {P.AUDIT_READ})
    | {
        P.MOVEMENTS_WRITE,
        P.TRADE_WRITE,
        P.RECEIVING_WRITE,
        P.MESSAGES_REPROCESS,
        *WORK_DECISIONS.values(),
    },
    Role.PHARMACY: frozenset(
        {
            P.STOCK_READ,
            P.LEDGER_READ,
            P.WORK_READ,
            P.WORK_PHARMACY,
            P.MOVEMENTS_WRITE,
            P.ENCOUNTERS_READ,
            P.DASHBOARD_READ,
            P.LOTS_READ,
            P.LOTS_QUARANTINE,
        }
    ),
    Role.PROCUREMENT: frozenset(
        {
            P.STOCK_READ,
            P.PROCUREMENT_READ,
            P.TRADE_READ,
            P.WORK_READ,
            P.WORK_PROCUREMENT,
            P.RECEIVING_WRITE,
            P.DASHBOARD_READ,
            P.LOTS_READ,
            P.CONTRACTS_READ,
            P.CONTRACTS_WRITE,
        }
    ),
    Role.AP_CLERK: frozenset(
        {P.PROCUREMENT_READ, P.TRADE_READ, P.WORK_READ, P.WORK_AP, P.ERP_READ, P.DASHBOARD_READ}
    ),
    Role.FINANCE: frozenset(
        {
            P.STOCK_READ,
            P.LEDGER_READ,
            P.ERP_READ,
            P.ERP_REQUEUE,
            P.ERP_CUTOVER,
            P.PROCUREMENT_READ,
            P.WORK_READ,
            P.WORK_AP,
            P.DASHBOARD_READ,
            P.PERIODS_READ,
            P.PERIODS_CLOSE,
            P.CONTRACTS_READ,
        }
    ),
    Role.AUDITOR: _READS,
    Role.ADMIN: frozenset(Permission),
}


def permissions_of(roles: Iterable[Role]) -> frozenset[Permission]:
    granted: frozenset[Permission] = frozenset()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return granted


def parse_scope(scope: str) -> frozenset[Permission]:
    """The permissions of an OAuth2 ``scope`` string; names that are not permissions (an
    identity provider's ``openid``, ``profile``...) are ignored."""
    known = {p.value: p for p in Permission}
    return frozenset(known[name] for name in scope.split() if name in known)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as. ``facilities`` None: every facility."""

    name: str
    permissions: frozenset[Permission]
    facilities: frozenset[str] | None = None
    roles: tuple[Role, ...] = ()
    via: str = "api_key"  # api_key | token | external_token | session (the console)

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def scoped(self) -> bool:
        return self.facilities is not None

    def covers(self, facility: str | None) -> bool:
        """May act on ``facility`` (None: something of no one facility, so only an unscoped
        client may)."""
        if self.facilities is None:
            return True
        return facility is not None and facility in self.facilities

    def outside(self, facilities: Iterable[str | None]) -> list[str]:
        """The facilities among ``facilities`` this principal may not act on (sorted)."""
        return sorted({f or "(no facility)" for f in facilities if not self.covers(f)})
