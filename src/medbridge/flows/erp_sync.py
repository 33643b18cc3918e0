"""Master data between MedBridge and an ERP destination, both ways (issue 17), for a destination
that offers ``master_data`` only (``MasterDataUnavailable`` otherwise: nothing is read or
written).

**Pull** (``pull_from_erp``; ``sync_from_erp`` is its one-ERP form): the ERP's products become
cross-references of MedBridge's items (an ERP code on the item, scoped by ``issuer``, so
postings and orders can name the ERP's product), its suppliers become MedBridge suppliers.
Items are matched by code, then by GTIN (the item's or one of its packs'); an ERP product that
matches nothing is reported, never guessed. Each change is audited as the caller's (the
master-data store's own audit rows); syncing again changes nothing.

**Push** (``push_to_erp``): MedBridge's items, suppliers and the GL accounts its
``account_assignments`` name go to the destination through the port's idempotent pushes
(``canonical.erp``: found by code, created if missing, updated where MedBridge's name or unit
differs). A new account is placed like the account of the same role at another facility
(``ErpAccount.like``); an accounts-payable one keeps its lines' party. Each record the ERP
created or changed is one audit row (``erp.masterdata.push``, target ``<destination>/<code>``)
as the caller's; a push that finds the ERP in step writes nothing and audits nothing. A record
the ERP refuses is reported with its reason and the others go on (the command exits non-zero);
an unreachable ERP or refused credentials stop the push, and a repeat finds what was done
(a record created by a call whose answer was lost is found unchanged by the repeat: the ERP
has it, but no audit row says this push created it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from medbridge.canonical.erp import ErpAccount, ErpRef, ErpRejected, MasterDataPort
from medbridge.canonical.masterdata import AccountRole, AccountType, CodeSystem, ItemCode, Supplier
from medbridge.domain.erp_routing import Capability
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.store import audit
from medbridge.store.tables import account_assignments, gl_accounts, item_packs, items, suppliers

SYNC_ACTOR = audit.system_actor("erp-sync")
PUSH_ACTION = "erp.masterdata.push"


class MasterDataUnavailable(ValueError):
    """The destination does not offer ``master_data``: it is neither read nor written."""


def require_master_data(destination: str, offers: Collection[Capability]) -> None:
    if Capability.MASTER_DATA not in offers:
        offered = ", ".join(sorted(c.value for c in offers)) or "nothing"
        raise MasterDataUnavailable(
            f"ERP {destination!r} does not offer master_data (it offers {offered}):"
            " no master data is synced with it"
        )


@dataclass
class SyncReport:
    linked: dict[str, str] = field(default_factory=dict)  # ERP product code -> item
    unmatched: list[str] = field(default_factory=list)  # ERP product codes
    suppliers_added: list[str] = field(default_factory=list)


@dataclass
class PushReport:
    """What one push did to the destination, per kind (``item``, ``supplier``, ``account``)."""

    destination: str
    created: dict[str, list[str]] = field(default_factory=dict)
    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    """(kind, code, the ERP's reason) of every record the ERP refused."""

    def count(self, outcome: dict[str, list[str]]) -> int:
        return sum(len(codes) for codes in outcome.values())


def pull_from_erp(
    engine: Engine,
    repo: MasterDataRepository,
    erp: MasterDataPort,
    *,
    destination: str,
    offers: Collection[Capability],
    issuer: str,
    actor: str = SYNC_ACTOR,
) -> SyncReport:
    """The destination's products and suppliers into MedBridge (see the module)."""
    require_master_data(destination, offers)
    return sync_from_erp(engine, repo, erp, issuer, actor=actor)


def sync_from_erp(
    engine: Engine,
    repo: MasterDataRepository,
    erp: MasterDataPort,
    issuer: str,
    *,
    actor: str = SYNC_ACTOR,
) -> SyncReport:
    """Read the ERP's products and suppliers and record them (``issuer`` names the ERP);
    each change is audited as ``actor``'s."""
    report = SyncReport()
    products, vendors = erp.products(), erp.suppliers()
    with engine.begin() as conn:
        known = set(conn.execute(select(items.c.code)).scalars())
        by_gtin = {
            row.gtin: row.item
            for row in conn.execute(select(item_packs.c.gtin, item_packs.c.item))
            if row.gtin
        }
        for product in products:
            item = product.code if product.code in known else None
            for gtin in product.gtins:
                item = item or repo.item_by_code(conn, CodeSystem.GTIN, gtin) or by_gtin.get(gtin)
            if item is None:
                report.unmatched.append(product.code)
                continue
            repo.link_code(
                conn,
                item,
                ItemCode(system=CodeSystem.ERP, code=product.erp_id, issuer=issuer),
                actor=actor,
            )
            report.linked[product.code] = item
        existing = set(conn.execute(select(suppliers.c.code)).scalars())
        for vendor in vendors:
            if vendor.code and vendor.code not in existing:
                repo.save_supplier(conn, Supplier(code=vendor.code, name=vendor.name), actor=actor)
                report.suppliers_added.append(vendor.code)
    return report


def assigned_accounts(engine: Engine) -> list[ErpAccount]:
    """The GL accounts ``account_assignments`` names, by code: each with its type, payable
    when it is some facility's accounts payable, and ``like`` the account of its first role at
    another facility (for the ERP to place a new one beside it)."""
    query = select(
        account_assignments.c.facility,
        account_assignments.c.role,
        account_assignments.c.account,
        gl_accounts.c.name,
        gl_accounts.c.type,
    ).join(gl_accounts, gl_accounts.c.code == account_assignments.c.account)
    with engine.connect() as conn:
        rows = list(conn.execute(query.order_by(account_assignments.c.account)))
    by_role: dict[str, list[tuple[str, str]]] = {}  # role -> (facility, account)
    for row in sorted(rows, key=lambda r: (r.role, r.facility)):
        by_role.setdefault(row.role, []).append((row.facility, row.account))
    accounts: dict[str, ErpAccount] = {}
    for row in rows:
        payable = row.role == AccountRole.ACCOUNTS_PAYABLE.value
        if row.account in accounts:
            if payable and not accounts[row.account].payable:
                current = accounts[row.account]
                accounts[row.account] = ErpAccount(
                    current.code, current.name, current.type, True, current.like
                )
            continue
        like = next((a for f, a in by_role[row.role] if a != row.account), None)
        accounts[row.account] = ErpAccount(
            row.account, row.name, AccountType(row.type), payable=payable, like=like
        )
    return list(accounts.values())


class _Pusher:
    def __init__(self, engine: Engine, destination: str, actor: str) -> None:
        self.engine, self.actor = engine, actor
        self.report = PushReport(destination)

    def record(self, kind: str, ref: ErpRef, state: dict[str, str]) -> None:
        outcome = (
            self.report.created
            if ref.created
            else self.report.updated
            if ref.updated
            else self.report.unchanged
        )
        outcome.setdefault(kind, []).append(ref.reference)
        if not (ref.created or ref.updated):
            return
        with self.engine.begin() as conn:
            audit.append(
                conn,
                actor=self.actor,
                action=PUSH_ACTION,
                target_type=f"erp_{kind}",
                target_id=f"{self.report.destination}/{ref.reference}",
                after=state | {"erp_id": ref.erp_id},
                detail={
                    "destination": self.report.destination,
                    "outcome": "created" if ref.created else "updated",
                },
            )

    def reject(self, kind: str, code: str, error: ErpRejected) -> None:
        self.report.rejected.append((kind, code, str(error)))


def push_to_erp(
    engine: Engine,
    repo: MasterDataRepository,
    erp: MasterDataPort,
    *,
    destination: str,
    offers: Collection[Capability],
    actor: str = SYNC_ACTOR,
) -> PushReport:
    """MedBridge's GL accounts (those assigned), suppliers and items into the destination
    (see the module); what it did, per kind."""
    require_master_data(destination, offers)
    pusher = _Pusher(engine, destination, actor)
    accounts = assigned_accounts(engine)
    with engine.connect() as conn:
        vendors = sorted(repo.suppliers(conn).values(), key=lambda s: s.code)
        catalogue = repo.items(conn, conn.execute(select(items.c.code)).scalars())
    try:
        refs = erp.ensure_accounts(accounts)
    except ErpRejected as error:
        pusher.reject("account", "accounts", error)  # the message names the account
    else:
        for account, ref in zip(accounts, refs, strict=True):
            pusher.record("account", ref, {"code": account.code, "name": account.name})
    for vendor in vendors:
        try:
            ref = erp.upsert_supplier(vendor)
        except ErpRejected as error:
            pusher.reject("supplier", vendor.code, error)
        else:
            pusher.record("supplier", ref, {"code": vendor.code, "name": vendor.name})
    for code in sorted(catalogue):
        item = catalogue[code]
        try:
            ref = erp.upsert_product(item)
        except ErpRejected as error:
            pusher.reject("item", code, error)
        else:
            state = {"code": code, "name": item.name, "unit": item.base_unit}
            pusher.record("item", ref, state)
    return pusher.report
