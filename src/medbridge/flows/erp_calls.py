"""The ERP calls of the durable workflows' steps, through the ERP outbox (``store.erp_postings``).

A step never calls the ERP itself. It queues its document (a purchase order, its confirmation
or cancellation, a goods receipt, a supplier invoice) with ``queue``: in one transaction the
router's rows for it (``ErpRouter.document``: the system of record and the shadows of its
domain and facility) are written where missing, so a step run again after a crash finds its
rows and queues nothing twice. The ``ErpPosting`` worker of each destination posts them under
that destination's rate limit, circuit breaker and hold windows, exactly once per destination
(the key is (document, destination)). The step then ``wait``s for its system of record's row:
``posted`` (the ERP's id) or ``failed`` (``ErpRejected`` with the reason, a dead letter until
a person approves a retry: the step, run again, requeues it). Shadows are never waited for.

A follow-up of a document (an order's confirmation or cancellation, ``after`` the order) goes
where that document went: to every destination holding a row of it that did not fail, with the
same role, so that a cutover between an order and its confirmation never sends the
confirmation to an ERP that has no such order. Only when the document has no row at all (an
order sent before the outbox knew workflow documents) is the follow-up routed afresh.

No route for the domain (no destination offers it): nothing is queued and ``queue`` returns
None; the step goes on without the ERP's part (the procurement documents of a MedBridge whose
ERPs keep only the ledger).

Document ids (frozen: they are the outbox keys, and the ERP finds its documents by them): the
order's reference; ``<reference>:confirm`` and ``<reference>:cancel`` (``after`` the order);
the goods receipt's reference (``<order>:<shipment>``); the supplier invoice's reference.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from medbridge.canonical.erp import ErpRejected
from medbridge.domain.erp_routing import ErpDomain, Role
from medbridge.flows.erp_routing import ErpRouter
from medbridge.observability.logging import get_logger
from medbridge.store import erp_postings
from medbridge.store.erp_postings import Delivery, DocumentKind, Posting, PostingStatus

log = get_logger(__name__)

REQUEUED_BY = "system:workflow"
"""Who requeues a failed document when the step that queued it runs again (a person
approved a retry of the step in its task)."""


@dataclass(frozen=True)
class ErpDocument:
    """A document a step sends to the ERP (see ``DocumentKind`` for each kind's payload)."""

    document: str
    kind: DocumentKind
    domain: ErpDomain
    facility: str | None
    payload: str | None = None
    after: str | None = None


def queue(engine: Engine, router: ErpRouter, doc: ErpDocument, now: datetime) -> Posting | None:
    """Write the document's outbox rows where missing and return its system of record's row
    (None: no destination receives its domain). A failed record row is requeued first (the
    step runs again: a person approved a retry)."""
    with engine.begin() as conn:
        record = erp_postings.get(conn, doc.document)
        if record is not None and record.status is PostingStatus.FAILED:
            erp_postings.requeue(
                conn, doc.document, now, actor=REQUEUED_BY, destination=record.destination
            )
        deliveries = _follow_up(conn, doc) if doc.after else []
        if not deliveries:
            deliveries = router.document(
                conn,
                document=doc.document,
                kind=doc.kind,
                domain=doc.domain,
                facility=doc.facility,
                now=now,
                payload=doc.payload,
                after=doc.after,
            )
        erp_postings.enqueue_missing(conn, deliveries, now)
        record = erp_postings.get(conn, doc.document)
    if record is None:
        log.info(
            "erp.document_unrouted",
            document=doc.document,
            kind=doc.kind.value,
            domain=doc.domain.value,
            facility=doc.facility,
        )
    return record


def to_shadows(engine: Engine, doc: ErpDocument, now: datetime) -> list[str]:
    """A follow-up (an order's cancellation) of a document its system of record refused and
    a person closed: queued only for the shadows holding that document (their copy is to
    be undone as well), never waited for; the names of those shadows. The record's failed
    row stays as it is. Keyed as every row: run again, it queues nothing twice."""
    assert doc.after is not None
    with engine.begin() as conn:
        shadows = [d for d in _follow_up(conn, doc) if d.role is Role.SHADOW]
        erp_postings.enqueue_missing(conn, shadows, now)
    if shadows:
        log.info(
            "erp.shadows_follow_up",
            document=doc.document,
            kind=doc.kind.value,
            erps=[d.destination for d in shadows],
        )
    return [d.destination for d in shadows]


def _follow_up(conn: Connection, doc: ErpDocument) -> list[Delivery]:
    """Rows for the destinations of the document ``doc`` follows (see the module doc)."""
    assert doc.after is not None
    before = erp_postings.postings(conn, entry_ids=[doc.after])
    return [
        Delivery(
            document=doc.document,
            destination=p.destination,
            kind=doc.kind,
            role=p.role,
            domain=doc.domain,
            facility=doc.facility,
            payload=doc.payload,
            after=doc.after,
        )
        for p in before
        if p.status is not PostingStatus.FAILED
    ]


def wait(
    engine: Engine, posting: Posting, stopping: threading.Event, interval: float
) -> Posting | None:
    """The row once its destination's worker settled it: posted, returned; failed,
    ``ErpRejected`` with its reason. None when ``stopping`` was set first."""
    current: Posting | None = posting
    while current is not None and current.status is not PostingStatus.POSTED:
        if current.status is PostingStatus.FAILED:
            raise ErpRejected(
                f"{current.destination} refused {current.document}: {current.last_error}"
            )
        if stopping.wait(interval):
            return None
        with engine.connect() as conn:
            current = erp_postings.get(conn, posting.document, posting.destination)
    if current is None:  # deleted under us: nothing to wait for
        raise ErpRejected(f"{posting.document} left the {posting.destination} outbox")
    log.info(
        "erp.document_posted",
        document=current.document,
        kind=current.kind.value,
        erp=current.destination,
        erp_id=current.erp_id,
        queued_at=current.created_at.isoformat(),
    )
    return current
