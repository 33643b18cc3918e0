"""Distributed tracing (OpenTelemetry): one trace per dispense, from the MLLP receipt (or the
HTTP request) through the bus and the consumers to the ledger posting and the ERP call.

Off unless configured (``configure_tracing``, from ``MEDBRIDGE_OTLP_ENDPOINT``): then every
helper here is one module-attribute check and no span, no context switch, no allocation,
because the HL7 ingest path runs at thousands of messages per second. On, spans go to the
OTLP/HTTP exporter through a ``BatchSpanProcessor`` (export on a thread of its own, never on
the caller's).

Where the context travels between processes and threads, as the W3C ``traceparent`` /
``tracestate`` pair (``TraceContextTextMapPropagator``):

- the event envelope (the CloudEvents Distributed Tracing extension, set by the intake from
  the span current when the event is made) and so the bus message's headers (a JetStream
  header; columns of the SQL log);
- the ERP posting outbox row (``erp_postings.traceparent``), written with the journal entry,
  read by the ERP posting worker;
- a message handed to a consumer: ``deliveries`` starts one span per message, a child of the
  producer's context, and ``message_span`` nests a handler's own span under it.

The process-wide ``TracerProvider`` is set once (DBOS traces its workflows into the global
one, so they join the same traces); configuring again (tests) swaps the exporter behind it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

INSTRUMENTATION = "medbridge"

_propagator = TraceContextTextMapPropagator()
_tracer: Tracer | None = None
"""None: tracing is off and every helper returns at once."""
_lock = threading.Lock()
_provider: TracerProvider | None = None
_delivered: ContextVar[Mapping[str, Span] | None] = ContextVar("medbridge_deliveries", default=None)


class Traced(Protocol):
    """What carries a trace context: a bus message, an envelope, an outbox row."""

    @property
    def traceparent(self) -> str | None: ...

    @property
    def tracestate(self) -> str | None: ...


class TracedMessage(Traced, Protocol):
    @property
    def event_id(self) -> str: ...


class _Exporting(SpanProcessor):
    """The one processor of the process-wide provider; its delegate is the configured
    exporter's, swapped when tracing is configured again."""

    def __init__(self) -> None:
        self.delegate: SpanProcessor | None = None

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        delegate = self.delegate
        if delegate is not None:
            delegate.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        delegate = self.delegate
        if delegate is not None:
            delegate.on_end(span)

    def shutdown(self) -> None:
        delegate, self.delegate = self.delegate, None
        if delegate is not None:
            delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        delegate = self.delegate
        return delegate.force_flush(timeout_millis) if delegate is not None else True


_exporting = _Exporting()


def configure_tracing(
    endpoint: str | None,
    *,
    service_name: str = "medbridge",
    exporter: SpanExporter | None = None,
) -> bool:
    """Trace to the OTLP/HTTP collector at ``endpoint`` (``http://host:4318/v1/traces``), or
    to ``exporter``; neither: tracing off. True when on."""
    global _tracer, _provider
    if exporter is None and endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint)
    with _lock:
        previous = _exporting.delegate
        if exporter is None:
            _tracer, _exporting.delegate = None, None
        else:
            if _provider is None:
                _provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
                _provider.add_span_processor(_exporting)
                if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                    trace.set_tracer_provider(_provider)  # DBOS traces into the global one
            _exporting.delegate = BatchSpanProcessor(exporter)
            _tracer = _provider.get_tracer(INSTRUMENTATION)
    if previous is not None:
        previous.shutdown()  # exports what it still holds
    return _tracer is not None


def shutdown_tracing() -> None:
    """Export what is buffered and turn tracing off (process exit, tests)."""
    configure_tracing(None)


def flush(timeout: float = 10.0) -> bool:
    """Export every ended span now; True when all were exported in time."""
    return _exporting.force_flush(int(timeout * 1000))


def enabled() -> bool:
    return _tracer is not None


def provider() -> TracerProvider | None:
    """The provider spans go to when tracing is on (for instrumentations that take one,
    e.g. FastAPI's); None when off."""
    return _provider if _tracer is not None else None


# --- W3C trace context ---------------------------------------------------------------------


def context_of(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The context a ``traceparent`` (and ``tracestate``) names; None when absent or invalid."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = _propagator.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def headers_of(span: Span | None = None) -> tuple[str | None, str | None]:
    """``(traceparent, tracestate)`` of ``span`` (default: the current one) for an envelope or
    an outbox row; ``(None, None)`` when tracing is off or no span is recording."""
    if _tracer is None:
        return None, None
    span = span if span is not None else trace.get_current_span()
    if not span.get_span_context().is_valid:
        return None, None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, trace.set_span_in_context(span))
    return carrier.get("traceparent"), carrier.get("tracestate") or None


