"""What the analytics export reads and how each row leaves (``flows.analytics_export``): one
``Dataset`` per exported table, its arrow schema, the day a row belongs to, when a row last
changed, its identity, and the shaping of a row, where minimisation happens: an event's
``data`` without ``encounter_ref`` (the encounter pseudonym; ``governance.minimisation``) and
``patient_location`` at any depth; an order's note and who received a shipment stay home.

``events`` reads the embedded SQL event log (``bus_events``); a network on NATS JetStream
keeps its events in the stream, and the dataset stays empty there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlalchemy import Select, select
from sqlalchemy.sql.elements import ColumnElement

from medbridge.governance.minimisation import PROTECTED, without
from medbridge.store.tables import (
    bus_events,
    goods_receipts,
    invoice_matches,
    journal_entries,
    journal_lines,
    ledger_movements,
    locations,
    purchase_orders,
)

HIDDEN_EVENT_FIELDS = frozenset(PROTECTED) | {"encounter_ref", "patient_location"}
KPIS = "kpis_daily"
FEEDS_KPIS = ("movements", "journal_lines", "purchase_orders", "invoices")

TS = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 2)
QUANTITY = pa.decimal128(24, 6)
RATE = pa.decimal128(9, 4)
STR = pa.string()


@dataclass(frozen=True)
class Dataset:
    """One exported table: its rows (``query``), each row's ``day``, when a row last
    ``changed``, its identity (``key``, a column of ``schema``) and whether a row written
    may change later (``mutable``: its old day is looked up and written again)."""

    name: str
    schema: pa.Schema
    query: Select[Any]
    day: ColumnElement[Any]
    changed: ColumnElement[Any]
    key: ColumnElement[Any]
    mutable: bool
    shape: Callable[[Mapping[Any, Any]], dict[str, Any]]


def _event_row(r: Mapping[Any, Any]) -> dict[str, Any]:
    envelope = json.loads(r["payload"])
    data, _ = without(envelope.get("data"), HIDDEN_EVENT_FIELDS)
    row = {k: r[k] for k in ("seq", "id", "type", "source", "subject", "correlation_id")}
    return row | {
        "causation_id": r["causation_id"],
        "time": r["time"],
        "appended_at": r["appended_at"],
        "data": json.dumps(data, sort_keys=True, default=str),
    }


def _plain(*names: str) -> Callable[[Mapping[Any, Any]], dict[str, Any]]:
    return lambda r: {n: r[n] for n in names}


def _as_json(value: Any) -> str:
    return json.dumps(json.loads(value) if isinstance(value, str) else value, default=str)


def _order_row(r: Mapping[Any, Any]) -> dict[str, Any]:
    lines = json.loads(r["lines"]) if isinstance(r["lines"], str) else r["lines"]
    return {n: r[n] for n in ORDER_COLUMNS} | {"line_count": len(lines), "lines": _as_json(lines)}


def _receipt_row(r: Mapping[Any, Any]) -> dict[str, Any]:
    return {n: r[n] for n in RECEIPT_COLUMNS} | {"lines": _as_json(r["lines"])}


def _invoice_row(r: Mapping[Any, Any]) -> dict[str, Any]:
    result = json.loads(r["result"]) if isinstance(r["result"], str) else r["result"]
    kinds = sorted({str(e.get("kind")) for e in (result or {}).get("exceptions", [])})
    return {n: r[n] for n in INVOICE_COLUMNS} | {"exception_kinds": kinds}


ORDER_COLUMNS = (
    "reference",
    "supplier",
    "facility",
    "urgency",
    "status",
    "erp_id",
    "correlation_id",
    "created_at",
    "updated_at",
)
RECEIPT_COLUMNS = (
    "reference",
    "order_reference",
    "shipment_id",
    "status",
    "erp_id",
    "correlation_id",
    "received_at",
)
INVOICE_COLUMNS = (
    "reference",
    "supplier",
    "number",
    "total",
    "order_reference",
    "status",
    "erp_id",
    "correlation_id",
    "created_at",
    "updated_at",
)
MOVEMENT_COLUMNS = (
    "event_id",
    "kind",
    "item",
    "location",
    "facility",
    "to_location",
    "quantity",
    "amount",
    "correlation_id",
    "occurred_at",
    "applied_at",
)
JOURNAL_COLUMNS = (
    "entry_id",
    "line_no",
    "posting_date",
    "period",
    "currency",
    "description",
    "account",
    "facility",
    "cost_center",
    "debit",
    "credit",
    "party",
    "booked_by",
    "correlation_id",
    "created_at",
)


def datasets() -> tuple[Dataset, ...]:
    ev, m, loc, je, jl = bus_events, ledger_movements, locations, journal_entries, journal_lines
    po, gr, im = purchase_orders, goods_receipts, invoice_matches
    return (
        Dataset(
            "events",
            pa.schema(
                [
                    ("seq", pa.int64()),
                    ("id", STR),
                    ("type", STR),
                    ("source", STR),
                    ("subject", STR),
                    ("correlation_id", STR),
                    ("causation_id", STR),
                    ("time", TS),
                    ("appended_at", TS),
                    ("data", STR),
                ]
            ),
            select(ev),
            ev.c.time,
            ev.c.appended_at,
            ev.c.id,
            False,
            _event_row,
        ),
        Dataset(
            "movements",
            pa.schema(
                [
                    ("event_id", STR),
                    ("kind", STR),
                    ("item", STR),
                    ("location", STR),
                    ("facility", STR),
                    ("to_location", STR),
                    ("quantity", QUANTITY),
                    ("amount", MONEY),
                    ("correlation_id", STR),
                    ("occurred_at", TS),
                    ("applied_at", TS),
                ]
            ),
            select(m, loc.c.facility).outerjoin(loc, loc.c.code == m.c.location),
            m.c.occurred_at,
            m.c.applied_at,
            m.c.event_id,
            False,
            _plain(*MOVEMENT_COLUMNS),
        ),
        Dataset(
            "journal_lines",
            pa.schema(
                [
                    ("entry_id", STR),
                    ("line_no", pa.int32()),
                    ("posting_date", pa.date32()),
                    ("period", STR),
                    ("currency", STR),
                    ("description", STR),
                    ("account", STR),
                    ("facility", STR),
                    ("cost_center", STR),
                    ("debit", MONEY),
                    ("credit", MONEY),
                    ("party", STR),
                    ("booked_by", STR),
                    ("correlation_id", STR),
                    ("created_at", TS),
                ]
            ),
            select(
                jl,
                je.c.posting_date,
                je.c.period,
                je.c.currency,
                je.c.description,
                je.c.booked_by,
                je.c.correlation_id,
                je.c.created_at,
            ).join(je, je.c.entry_id == jl.c.entry_id),
            je.c.posting_date,
            je.c.created_at,
            je.c.entry_id,
            False,
            _plain(*JOURNAL_COLUMNS),
        ),
        Dataset(
            "purchase_orders",
            pa.schema(
                [
                    *((n, TS if n.endswith("_at") else STR) for n in ORDER_COLUMNS),
                    ("line_count", pa.int32()),
                    ("lines", STR),
                ]
            ),
            select(po),
            po.c.created_at,
            po.c.updated_at,
            po.c.reference,
            True,
            _order_row,
        ),
        Dataset(
            "goods_receipts",
            pa.schema(
                [*((n, TS if n.endswith("_at") else STR) for n in RECEIPT_COLUMNS), ("lines", STR)]
            ),
            select(gr),
            gr.c.received_at,
            gr.c.received_at,
            gr.c.reference,
            True,
            _receipt_row,
        ),
        Dataset(
            "invoices",
            pa.schema(
                [
                    *(
                        (n, TS if n.endswith("_at") else MONEY if n == "total" else STR)
                        for n in INVOICE_COLUMNS
                    ),
                    ("exception_kinds", pa.list_(STR)),
                ]
            ),
            select(im),
            im.c.created_at,
            im.c.updated_at,
            im.c.reference,
            True,
            _invoice_row,
        ),
    )


KPI_SCHEMA = pa.schema(
    [
        ("facility", STR),
        ("dispenses", pa.int64()),
        ("consumption_value", MONEY),
        ("receipts", pa.int64()),
        ("received_value", MONEY),
        ("purchase_orders", pa.int64()),
        ("order_lines", pa.int64()),
        ("invoices", pa.int64()),
        ("invoices_first_pass", pa.int64()),
        ("invoice_first_pass_rate", RATE),
        ("gl_inventory", MONEY),
        ("grni_balance", MONEY),
        ("days_on_hand", MONEY),
    ]
)
