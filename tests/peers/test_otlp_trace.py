"""Issue 16, done-when 4: one dispense sent over MLLP is ONE trace, exported by OTLP to a
collector, from the MLLP receipt through the bus and the ledger posting to the ERP call on a
real Tryton.

The collector is in this process: an OTLP/HTTP receiver on a free 127.0.0.1 port that decodes
each ``ExportTraceServiceRequest`` (protobuf, ``opentelemetry-proto``) the way a real
collector does. MedBridge is configured only through its settings (``otlp_endpoint``), as an
operator would; the ERP posting is the outbox worker's, asynchronous, so the trace context
must have survived the ``erp_postings`` row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from pydantic import SecretStr

from hl7_support import ack_code, map_hl7_sources, rds, running_listener
from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.connectors.hl7v2 import MllpClient
from medbridge.flows.intake import Submission
from medbridge.observability import tracing
from medbridge.store import erp_postings as erp_store
from peers.tryton import TrytonPeer

pytestmark = [pytest.mark.peer]


@dataclass
class Collector:
    """What an OTLP/HTTP trace receiver got: every span, with its service name."""

    url: str
    spans: list[tuple[str, Span]] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((service, s) for s in scope_spans.spans)

    def trace(self, trace_id: bytes) -> list[Span]:
        with self.lock:
            return [s for _, s in self.spans if s.trace_id == trace_id]


def attribute(span: Span, key: str) -> Any:
    for a in span.attributes:
        if a.key == key:
            value = a.value
            return getattr(value, value.WhichOneof("value"))
    return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/v1/traces" or "protobuf" not in self.headers["Content-Type"]:
                self.send_error(404)
                return
            received.receive(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    received = Collector(f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
    thread = threading.Thread(target=server.serve_forever, name="otlp-collector", daemon=True)
    thread.start()
    try:
        yield received
    finally:
        tracing.shutdown_tracing()
        server.shutdown()
        server.server_close()
        thread.join(10)


def posted(mb: MedBridge) -> int:
    with mb.engine.connect() as conn:
        return erp_store.counts(conn).get(erp_store.PostingStatus.POSTED, 0)


def test_one_dispense_is_one_trace_from_the_mllp_receipt_to_the_erp_call(
    tryton: TrytonPeer, medbridge: MedBridge, collector: Collector
) -> None:
    settings = medbridge.settings.model_copy(
        update={
            "erp_url": tryton.url,
            "erp_database": tryton.database,
            "erp_user": tryton.login,
            "erp_password": SecretStr(tryton.password),
            "erp_rate_limit": 50.0,
            "erp_poll_interval": 0.1,
            "erp_gl_posting": "per_event",  # the dispense's own move, not its hour's summary
            "otlp_endpoint": collector.url,
        }
    )
    running = MedBridge.build(settings)
    assert tracing.enabled()
    map_hl7_sources(running)
    running.intake.submit(  # stock at a cost, so that the dispense has a value to post
        [
            Submission(
                StockMovement(
                    kind=MovementKind.RECEIPT,
                    item="VANCO-1G",
                    location="H1-ICU",
                    quantity=Decimal(20),
                    unit="VIAL",
                    unit_cost=Money(amount="6.85"),
                    occurred_at=datetime.now(UTC),
                ),
                "otel-stock",
            )
        ],
        "test",
    )
    running.start_workers()
    try:
        with running_listener(running) as listener, MllpClient("127.0.0.1", listener.port) as c:
            assert ack_code(c.send(rds("OTEL-1"))) == ("AA", "OTEL-1")
        deadline = time.monotonic() + 60
        while posted(running) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        running.stop_workers()
    assert posted(running) == 2
    assert tracing.flush()

    [receipt] = [
        s
        for _, s in collector.spans
        if s.name == "mllp.receive" and attribute(s, "hl7.message_control_id") == "OTEL-1"
    ]
    spans = collector.trace(receipt.trace_id)
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert {"mllp.receive", "bus.append", "ledger process", "ledger.post", "erp.post"} <= set(
        by_name
    ), sorted(by_name)
    assert len(by_name["mllp.receive"]) == 1
    assert len(by_name["ledger.post"]) == 1
    assert len(by_name["erp.post"]) == 1
    assert attribute(receipt, "hl7.ack_code") == "AA"
    assert receipt.parent_span_id == b"", "the MLLP receipt is the root of the trace"

    # one chain, each span the child of the step before it
    by_id = {s.span_id: s for s in spans}

    def parent(span: Span) -> Span:
        return by_id[span.parent_span_id]

    [append] = by_name["bus.append"]
    [ledger] = by_name["ledger.post"]
    [erp] = by_name["erp.post"]
    assert parent(append) is receipt
    assert parent(ledger).name == "ledger process"
    assert parent(parent(ledger)) is append
    assert parent(erp) is ledger
    assert attribute(erp, "medbridge.erp.outcome") == "posted"
    event_id = attribute(ledger, "medbridge.event.id")
    assert attribute(erp, "medbridge.journal_entry.id") == f"JE-{event_id}"

    # the ERP call itself, on the wire to the real Tryton: under the entry's erp.post when it
    # went alone, else under the batch call's erp.post_batch, a trace of its own that links
    # every erp.post it carried (both postings of this test may share one call)
    everything = [s for _, s in collector.spans]
    batches = [
        s
        for s in everything
        if s.name == "erp.post_batch" and any(link.span_id == erp.span_id for link in s.links)
    ]
    callers = {erp.span_id, *(b.span_id for b in batches)}
    calls = [s for s in everything if s.name.startswith("tryton ") and s.parent_span_id in callers]
    assert any(s.name == "tryton model.account.move.create" for s in calls), [s.name for s in calls]
    # and the opening stock, received by another path, is a trace of its own
    assert all(s.trace_id == receipt.trace_id for s in spans)
    assert all(b.trace_id != receipt.trace_id for b in batches)
    assert len({s.trace_id for _, s in collector.spans if s.name == "erp.post"}) == 2
    assert {service for service, _ in collector.spans} == {"medbridge"}