def propagation_headers() -> dict[str, str]:
    """The current span's W3C headers for an outbound request; empty when off or none."""
    traceparent, tracestate = headers_of()
    if traceparent is None:
        return {}
    return {"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}


def carrier_of(traced: Traced) -> tuple[str | None, str | None]:
    return traced.traceparent or None, traced.tracestate or None


# --- spans ---------------------------------------------------------------------------------


_OFF: AbstractContextManager[None] = nullcontext()
"""What ``span`` is when tracing is off: one shared no-op, no generator per call."""


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Span | None]:
    """A current span around the block (an error recorded and re-raised); None when off.
    ``parent``: continue that context instead of the current one."""
    tracer = _tracer
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=_clean(attributes)
    )


def start_span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Span] = (),
) -> Span | None:
    """A span the caller ends (one that outlives a block: an MLLP message until its ACK).
    ``links``: spans of other traces it serves (a batch call's, one per message)."""
    tracer = _tracer
    if tracer is None:
        return None
    return tracer.start_span(
        name,
        context=parent,
        kind=kind,
        attributes=_clean(attributes),
        links=[trace.Link(s.get_span_context()) for s in links] or None,
    )


@contextmanager
def current(active: Span | None) -> Iterator[None]:
    """Make ``active`` the current span in the block without ending it (None: nothing)."""
    if active is None:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(active))
    try:
        yield
    finally:
        otel_context.detach(token)


def end(active: Span | None, error: BaseException | None = None, **attributes: Any) -> None:
    """End ``active`` (None: nothing), with ``attributes`` and ``error`` recorded."""
    if active is None:
        return
    if attributes:
        active.set_attributes(_clean(attributes) or {})
    if error is not None:
        _failed(active, error)
    active.end()


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (nothing when off)."""
    if _tracer is None:
        return
    active = trace.get_current_span()
    if active.is_recording():
        active.set_attributes(_clean(attributes) or {})


def _failed(active: Span, error: BaseException) -> None:
    active.record_exception(error)
    active.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    return {k: v for k, v in attributes.items() if v is not None}


# --- consumers -----------------------------------------------------------------------------


@contextmanager
def deliveries(group: str, messages: Sequence[TracedMessage], attempt: int = 1) -> Iterator[None]:
    """One CONSUMER span per message handed to a consumer group's handler in one call, each
    a child of its producer's context (the message's ``traceparent``): a batch holds messages
    of many traces, and each trace gets its own span. A lone message's span is also the
    current one in the block. An error fails every span of the call."""
    tracer = _tracer
    if tracer is None or not messages:
        yield
        return
    spans = {
        m.event_id: tracer.start_span(
            f"{group} process",
            context=context_of(*carrier_of(m)),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "medbridge",
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": group,
                "messaging.message.id": m.event_id,
                "messaging.batch.message_count": len(messages),
                "medbridge.delivery.attempt": attempt,
            },
        )
        for m in messages
    }
    token = _delivered.set(spans)
    only = next(iter(spans.values())) if len(spans) == 1 else None
    try:
        with current(only):
            yield
    except BaseException as error:
        for active in spans.values():
            _failed(active, error)
        raise
    finally:
        _delivered.reset(token)
        for active in spans.values():
            active.end()


def delivery_context(message: TracedMessage) -> Context | None:
    """The context a handler's span for ``message`` continues: its delivery span (inside
    ``deliveries``), else the producer's context from its headers; None when off."""
    if _tracer is None:
        return None
    spans = _delivered.get()
    delivered = spans.get(message.event_id) if spans is not None else None
    if delivered is not None:
        return trace.set_span_in_context(delivered)
    return context_of(*carrier_of(message))


class MessageSpans:
    """A handler's spans, one per message of a batch, each under that message's delivery;
    ended together (the batch commits in one transaction)."""

    def __init__(self, spans: Mapping[str, Span]) -> None:
        self._spans = spans

    def headers(self, event_id: str) -> tuple[str | None, str | None]:
        """``(traceparent, tracestate)`` of the message's span, for what continues it later
        (an outbox row); ``(None, None)`` when off."""
        active = self._spans.get(event_id)
        return headers_of(active) if active is not None else (None, None)


@contextmanager
def message_spans(
    name: str,
    messages: Sequence[TracedMessage],
    attributes: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[MessageSpans]:
    """``name`` spans for ``messages`` (``attributes`` per event id), ended after the block;
    an error fails them all. Nothing when off."""
    tracer = _tracer
    if tracer is None or not messages:
        yield MessageSpans({})
        return
    attributes = attributes or {}
    spans = {
        m.event_id: tracer.start_span(
            name,
            context=delivery_context(m),
            attributes=_clean({"medbridge.event.id": m.event_id, **attributes.get(m.event_id, {})}),
        )
        for m in messages
    }
    try:
        yield MessageSpans(spans)
    except BaseException as error:
        for active in spans.values():
            _failed(active, error)
        raise
    finally:
        for active in spans.values():
            active.end()


__all__ = [
    "Span",
    "SpanKind",
    "annotate",
    "configure_tracing",
    "context_of",
    "current",
    "deliveries",
    "delivery_context",
    "enabled",
    "end",
    "flush",
    "headers_of",
    "message_spans",
    "propagation_headers",
    "provider",
    "shutdown_tracing",
    "span",
    "start_span",
]
