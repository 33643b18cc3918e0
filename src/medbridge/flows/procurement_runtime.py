"""What procure-to-pay's workflow steps work with: the runtime installed once per process
(DBOS is global), the policy, and the few helpers every step shares.

``ProcurementRuntime`` holds the ports (database, master data, intake, trade outbox, work
queues, the ERP router) and the one way a step reaches the ERP (``erp_document``): the
document queued in the ERP outbox and awaited until its system of record's ``ErpPosting``
worker posted it (``flows.erp_calls``); a step never calls the ERP itself, so every ERP call
is rate-limited and exactly once per destination. ``flows.procurement`` builds on it with
planning and starting.

``FAILPOINT`` (environment ``MEDBRIDGE_FAILPOINT``): a step name; the process SIGKILLs itself
right after that step's side effect, before DBOS records the step, once per marker file
``MEDBRIDGE_FAILPOINT_MARKER``. Used by the crash tests; unset in production.
"""

from __future__ import annotations

import functools
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from medbridge.canonical.partners import TradingPartner
from medbridge.canonical.trade import PartnerItem
from medbridge.domain.erp_routing import ErpDomain
from medbridge.domain.matching import Tolerances
from medbridge.flows import erp_calls
from medbridge.flows.erp_calls import ErpDocument
from medbridge.flows.erp_routing import ErpRouter
from medbridge.flows.intake import MovementIntake
from medbridge.flows.replenishment import ReplenishmentPlanner
from medbridge.flows.trade import TradeOutbox
from medbridge.flows.work_queue import WorkQueues
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.observability.logging import get_logger
from medbridge.retry import Backoff, retrying
from medbridge.store import procurement as store
from medbridge.store.erp_postings import DocumentKind, Posting

log = get_logger(__name__)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

SOURCE = "procurement"
"""The source of the receipt movements the workflows append."""

TERMINAL = (  # where a purchase order's workflow ends
    "received",
    "closed_short",
    "shipment_rejected",
    "cancelled",
    "rejected_by_supplier",
    "closed",
)


@dataclass(frozen=True)
class ProcurementPolicy:
    ack_timeout: float = 4 * 3600.0
    shipment_timeout: float = 14 * 86400.0
    receipt_grace: float = 2 * 86400.0
    """How long an invoice waits for the goods it bills before it is matched anyway."""
    poll: float = 30.0
    """How often a waiting workflow re-reads its task and an invoice its receipts."""
    auto_receive: bool = False
    tolerances: Tolerances = field(default_factory=Tolerances)
    retry: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=60.0))
    """How a send to a supplier that failed transiently is tried again (for as long as it
    fails so, until the process stops)."""
    erp_wait: float = 0.1
    """How often a step waiting for its ERP document re-reads the outbox row."""


class StepInterrupted(BaseException):
    """The process stopped while a step was retrying a transient failure (a supplier out of
    reach) or waiting for its ERP document (an ERP out of reach: the demo's ERP stops with
    the process). Not an ``Exception``, on
    purpose: DBOS records a step's or a workflow's outcome only for an ``Exception``, and a
    recorded transient error would be replayed on the next start and end the workflow for
    good (orders left at sent/confirmed). Without an outcome, the workflow is recovered on
    the next start and the step is run again."""


