"""observability.tracing: off it records nothing; on, a producer's context travels as W3C
strings and every consumer, handler and later call continues the same trace."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from medbridge.observability import tracing
from medbridge.observability.logging import configure_logging, get_logger


@dataclass(frozen=True)
class Message:
    event_id: str
    traceparent: str = ""
    tracestate: str = ""


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(None, exporter=exporter)
    yield exporter
    tracing.shutdown_tracing()


def finished(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    assert tracing.flush()
    return {s.name: s for s in exporter.get_finished_spans()}


def test_off_nothing_is_recorded_and_no_context_is_made() -> None:
    tracing.shutdown_tracing()
    assert not tracing.enabled()
    with tracing.span("anything") as active:
        assert active is None
        assert tracing.headers_of() == (None, None)
        assert tracing.propagation_headers() == {}
    message = Message("e1", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert tracing.delivery_context(message) is None
    with tracing.deliveries("ledger", [message]), tracing.message_spans("x", [message]) as each:
        assert each.headers("e1") == (None, None)


def test_a_producers_context_is_continued_by_the_delivery_and_the_handler(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.span("mllp.receive", kind=SpanKind.SERVER) as receipt:
        assert receipt is not None
        traceparent, tracestate = tracing.headers_of()
    assert traceparent is not None
    message = Message("e1", traceparent, tracestate or "")

    with (
        tracing.deliveries("ledger", [message]),
        tracing.message_spans("ledger.post", [message]) as each,
    ):
        later, _ = each.headers("e1")
    assert later is not None

    with tracing.span("erp.post", kind=SpanKind.CLIENT, parent=tracing.context_of(later)):
        pass

    by_name = finished(spans)
    trace_id = by_name["mllp.receive"].context.trace_id
    assert {s.context.trace_id for s in by_name.values()} == {trace_id}
    consume = by_name["ledger process"]
    assert consume.kind is SpanKind.CONSUMER
    assert consume.parent is not None
    assert consume.parent.span_id == by_name["mllp.receive"].context.span_id
    post = by_name["ledger.post"]
    assert post.parent is not None
    assert post.parent.span_id == consume.context.span_id
    erp = by_name["erp.post"]
    assert erp.parent is not None
    assert erp.parent.span_id == post.context.span_id


def test_a_batch_gives_each_message_a_span_in_its_own_trace(
    spans: InMemorySpanExporter,
) -> None:
    parents = []
    for _ in range(2):
        with tracing.span("http.receive"):
            parents.append(tracing.headers_of()[0])
    batch = [Message(f"e{n}", p or "") for n, p in enumerate(parents)]

    with pytest.raises(RuntimeError), tracing.deliveries("ledger", batch, attempt=1):
        raise RuntimeError("the batch failed")

    assert tracing.flush()
    consumed = [s for s in spans.get_finished_spans() if s.name == "ledger process"]
    assert sorted(s.context.trace_id for s in consumed) == sorted(
        int(p.split("-")[1], 16) for p in parents if p
    )
    assert all(s.status.status_code is StatusCode.ERROR for s in consumed)
    assert all(
        s.attributes and s.attributes["messaging.batch.message_count"] == 2 for s in consumed
    )


def test_an_invalid_traceparent_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    assert tracing.context_of("not-a-traceparent") is None
    assert tracing.context_of("") is None
    with tracing.deliveries("ledger", [Message("e1", "garbage")]):
        pass
    [span] = finished(spans).values()
    assert span.parent is None


def test_outbound_requests_carry_the_current_context(spans: InMemorySpanExporter) -> None:
    with tracing.span("erp.post") as active:
        assert active is not None
        headers = tracing.propagation_headers()
        span_id = active.get_span_context().span_id
    assert headers["traceparent"].split("-")[2] == format(span_id, "016x")


def test_log_lines_carry_the_trace_and_span_ids(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    configure_logging("INFO", json=True)
    log = get_logger("test")
    log.info("outside")
    with tracing.span("mllp.receive") as active:
        assert active is not None
        log.info("inside")
        context = active.get_span_context()
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert "trace_id" not in outside
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
