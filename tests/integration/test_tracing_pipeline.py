"""Tracing through the pipeline, in process: an HTTP ingest continues its caller's trace
through the bus to the ledger posting, over the SQL log and over NATS JetStream, and the ERP
outbox row keeps the ledger posting's context. (The MLLP-to-Tryton trace over OTLP is
``tests/peers/test_otlp_trace.py``.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, select

from medbridge.app import MedBridge
from medbridge.bus.jetstream import JetStreamBus, JetStreamConfig
from medbridge.governance.clients import Role
from medbridge.observability import tracing
from medbridge.settings import Settings
from medbridge.store.tables import erp_postings

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"
NOW = "2026-11-20T09:30:00+00:00"

pytestmark = pytest.mark.db


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(None, exporter=exporter)
    yield exporter
    tracing.shutdown_tracing()


@pytest.fixture(params=["sql", pytest.param("nats", marks=pytest.mark.nats)])
def traced(
    request: pytest.FixtureRequest,
    spans: InMemorySpanExporter,
    engine: Engine,
    settings: Settings,
    nats_stream: JetStreamConfig,
) -> Iterator[MedBridge]:
    if request.param == "nats":
        settings = settings.model_copy(
            update={
                "bus_url": nats_stream.url,
                "bus_stream": nats_stream.stream,
                "bus_subject_prefix": nats_stream.subject_prefix,
            }
        )
    mb = MedBridge.build(settings)
    mb.seed_demo()
    yield mb
    if isinstance(mb.bus, JetStreamBus):
        mb.bus.delete_stream()
    mb.close()


def movement(key: str, kind: str, quantity: str) -> dict[str, object]:
    body: dict[str, object] = {
        "idempotency_key": key,
        "kind": kind,
        "item": "VANCO-1G",
        "location": "H1-PHARM",
        "quantity": quantity,
        "unit": "VIAL",
        "occurred_at": NOW,
    }
    if kind == "receipt":
        body["unit_cost"] = {"amount": "6.85", "currency": "USD"}
    return body


def in_trace(exporter: InMemorySpanExporter, trace_id: int) -> dict[str, ReadableSpan]:
    assert tracing.flush()
    found: dict[str, ReadableSpan] = {}
    for span in exporter.get_finished_spans():
        if span.context.trace_id == trace_id:
            assert span.name not in found, f"two {span.name} spans in the trace"
            found[span.name] = span
    return found


def test_an_http_ingest_continues_the_callers_trace_to_the_ledger_and_the_outbox(
    traced: MedBridge, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    key = traced.clients.register("cabinets", Role.INTEGRATION)
    with TestClient(traced.api()) as client:
        client.headers["X-API-Key"] = key
        stocked = client.post("/v1/stock-movements", json=movement("t-r1", "receipt", "10"))
        assert stocked.status_code == 202, stocked.text
        answer = client.post(
            "/v1/stock-movements",
            json=movement("t-d1", "dispense", "2"),
            headers={"traceparent": CALLER},
        )
        assert answer.status_code == 202, answer.text
    traced.consumers["ledger"].drain()

    found = in_trace(spans, int(CALLER_TRACE, 16))
    http = next(s for s in found.values() if s.kind is SpanKind.SERVER)
    append, consume, post = found["bus.append"], found["ledger process"], found["ledger.post"]
    assert http.parent is not None
    assert http.parent.span_id == int(CALLER.split("-")[2], 16)
    assert append.parent is not None
    assert append.parent.span_id == http.context.span_id
    assert consume.parent is not None
    assert consume.parent.span_id == append.context.span_id
    assert post.parent is not None
    assert post.parent.span_id == consume.context.span_id

    event_id = post.attributes["medbridge.event.id"] if post.attributes else None
    with traced.engine.connect() as conn:
        row = conn.execute(
            select(erp_postings.c.traceparent).where(erp_postings.c.document == f"JE-{event_id}")
        ).one()
    assert row.traceparent == f"00-{CALLER_TRACE}-{post.context.span_id:016x}-01"
