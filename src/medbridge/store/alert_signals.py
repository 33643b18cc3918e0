"""What some alert rules read from the business tables (``flows.alerts``): overdue
acknowledgements, when each trading partner was last heard from, a connector's error rate.

What the error rate covers, honestly: messages *parked* for review (``inbound_exceptions``,
by their ``source``) over those parked plus those *accepted* into the embedded SQL log
(``bus_events``, by their ``source``: ``hl7v2/<app>@<facility>``, ``fhir/<client>``,
``x12:<partner>``, ``cxml:<partner>``...). A message *refused* outright (HL7 AR, HTTP 4xx, a
bad ISA) is stored nowhere durable (only the per-process Prometheus counters count it), so it
is not in the rate; nor does anything count what was received on JetStream. The message store
(another issue) is where both will come from.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, Connection, func, or_, select

from medbridge.store.tables import bus_events, inbound_exceptions, purchase_orders
from medbridge.store.tables import trade_interchanges as ix

RATE = Decimal("0.0001")
AWAITING_ACK = "sent"
"""A purchase order's status between its sending and its acknowledgement (``flows.procurement``:
``set_order(status="sent")``, then ``acknowledged`` or closed)."""


def acks_overdue(conn: Connection, sent_before: datetime) -> int:
    """Purchase orders sent to their supplier before ``sent_before`` and still not
    acknowledged (an 855 or a cXML ConfirmationRequest moves them on)."""
    po = purchase_orders
    stmt = select(func.count()).where(po.c.status == AWAITING_ACK, po.c.updated_at < sent_before)
    return int(conn.execute(stmt).scalar_one())


def last_heard(conn: Connection, partners: Iterable[str]) -> dict[str, datetime]:
    """When each of ``partners`` last sent us an interchange (absent: never)."""
    wanted = sorted(set(partners))
    stmt = (
        select(ix.c.partner, func.max(ix.c.received_at, type_=ix.c.received_at.type))
        .where(ix.c.direction == "in", ix.c.partner.in_(wanted))
        .group_by(ix.c.partner)
    )
    return {str(p): at for p, at in conn.execute(stmt) if at is not None}


def sender_last_heard(conn: Connection, source: str) -> datetime | None:
    """When the inbound sender ``source`` (``hl7v2/<app>@<facility>``, ``fhir/<client>``) last
    had a message accepted into the embedded SQL log or parked for review (None: never). On
    JetStream the accepted ones are not in the database: only the parked ones would count."""
    accepted = conn.execute(
        select(func.max(bus_events.c.appended_at, type_=bus_events.c.appended_at.type)).where(
            bus_events.c.source == source
        )
    ).scalar_one()
    parked = conn.execute(
        select(
            func.max(inbound_exceptions.c.created_at, type_=inbound_exceptions.c.created_at.type)
        ).where(inbound_exceptions.c.source == source)
    ).scalar_one()
    heard = [at for at in (accepted, parked) if at is not None]
    return max(heard) if heard else None


def _of(column: ColumnElement[str], connector: str) -> ColumnElement[bool]:
    """The sources of ``connector``: itself, ``<connector>/...`` or ``<connector>:...``."""
    return or_(
        column == connector,
        column.startswith(f"{connector}/", autoescape=True),
        column.startswith(f"{connector}:", autoescape=True),
    )


def error_rate(conn: Connection, connector: str, since: datetime) -> Decimal:
    """Parked over parked + accepted, of ``connector``'s messages since ``since`` (0 when
    none came); see the module docstring for what it does not count."""
    parked = conn.execute(
        select(func.count()).where(
            _of(inbound_exceptions.c.source, connector),
            inbound_exceptions.c.created_at >= since,
        )
    ).scalar_one()
    accepted = conn.execute(
        select(func.count()).where(
            _of(bus_events.c.source, connector),
            bus_events.c.appended_at >= since,
        )
    ).scalar_one()
    received = int(parked) + int(accepted)
    return (Decimal(parked) / Decimal(received)).quantize(RATE) if received else Decimal(0)
