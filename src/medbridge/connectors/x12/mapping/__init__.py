"""Transaction set <-> canonical trade document, one module per set (850, 855, 856, 810,
832). ``parse_set`` raises an ``X12Error`` naming segment position, element and reason when a
structurally valid set cannot be mapped; ``render_body`` writes the segments between ST and
SE. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from medbridge.canonical.trade import (
    AcknowledgementDocument,
    CatalogDocument,
    InvoiceDocument,
    OrderDocument,
    ShipNoticeDocument,
    TradeDocument,
)
from medbridge.connectors.x12.envelope import TransactionSet
from medbridge.connectors.x12.errors import UnsupportedSet
from medbridge.connectors.x12.mapping import m810, m832, m850, m855, m856
from medbridge.connectors.x12.mapping.common import Out

MODULES: dict[str, ModuleType] = {"850": m850, "855": m855, "856": m856, "810": m810, "832": m832}
SET_OF: dict[type[Any], str] = {
    OrderDocument: "850",
    AcknowledgementDocument: "855",
    ShipNoticeDocument: "856",
    InvoiceDocument: "810",
    CatalogDocument: "832",
}
FUNCTIONAL_ID: dict[str, str] = {set_id: m.FUNCTIONAL_ID for set_id, m in MODULES.items()}
"""GS01 of each transaction set: PO 850, PR 855, SH 856, IN 810, SC 832."""


def parse_set(ts: TransactionSet) -> TradeDocument:
    module = MODULES.get(ts.set_id)
    if module is None:
        st = ts.segments[0]
        raise UnsupportedSet(
            f"transaction set {ts.set_id!r} is not mapped (850, 855, 856, 810, 832)",
            segment_position=st.position,
            set_position=1,
            segment_id="ST",
            element_position=1,
            value=ts.set_id,
        )
    parse: Callable[[TransactionSet], TradeDocument] = module.parse
    return parse(ts)


def set_id_of(document: TradeDocument) -> str:
    return SET_OF[type(document)]


def render_body(document: TradeDocument) -> list[Out]:
    render: Callable[[TradeDocument], list[Out]] = MODULES[set_id_of(document)].render
    return render(document)


__all__ = ["FUNCTIONAL_ID", "MODULES", "parse_set", "render_body", "set_id_of"]
