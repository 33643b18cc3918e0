"""DBOS in this process, and what feeds the workflows.

``Workflows.launch()`` starts DBOS on the application's database: PostgreSQL (scale-out) holds
DBOS's system tables in the same database, schema ``dbos``; embedded SQLite gets a sibling
file ``<database>.dbos.sqlite`` (DBOS on SQLite wants its own file: one writer each, no lock
contention with the ledger). Workflows left PENDING by a crash are recovered on launch, each
from its last recorded step. ``application_version`` is fixed, so a restart with new code
still recovers the old workflows (DBOS would otherwise leave them to the old version).

``ProcurementRouter`` is the ``procurement`` consumer group on the bus: an acknowledgement or
ship notice for one of our purchase orders is sent to its workflow (``DBOS.send``, keyed by
the event: a redelivered event is not sent twice); every invoice starts its own
``settle_invoice`` workflow (keyed by the document's wire identity: started once).
Documents about orders MedBridge did not place are left to the trade document log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dbos import DBOS
from sqlalchemy import make_url

from medbridge.bus.port import BusMessage
from medbridge.canonical.messages import MessageRecord, MessageStatus
from medbridge.flows import procurement_runtime
from medbridge.flows.escalation import decision_message
from medbridge.flows.invoice_settlement import start_invoice
from medbridge.flows.procurement import Procurement
from medbridge.flows.receiving import outstanding
from medbridge.observability import tracing
from medbridge.observability.logging import get_logger
from medbridge.store import procurement as store
from medbridge.store.messages import MessageRecorder
from medbridge.store.work_items import WorkItem

log = get_logger(__name__)

ROUTED = {
    "trade.acknowledgement_received.v1": "ack",
    "trade.ship_notice_received.v1": "goods",
}
INVOICE = "trade.invoice_received.v1"


def system_database_url(database_url: str) -> str:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("durable workflows need a database file, not an in-memory SQLite")
        return str(url.set(database=f"{url.database}.dbos.sqlite"))
    return url.render_as_string(hide_password=False)


class Workflows:
    def __init__(
        self,
        runtime: Procurement,
        database_url: str,
        *,
        system_database: str | None = None,
        schema: str = "dbos",
        application_version: str = "medbridge-1",
        poll: float = 0.05,
    ) -> None:
        self.runtime = runtime
        self.config: Any = {
            "name": "medbridge",
            "system_database_url": system_database or system_database_url(database_url),
            "dbos_system_schema": schema,
            "application_version": application_version,
            "notification_listener_polling_interval_sec": poll,
            "log_level": "WARNING",
            # DBOS traces its workflows and steps into the process's tracer provider (ours,
            # see observability.tracing): they join the traces of what started them
            "enable_otlp": tracing.enabled(),
        }
        self.launched = False

    def launch(self) -> None:
        procurement_runtime.install(self.runtime)
        DBOS(config=self.config)
        DBOS.launch()
        self.launched = True
        log.info("workflows.launched", system_database=self.config["system_database_url"])

    def shutdown(self) -> None:
        self.runtime.stopping.set()
        if self.launched:
            DBOS.destroy(destroy_registry=False)
            self.launched = False
        procurement_runtime.install(None)

    def on_decision(self, item: WorkItem) -> None:
        """A task was decided: resume its workflow (it also re-reads the task itself)."""
        if item.decision is not None and item.workflow_id:
            DBOS.send(
                item.workflow_id,
                decision_message(item.id, item.decision.model_dump(mode="json"), item.decided_by),
                topic="decision",
                idempotency_key=f"task:{item.id}",
            )


class ProcurementRouter:
    """The ``procurement`` consumer: supplier documents to the workflows they answer."""

    def __init__(self, runtime: Procurement) -> None:
        self.runtime = runtime

    @property
    def name(self) -> str:
        return "procurement"

    def __call__(self, messages: Sequence[BusMessage]) -> None:
        for message in messages:
            if message.type != INVOICE and message.type not in ROUTED:
                continue
            # under the message's delivery span: the workflow it starts or resumes (DBOS
            # traces into the same provider) joins the document's trace
            with tracing.span("procurement.route", parent=tracing.delivery_context(message)):
                if message.type == INVOICE:
                    self._invoice(message)
                else:
                    self._route(message, ROUTED[message.type])

    def _invoice(self, message: BusMessage) -> None:
        envelope = json.loads(message.payload)
        start_invoice(
            {
                "key": message.idempotency_key,
                "supplier": message.subject.split(":", 1)[0],
                "document": envelope["data"],
                "event_id": message.event_id,
                "correlation_id": message.correlation_id,
            }
        )

    def _route(self, message: BusMessage, topic: str) -> None:
        envelope = json.loads(message.payload)
        document = envelope["data"]
        if topic == "ack":
            numbers = [document["order_number"]]
        else:
            numbers = [o["order_number"] for o in document.get("orders", ())]
        with self.runtime.engine.connect() as conn:
            ours = [n for n in numbers if store.order(conn, n) is not None]
        kind = "acknowledgement" if topic == "ack" else "ship_notice"
        for number in ours:
            DBOS.send(
                number,
                {"kind": kind, "document": document, "event_id": message.event_id},
                topic=topic,
                idempotency_key=f"{message.event_id}:{number}",
            )
        if not ours:
            log.info("procurement.not_ours", type=message.type, orders=numbers)


class ReceiptRefused(Exception):
    """A receipt names no order of ours, or lines the order does not have."""

    def __init__(self, message: str, field: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


def submit_receipt(
    engine: Any,
    reference: str,
    *,
    shipment_id: str,
    lines: Sequence[dict[str, Any]],
    received_by: str,
    rejected: bool = False,
    reason: str | None = None,
    counts: str | None = None,
) -> dict[str, Any]:
    """Hand a dock's receipt (or refusal) of a shipment to the order's workflow, once per
    shipment. ``counts``: the ship notice (its shipment id) this receipt's scans were
    counted against; once received, that notice is ``counted``, no longer awaited.
    Checked first: the order exists and is ours, each line is one of its lines.
    Recorded as a message of the message store (``scan``, connector ``receiving``: the
    dock's count), applied once handed over or refused with the reason."""
    record = MessageRecord(
        protocol="scan",
        connector="receiving",
        raw=json.dumps(
            {
                "shipment_id": shipment_id,
                "lines": list(lines),
                "rejected": rejected,
                "reason": reason,
            },
            default=str,
        ),
        sender=received_by,
        message_type="rejection" if rejected else "receipt",
        control_id=shipment_id,
        business_key=reference,
        idempotency_key=f"receipt:{reference}:{shipment_id}",
        media_type="application/json",
    )
    try:
        message = _submit_receipt(
            engine, reference, shipment_id, lines, received_by, rejected, reason, record, counts
        )
    except ReceiptRefused as refused:
        record.error = str(refused)
        record.ack = f"{refused.status} {refused}"
        record.settle(MessageStatus.REFUSED)
        MessageRecorder(engine).write([record])
        raise
    record.ack = "202 handed to the order's workflow"
    record.settle(MessageStatus.APPLIED)
    MessageRecorder(engine).write([record])
    return message


def _submit_receipt(
    engine: Any,
    reference: str,
    shipment_id: str,
    lines: Sequence[dict[str, Any]],
    received_by: str,
    rejected: bool,
    reason: str | None,
    record: MessageRecord,
    counts: str | None = None,
) -> dict[str, Any]:
    with engine.connect() as conn:
        po = store.order(conn, reference)
        done = store.receipt(conn, f"{reference}:{shipment_id}")
        expected = outstanding(conn, reference) if po is not None else {}
    if po is None:
        raise ReceiptRefused(f"no purchase order {reference}", "reference", status=404)
    record.facility = po.get("facility")
    if not po["workflow_started"]:
        raise ReceiptRefused(
            f"purchase order {reference} is not under way yet", "reference", status=409
        )
    if done is not None and done["status"] != "noticed":
        raise ReceiptRefused(
            f"shipment {shipment_id} of {reference} was {done['status']} already",
            "shipment_id",
            status=409,
        )
    known = {ln["line"] for ln in po["lines"]}
    for n, line in enumerate(lines):
        if line["line"] not in known:
            raise ReceiptRefused(
                f"purchase order {reference} has no line {line['line']}", f"lines[{n}].line"
            )
        if line["line"] not in expected:  # its workflow expects nothing more of it
            raise ReceiptRefused(
                f"purchase order {reference} line {line['line']} is received in full"
                f" (order status {po['status']}): nothing more is expected of it",
                f"lines[{n}].line",
                status=409,
            )
    if po["status"] in procurement_runtime.TERMINAL:
        raise ReceiptRefused(
            f"purchase order {reference} is {po['status']}: it expects no more goods",
            "reference",
            status=409,
        )
    message = {
        "kind": "receipt",
        "shipment_id": shipment_id,
        "lines": [dict(line) for line in lines],
        "by": received_by,
        "rejected": rejected,
        "reason": reason,
    }
    if counts is not None:
        message["counts"] = counts
    DBOS.send(
        reference, message, topic="goods", idempotency_key=f"receipt:{reference}:{shipment_id}"
    )
    log.info(
        "procurement.receipt_submitted", order=reference, shipment=shipment_id, rejected=rejected
    )
    return message
