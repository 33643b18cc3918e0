"""X12 EDI (supply chain: 850, 855, 856, 810, 832, and 997 acknowledgements), stdlib only.

- ``parse_interchange(data)`` -> ``ParsedInterchange``: per functional group and transaction
  set, either a canonical trade document (or, for a 997, a ``FunctionalAckReport``) or the
  set's errors. Raises an ``X12Error`` only when the interchange itself is unusable (bad ISA,
  no IEA, ISA13 != IEA02, IEA01 wrong).
- ``ParsedInterchange.idempotency_key(group, set)``:
  ``{ISA05}:{ISA06}:{ISA13}:{GS06}:{ST02}`` (frozen: never change it).
- ``functional_ack(parsed, ...)`` -> one interchange with a 997 per inbound group (sender and
  receiver swapped), or None when the interchange holds only 997s.
- ``render(documents, envelope)`` -> one interchange, one group per functional id (PO 850, PR
  855, SH 856, IN 810, SC 832), one ST per document, delimiters that do not occur in the data.

Refusals are ``X12Error`` subclasses (``errors``) with a stable code, a reason and positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, time

from medbridge.canonical.trade import TradeDocument
from medbridge.connectors.x12.ack import (
    ACK_FUNCTIONAL_ID,
    ACK_SET,
    FunctionalAckReport,
    SetAcknowledgement,
    ack_set,
    parse_997,
)
from medbridge.connectors.x12.codec import Delimiters, Segment
from medbridge.connectors.x12.config import NAME, X12Config
from medbridge.connectors.x12.envelope import (
    FunctionalGroup,
    Interchange,
    TransactionSet,
    parse_envelope,
)
from medbridge.connectors.x12.errors import X12Error
from medbridge.connectors.x12.mapping import FUNCTIONAL_ID, parse_set, render_body, set_id_of
from medbridge.connectors.x12.writer import (
    Envelope,
    OutboundGroup,
    OutboundSet,
    build_interchange,
)


@dataclass(frozen=True, slots=True)
class ParsedSet:
    transaction_set: TransactionSet
    document: TradeDocument | None = None
    ack_report: FunctionalAckReport | None = None
    """For a 997: what the partner acknowledged of our transmission."""
    errors: tuple[X12Error, ...] = ()

    @property
    def set_id(self) -> str:
        return self.transaction_set.set_id

    @property
    def control_number(self) -> str:
        return self.transaction_set.control_number

    @property
    def accepted(self) -> bool:
        return not self.errors and (self.document or self.ack_report) is not None


@dataclass(frozen=True, slots=True)
class ParsedGroup:
    group: FunctionalGroup
    sets: tuple[ParsedSet, ...]

    @property
    def errors(self) -> tuple[X12Error, ...]:
        """Group-level errors: the whole group is rejected (AK9*R)."""
        return self.group.errors

    @property
    def is_acknowledgement(self) -> bool:
        return self.group.functional_id == ACK_FUNCTIONAL_ID


@dataclass(frozen=True, slots=True)
class ParsedInterchange:
    interchange: Interchange
    groups: tuple[ParsedGroup, ...]

    def idempotency_key(
        self, group: ParsedGroup | FunctionalGroup, ts: ParsedSet | TransactionSet
    ) -> str:
        """``{ISA05}:{ISA06}:{ISA13}:{GS06}:{ST02}``. Frozen: dedup keys stored with every
        effect are derived from it; never change the format."""
        g = group.group if isinstance(group, ParsedGroup) else group
        t = ts.transaction_set if isinstance(ts, ParsedSet) else ts
        i = self.interchange
        return (
            f"{i.sender_qualifier}:{i.sender_id}:{i.control_number}:{g.control_number}:"
            f"{t.control_number}"
        )

    @property
    def documents(self) -> tuple[TradeDocument, ...]:
        return tuple(s.document for g in self.groups for s in g.sets if s.document is not None)

    @property
    def ack_reports(self) -> tuple[FunctionalAckReport, ...]:
        return tuple(s.ack_report for g in self.groups for s in g.sets if s.ack_report is not None)

    @property
    def errors(self) -> tuple[X12Error, ...]:
        """Every group and set error, in interchange order."""
        out: list[X12Error] = []
        for g in self.groups:
            out += g.errors
            for s in g.sets:
                out += s.errors
        return tuple(out)

    @property
    def only_acknowledgements(self) -> bool:
        return all(g.is_acknowledgement for g in self.groups)


def parse_interchange(data: bytes | str) -> ParsedInterchange:
    """Parse envelopes, then map every set of every usable group (see the module docstring)."""
    interchange = parse_envelope(data)
    groups = []
    for group in interchange.groups:
        sets = []
        for ts in group.sets:
            if group.errors:
                sets.append(ParsedSet(ts))
            elif ts.errors:
                sets.append(ParsedSet(ts, errors=ts.errors))
            else:
                sets.append(_map(ts))
        groups.append(ParsedGroup(group, tuple(sets)))
    return ParsedInterchange(interchange, tuple(groups))


def _map(ts: TransactionSet) -> ParsedSet:
    try:
        if ts.set_id == ACK_SET:
            return ParsedSet(ts, ack_report=parse_997(ts))
        return ParsedSet(ts, document=parse_set(ts))
    except X12Error as error:
        return ParsedSet(ts, errors=(error,))


def functional_ack(
    parsed: ParsedInterchange,
    *,
    interchange_control: int,
    group_control: int,
    set_control: int,
    sent_on: date,
    sent_at: time,
    usage: str | None = None,
    version: str = "004010",
) -> str | None:
    """One interchange answering ``parsed``: a 997 per inbound group (not for 997 groups),
    each in its own FA group with GS02/GS03 swapped; ISA sender and receiver swapped."""
    answered = [g for g in parsed.groups if not g.is_acknowledgement]
    if not answered:
        return None
    i = parsed.interchange
    envelope = Envelope(
        sender_qualifier=i.receiver_qualifier,
        sender_id=i.receiver_id,
        receiver_qualifier=i.sender_qualifier,
        receiver_id=i.sender_id,
        interchange_control=interchange_control,
        group_control=group_control,
        set_control=set_control,
        sent_on=sent_on,
        sent_at=sent_at,
        usage=usage or i.usage,
        version=version,
        preferred=replace(i.delimiters, repetition=None)
        if not version.startswith("005")
        else i.delimiters,
    )
    if envelope.preferred.newline_terminated:
        envelope = replace(envelope, preferred=Delimiters())
    groups = [
        OutboundGroup(
            ACK_FUNCTIONAL_ID,
            (ack_set(g.group, [(s.transaction_set, s.errors) for s in g.sets], version=version),),
            application_sender=g.group.receiver,
            application_receiver=g.group.sender,
        )
        for g in answered
    ]
    return build_interchange(groups, envelope)


def render(documents: Iterable[TradeDocument], envelope: Envelope) -> str:
    """One interchange: a group per functional id (in first-seen order), one ST per document."""
    by_group: dict[str, list[OutboundSet]] = {}
    for document in documents:
        set_id = set_id_of(document)
        body = tuple(render_body(document))
        by_group.setdefault(FUNCTIONAL_ID[set_id], []).append(OutboundSet(set_id, body))
    if not by_group:
        raise ValueError("nothing to render")
    groups = [OutboundGroup(fid, tuple(sets)) for fid, sets in by_group.items()]
    return build_interchange(groups, envelope)


__all__ = [
    "NAME",
    "Delimiters",
    "Envelope",
    "FunctionalAckReport",
    "FunctionalGroup",
    "Interchange",
    "ParsedGroup",
    "ParsedInterchange",
    "ParsedSet",
    "Segment",
    "SetAcknowledgement",
    "TransactionSet",
    "X12Config",
    "X12Error",
    "functional_ack",
    "parse_interchange",
    "render",
]
