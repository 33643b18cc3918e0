"""997 functional acknowledgements: written for every inbound functional group (never for a
group of 997s: MedBridge does not answer an acknowledgement), and read when a partner
acknowledges our transmission.

Per inbound group: AK1 (GS01, GS06); per set AK2 (ST01, ST02), AK3/AK4 for the segment and
element in error (position in the set, AK304 / AK403 codes, a copy of the bad value), AK5
(A accepted, R rejected + AK502 code); AK9 (A all accepted, P partially, R rejected; sets
included / received / accepted; AK905 code). A group rejected as a whole (unsupported version,
GS06 != GE02, GE01 wrong, no GE) is answered with AK1 + AK9*R and its code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medbridge.connectors.x12.codec import Segment
from medbridge.connectors.x12.envelope import FunctionalGroup, TransactionSet
from medbridge.connectors.x12.errors import (
    BadCode,
    EnvelopeError,
    MissingElement,
    MissingMandatory,
    UnsupportedSet,
    X12Error,
)
from medbridge.connectors.x12.writer import OutboundSet

ACK_SET = "997"
ACK_FUNCTIONAL_ID = "FA"


def ack_set(
    group: FunctionalGroup,
    set_errors: Sequence[tuple[TransactionSet, Sequence[X12Error]]],
    *,
    version: str = "004010",
) -> OutboundSet:
    """The 997 answering ``group``: ``set_errors`` gives each set with its errors (empty:
    accepted). The group's own errors (``group.errors``) reject it as a whole."""
    ak1: tuple[str, ...] = ("AK1", group.functional_id, group.control_number)
    if version.startswith("005"):
        ak1 = (*ak1, group.version)
    body: list[tuple[str, ...]] = [ak1]
    received = len(set_errors)
    included = group.included_sets if group.included_sets is not None else received
    if group.errors:
        group_codes = [e.ak905 for e in group.errors if e.ak905][:5]
        body.append(("AK9", "R", str(included), str(received), "0", *group_codes))
        return OutboundSet(ACK_SET, tuple(body))
    accepted = 0
    for ts, errors in set_errors:
        body.append(("AK2", ts.set_id, ts.control_number))
        if not errors:
            accepted += 1
            body.append(("AK5", "A"))
            continue
        codes: list[str] = []
        for error in errors:
            body += _ak3_ak4(error)
            if error.ak502 not in codes:
                codes.append(error.ak502)
        body.append(("AK5", "R", *codes[:5]))
    if accepted == received:
        status = "A"
    elif accepted:
        status = "P"
    else:
        status = "R"
    body.append(("AK9", status, str(included), str(received), str(accepted)))
    return OutboundSet(ACK_SET, tuple(body))


def _ak3_ak4(error: X12Error) -> list[tuple[str, ...]]:
    """AK3 (+ AK4) for an error inside the set; none for a trailer/header envelope error."""
    if isinstance(error, EnvelopeError) and not isinstance(error, MissingMandatory):
        return []
    if isinstance(error, UnsupportedSet) or error.segment_id is None:
        return []
    out: list[tuple[str, ...]] = [
        ("AK3", error.segment_id, str(error.set_position or ""), "", error.ak304)
    ]
    if error.element_position is not None:
        code = error.ak403 or "7"
        value = (error.value or "")[:99]
        out.append(("AK4", str(error.element_position), "", code, value))
    return out


# --- reading a partner's 997 ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetAcknowledgement:
    set_id: str
    """AK201."""
    control_number: str
    """AK202: the ST02 we sent."""
    status: str
    """AK501: A accepted, E accepted with errors, M/W/X rejected variants, R rejected."""
    codes: tuple[str, ...]
    """AK502..AK506."""
    errors: tuple[str, ...]
    """The AK3/AK4 notes, e.g. ``PO1 at 5, element 2: code 6 ('abc')``."""

    @property
    def accepted(self) -> bool:
        return self.status in ("A", "E")


@dataclass(frozen=True, slots=True)
class FunctionalAckReport:
    """What a partner's 997 says about one of our functional groups."""

    functional_id: str
    """AK101."""
    group_control: str
    """AK102: the GS06 we sent."""
    status: str
    """AK901: A accepted, E accepted with errors, P partially accepted, R rejected."""
    included: int | None
    received: int | None
    accepted_count: int | None
    codes: tuple[str, ...]
    sets: tuple[SetAcknowledgement, ...]

    @property
    def accepted(self) -> bool:
        return self.status in ("A", "E")

    @property
    def rejected_sets(self) -> tuple[str, ...]:
        return tuple(s.control_number for s in self.sets if not s.accepted)


def parse_997(ts: TransactionSet) -> FunctionalAckReport:
    body = list(ts.body)
    ak1 = next((s for s in body if s.id == "AK1"), None)
    ak9 = next((s for s in body if s.id == "AK9"), None)
    for needed, seg in (("AK1", ak1), ("AK9", ak9)):
        if seg is None:
            raise MissingMandatory(
                f"the 997 has no {needed} segment",
                segment_position=ts.segments[0].position,
                set_position=1,
                segment_id=needed,
            )
    assert ak1 is not None
    assert ak9 is not None
    status = ak9.get(1).strip()
    if status not in ("A", "E", "P", "R", "M", "W", "X"):
        raise BadCode(
            f"functional group acknowledge code {status!r} is not A, E, P or R",
            segment_position=ak9.position,
            set_position=ts.set_position(ak9),
            segment_id="AK9",
            element_position=1,
            value=status,
        )
    sets: list[SetAcknowledgement] = []
    current: Segment | None = None
    notes: list[str] = []
    for seg in body:
        if seg.id == "AK2":
            current, notes = seg, []
        elif seg.id == "AK3" and current is not None:
            notes.append(f"{seg.get(1)} at {seg.get(2)}: segment code {seg.get(4)}")
        elif seg.id == "AK4" and current is not None:
            notes.append(f"element {seg.get(1)}: code {seg.get(3)} ({seg.get(4)!r})")
        elif seg.id == "AK5" and current is not None:
            if not seg.get(1).strip():
                raise MissingElement(
                    "transaction set acknowledgment code is missing",
                    segment_position=seg.position,
                    set_position=ts.set_position(seg),
                    segment_id="AK5",
                    element_position=1,
                )
            codes = tuple(c for c in seg.elements[1:6] if c)
            sets.append(
                SetAcknowledgement(
                    current.get(1), current.get(2), seg.get(1).strip(), codes, tuple(notes)
                )
            )
            current = None
    return FunctionalAckReport(
        functional_id=ak1.get(1),
        group_control=ak1.get(2),
        status=status,
        included=_int(ak9.get(2)),
        received=_int(ak9.get(3)),
        accepted_count=_int(ak9.get(4)),
        codes=tuple(c for c in ak9.elements[4:9] if c),
        sets=tuple(sets),
    )


def _int(text: str) -> int | None:
    text = text.strip()
    # ASCII digits, few enough for a count: "²".isdigit() is true and int() refuses it
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None
