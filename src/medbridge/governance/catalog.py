"""The catalog: every API (an OpenAPI tag) and every event stream MedBridge offers, with its
version, owner, status and deprecation; and the AsyncAPI 3.0 document of the event streams,
generated from the same canonical models as the schema registry.

A deprecated route keeps working until its sunset and says so on every answer (RFC 9745
``Deprecation``, RFC 8594 ``Sunset``, and a ``Link`` to its successor); the OpenAPI document
marks it ``deprecated``. Events travel as CloudEvents 1.0 in structured mode
(``application/cloudevents+json``), one JetStream subject per partition
(``<prefix>.<partition>``, the partition a hash of the subject attribute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel

from medbridge.canonical import EventEnvelope, StockMovement
from medbridge.canonical.demand import ORDER_RECEIVED, PharmacyOrder
from medbridge.canonical.movements import EVENT_TYPES
from medbridge.canonical.trade import KIND_OF


class Status(StrEnum):
    ACTIVE = "active"
    DEPRECATED = "deprecated"  # works until its sunset; use the successor


@dataclass(frozen=True)
class Deprecation:
    method: str
    path: str
    deprecated_on: date
    sunset: date
    successor: str
    reason: str

    def headers(self) -> dict[str, str]:
        """RFC 9745 (a structured-field date: ``@`` and epoch seconds) and RFC 8594."""
        since = datetime(*self.deprecated_on.timetuple()[:3], tzinfo=UTC)
        until = datetime(*self.sunset.timetuple()[:3], tzinfo=UTC)
        return {
            "Deprecation": f"@{int(since.timestamp())}",
            "Sunset": format_datetime(until, usegmt=True),
            "Link": f'<{self.successor}>; rel="successor-version"',
        }


@dataclass(frozen=True)
class Api:
    tag: str
    version: str
    owner: str
    description: str


@dataclass(frozen=True)
class EventStream:
    name: str
    version: int
    owner: str
    event_types: tuple[str, ...]
    data: type[BaseModel]
    schema: str  # the registry name of its data (governance/schemas/<name>/)
    status: Status = Status.ACTIVE


DEPRECATIONS: Final = (
    Deprecation(
        method="POST",
        path="/fhir/r4/Bundle",
        deprecated_on=date(2026, 12, 6),
        sunset=date(2027, 6, 30),
        successor="/fhir/r4",
        reason="FHIR R4 takes batch and transaction Bundles at the base URL"
        " (http.html#transaction); POST /Bundle would store the Bundle itself",
    ),
)

APIS: Final = (
    Api("stock movements", "v1", "pharmacy-integration", "stock movements in, one or a batch"),
    Api("read", "v1", "pharmacy-integration", "stock, journal, ledger reconciliation, traces"),
    Api("FHIR R4", "R4", "clinical-integration", "MedicationDispense, SupplyDelivery, Procedure"),
    Api("trading partners", "v1", "supply-chain-integration", "X12, cXML, trade documents"),
    Api("procurement", "v1", "supply-chain-integration", "orders, receipts at the dock, invoices"),
    Api("contracts", "v1", "supply-chain-integration", "supplier contracts, 832 price changes"),
    Api("work queues", "v1", "operations", "human tasks of pharmacy, procurement and AP"),
    Api("exceptions and cross-references", "v1", "operations", "parked messages, code maps"),
    Api("master data", "v1", "master-data", "items, locations, cost centers, suppliers; import"),
    Api("operations", "v1", "operations", "dead letters"),
    Api("dashboard", "v1", "operations", "KPIs per facility, consumer lag, ERP outbox, queues"),
    Api("messages", "v1", "operations", "every message in and out: search, detail, reprocess"),
    Api("erp", "v1", "finance-integration", "ERP postings and the ERP ledger reconciliation"),
    Api("audit", "v1", "security", "the hash-chained audit log"),
    Api("lot recall", "v1", "pharmacy-integration", "a lot's trace; quarantine and release"),
    Api("periods", "v1", "finance-integration", "accounting periods: close, lock, close report"),
    Api("catalog", "v1", "platform", "this catalog and the AsyncAPI document"),
    Api("oauth", "v1", "security", "OAuth2 client credentials tokens"),
    Api("open", "v1", "platform", "health and metrics"),
)

TRADE_TYPES: Final = tuple(f"trade.{kind.value}_received.v1" for kind in KIND_OF.values())

STREAMS: Final = (
    EventStream(
        "inventory.movements",
        2,
        "pharmacy-integration",
        tuple(EVENT_TYPES.values()),
        StockMovement,
        "inventory.stock_movement",
    ),
    EventStream(
        "pharmacy.orders",
        2,
        "pharmacy-integration",
        (ORDER_RECEIVED,),
        PharmacyOrder,
        "pharmacy.order",
    ),
    *(
        EventStream(
            f"trade.{kind.value}s",
            2,
            "supply-chain-integration",
            (f"trade.{kind.value}_received.v1",),
            model,
            f"trade.{kind.value}",
        )
        for model, kind in KIND_OF.items()
    ),
)
"""Version 2 of every stream: the envelope's extension attributes got their CloudEvents names
(``correlationid``...). Readers accept version 1 envelopes still stored in a log."""


def deprecation_of(method: str, path: str) -> Deprecation | None:
    return next((d for d in DEPRECATIONS if (d.method, d.path) == (method, path)), None)


def catalog(openapi: dict[str, Any]) -> dict[str, Any]:
    """The catalog, its operations read from the API's own OpenAPI document."""
    operations: dict[str, list[dict[str, Any]]] = {}
    for path, item in openapi.get("paths", {}).items():
        for method, operation in item.items():
            for tag in operation.get("tags", ["open"]):
                deprecated = deprecation_of(method.upper(), path)
                operations.setdefault(tag, []).append(
                    {
                        "method": method.upper(),
                        "path": path,
                        "status": (Status.DEPRECATED if deprecated else Status.ACTIVE).value,
                        "sunset": deprecated.sunset.isoformat() if deprecated else None,
                        "successor": deprecated.successor if deprecated else None,
                    }
                )
    return {
        "apis": [
            {
                "name": api.tag,
                "version": api.version,
                "owner": api.owner,
                "description": api.description,
                "status": (
                    Status.DEPRECATED
                    if operations.get(api.tag)
                    and all(o["status"] == Status.DEPRECATED for o in operations[api.tag])
                    else Status.ACTIVE
                ).value,
                "operations": operations.get(api.tag, []),
            }
            for api in APIS
        ],
        "event_streams": [
            {
                "name": s.name,
                "version": s.version,
                "owner": s.owner,
                "status": s.status.value,
                "event_types": list(s.event_types),
                "schema": s.schema,
                "content_type": "application/cloudevents+json",
            }
            for s in STREAMS
        ],
        "deprecations": [
            {
                "method": d.method,
                "path": d.path,
                "deprecated_on": d.deprecated_on.isoformat(),
                "sunset": d.sunset.isoformat(),
                "successor": d.successor,
                "reason": d.reason,
            }
            for d in DEPRECATIONS
        ],
    }


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """Move a pydantic schema's ``$defs`` into ``components.schemas`` (AsyncAPI resolves
    ``$ref`` from the document's root), rewriting the references."""
    for name, definition in schema.pop("$defs", {}).items():
        into[name] = definition

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    v.replace("#/$defs/", "#/components/schemas/")
                    if k == "$ref" and isinstance(v, str)
                    else rewrite(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name in list(into):
        into[name] = rewrite(into[name])
    return dict(rewrite(schema))


def asyncapi(version: str, subject_prefix: str, partitions: int) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of MedBridge's event streams."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for stream in STREAMS:
        envelope: type[BaseModel] = EventEnvelope[stream.data]  # type: ignore[name-defined]
        payload = _hoist(envelope.model_json_schema(mode="serialization", by_alias=True), schemas)
        for event_type in stream.event_types:
            key = event_type.replace(".", "_")
            messages[key] = {
                "name": event_type,
                "title": event_type,
                "summary": f"{stream.name} (owner {stream.owner}, schema {stream.schema})",
                "contentType": "application/cloudevents+json",
                "headers": {
                    "type": "object",
                    "properties": {
                        "Nats-Msg-Id": {
                            "type": "string",
                            "description": "the idempotency key (JetStream duplicate window)",
                        },
                        "traceparent": {"type": "string", "description": "W3C trace context"},
                        "tracestate": {
                            "type": "string",
                            "description": "W3C trace context (vendor state), when any",
                        },
                    },
                },
                "payload": payload,
            }
    refs = [{"$ref": f"#/channels/events/messages/{key}"} for key in messages]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "MedBridge events",
            "version": version,
            "description": (
                "Canonical events as CloudEvents 1.0 (structured mode) on NATS JetStream or"
                " MedBridge's SQL log; per-key order within a partition."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": {
            "events": {
                "address": f"{subject_prefix}.{{partition}}",
                "description": f"one subject per partition, 0..{partitions - 1}",
                "parameters": {
                    "partition": {
                        "description": "a hash of the event's subject attribute (item@location)"
                    }
                },
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
            }
        },
        "operations": {
            "receiveEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/events"},
                "summary": "what a consumer group reads, exactly once in effect",
                "messages": refs,
            }
        },
        "components": {"messages": messages, "schemas": schemas},
    }