@dataclass
class ProcurementRuntime:
    """What the workflow steps work with (installed once per process: DBOS is global)."""

    engine: Engine
    masterdata: MasterDataRepository
    intake: MovementIntake
    outbox: TradeOutbox
    partners: Mapping[str, TradingPartner]
    work_queues: WorkQueues
    planner: ReplenishmentPlanner
    policy: ProcurementPolicy = field(default_factory=ProcurementPolicy)
    router: ErpRouter = field(default_factory=ErpRouter.single)
    """Where each ERP document goes (system of record, shadows)."""
    buyer: str = "NET"
    stopping: threading.Event = field(default_factory=threading.Event)
    erp_wakes: dict[str, threading.Event] = field(default_factory=dict)
    """The wake-up of this process's outbox worker per destination: set when a step queued a
    document, so the worker posts it now rather than after its idle poll."""

    def retrying(
        self, what: str, call: Callable[[], T], transient: Callable[[BaseException], bool]
    ) -> T:
        """``call()``, repeated while it fails with a ``transient`` error, as ``policy.retry``
        says; any other error goes to the workflow. When the process stops during the
        retries, ``StepInterrupted``: the step ends without an outcome."""
        try:
            return retrying(
                what, transient=transient, backoff=self.policy.retry, until=self.stopping
            )(call)
        except Exception as error:
            if self.stopping.is_set() and transient(error):
                raise StepInterrupted(what) from error
            raise

    def erp_document(
        self,
        kind: DocumentKind,
        document: str,
        domain: ErpDomain,
        facility: str | None,
        payload: str | None = None,
        after: str | None = None,
    ) -> Posting | None:
        """Send a document to the ERP through the outbox and wait until its system of record
        posted it (``flows.erp_calls``): its row, with the ERP's id; None when no ERP
        receives ``domain``. ``ErpRejected`` when the ERP refused it (the step's task; run
        again, the step requeues it). When the process stops meanwhile,
        ``StepInterrupted``: the document stays queued and the step runs again."""
        doc = ErpDocument(document, kind, domain, facility, payload, after)
        posting = erp_calls.queue(self.engine, self.router, doc, now())
        if posting is None:
            return None
        for wake in self.erp_wakes.values():
            wake.set()
        done = erp_calls.wait(self.engine, posting, self.stopping, self.policy.erp_wait)
        if done is None:
            raise StepInterrupted(f"{kind.value} {document}")
        return done


def database_transient(error: BaseException) -> bool:
    """A database failure a later try can get past: SQLite busy past its busy timeout (a
    writer holding the lock that long); on PostgreSQL a lost or refused connection, a
    serialization failure, a deadlock victim, a server restarting. Not a constraint, a
    missing table or a bad statement: those are bugs a retry would hide."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, InterfaceError):
        return True
    if isinstance(error, OperationalError):
        if isinstance(error.orig, sqlite3.OperationalError):
            return any(word in str(error.orig) for word in ("locked", "busy"))
        return True
    return False


def steady(step: F) -> F:
    """A workflow step (put under ``@DBOS.step()``) run again while it fails with a transient
    database error (``database_transient``), with ``policy.retry``'s backoff, until the
    process stops (then ``StepInterrupted``: the step runs again at the next start).

    Without it DBOS recorded the error as the step's outcome and ended the workflow: a
    SQLite writer held past the 30 s busy timeout left an order at ``shipped`` for good (a
    CI run). Running a step again is what DBOS does after a crash anyway: every effect of a
    step is keyed (module docstring of ``flows.procurement``)."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
        return runtime().retrying(
            step.__qualname__, lambda: step(*args, **kwargs), database_transient
        )

    return run  # type: ignore[return-value]


_runtime: ProcurementRuntime | None = None


def install(runtime: ProcurementRuntime | None) -> None:
    global _runtime
    _runtime = runtime


def runtime() -> ProcurementRuntime:
    if _runtime is None:
        raise RuntimeError("procurement workflows are not installed in this process")
    return _runtime


def failpoint(name: str) -> None:
    """Kill this process (SIGKILL) right here if the crash test asked for ``name``, once."""
    if os.environ.get("MEDBRIDGE_FAILPOINT") != name:
        return
    marker = Path(os.environ.get("MEDBRIDGE_FAILPOINT_MARKER", ".failpoint"))
    if marker.exists():
        return
    marker.write_text(name)
    log.warning("failpoint.kill", name=name)
    os.kill(os.getpid(), signal.SIGKILL)


def now() -> datetime:
    return datetime.now(UTC)


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


def order_correlation(reference: str) -> str | None:
    """The correlation id of an order (None if ``reference`` is no order: an invoice's
    workflow id)."""
    with runtime().engine.connect() as conn:
        po = store.order(conn, reference)
    return None if po is None else str(po["correlation_id"])


def order_line_for(po: dict[str, Any], item: PartnerItem, number: int) -> dict[str, Any] | None:
    """The order line a supplier's line is about: by line number, else by part number."""
    lines: list[dict[str, Any]] = po["lines"]
    by_number = {ln["line"]: ln for ln in lines}
    if number in by_number:
        return by_number[number]
    return next(
        (
            ln
            for ln in lines
            if item.buyer_part == ln["item"] or item.supplier_part == ln["contract"]
        ),
        None,
    )
