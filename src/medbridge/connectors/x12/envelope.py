"""X12 envelopes read: ISA/IEA, GS/GE, ST/SE with their control checks (``writer``: written).

Reading never stops at the first bad group or set when the interchange itself is usable:
a group or set in error carries its errors (``FunctionalGroup.errors``,
``TransactionSet.errors``) so that the 997 can reject just that one. What makes the whole
interchange unusable (bad ISA, no IEA, ISA13 != IEA02, IEA01 wrong) raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from medbridge.connectors.x12.codec import Delimiters, Segment
from medbridge.connectors.x12.codec import tokenize as _tokenize
from medbridge.connectors.x12.errors import (
    ControlMismatch,
    CountMismatch,
    DuplicateControl,
    MissingSegment,
    SegmentCount,
    UnexpectedSegment,
    UnsupportedVersion,
    X12Error,
)

SUPPORTED_VERSION_PREFIXES = ("004", "005")


@dataclass(frozen=True, slots=True)
class TransactionSet:
    set_id: str
    """ST01: 850, 855, 856, 810, 832, 997 ..."""
    control_number: str
    """ST02."""
    segments: tuple[Segment, ...]
    """ST .. SE inclusive (SE absent when the trailer is missing)."""
    errors: tuple[X12Error, ...] = ()
    """Envelope errors of this set (SE01 count, ST02 != SE02, no SE)."""

    @property
    def body(self) -> tuple[Segment, ...]:
        """The segments between ST and SE."""
        end = -1 if self.segments and self.segments[-1].id == "SE" else len(self.segments)
        return self.segments[1:end]

    def set_position(self, segment: Segment) -> int:
        """1-based position of ``segment`` in this set (ST = 1), as 997 AK302 counts."""
        return segment.position - self.segments[0].position + 1


@dataclass(frozen=True, slots=True)
class FunctionalGroup:
    functional_id: str
    """GS01: PO, PR, SH, IN, SC, FA ..."""
    sender: str
    """GS02, application sender's code."""
    receiver: str
    """GS03."""
    date: str
    time: str
    control_number: str
    """GS06."""
    version: str
    """GS08: 004010, 005010, 004010VICS ..."""
    sets: tuple[TransactionSet, ...]
    errors: tuple[X12Error, ...] = ()
    """Group-level errors: unsupported version, GS06 != GE02, GE01 wrong, no GE."""
    included_sets: int | None = None
    """GE01 as sent (None when the trailer is missing)."""


@dataclass(frozen=True, slots=True)
class Interchange:
    sender_qualifier: str
    sender_id: str
    receiver_qualifier: str
    receiver_id: str
    date: str
    """ISA09, YYMMDD."""
    time: str
    """ISA10, HHMM."""
    control_number: str
    """ISA13."""
    usage: str
    """ISA15: P production, T test."""
    version: str
    """ISA12: 00401, 00501 ..."""
    delimiters: Delimiters
    groups: tuple[FunctionalGroup, ...] = field(default=())


def parse_envelope(data: bytes | str) -> Interchange:
    """The interchange's envelope structure, with each group's and set's envelope errors."""
    delimiters, segments = _tokenize(data)
    isa = segments[0]
    groups: list[FunctionalGroup] = []
    i = 1
    n = len(segments)
    iea: Segment | None = None
    while i < n:
        seg = segments[i]
        if seg.id == "GS":
            group, i = _read_group(segments, i)
            groups.append(group)
        elif seg.id == "IEA":
            iea = seg
            i += 1
            break
        else:
            raise UnexpectedSegment(
                f"{seg.id} outside a functional group (expected GS or IEA)",
                segment_position=seg.position,
                segment_id=seg.id,
            )
    if iea is None:
        raise MissingSegment(
            "the interchange has no IEA trailer",
            segment_id="IEA",
            segment_position=segments[-1].position + 1,
        )
    if i < n:
        extra = segments[i]
        raise UnexpectedSegment(
            f"{extra.id} after the IEA trailer",
            segment_position=extra.position,
            segment_id=extra.id,
        )
    control = isa.get(13)
    if iea.get(2) != control:
        raise ControlMismatch(
            f"IEA02 {iea.get(2)!r} does not match ISA13 {control!r}",
            segment_position=iea.position,
            segment_id="IEA",
            element_position=2,
            value=iea.get(2),
        )
    if _int(iea.get(1)) != len(groups):
        raise CountMismatch(
            f"IEA01 says {iea.get(1)!r} functional groups, the interchange has {len(groups)}",
            segment_position=iea.position,
            segment_id="IEA",
            element_position=1,
            value=iea.get(1),
        )
    return Interchange(
        sender_qualifier=isa.get(5).strip(),
        sender_id=isa.get(6).strip(),
        receiver_qualifier=isa.get(7).strip(),
        receiver_id=isa.get(8).strip(),
        date=isa.get(9),
        time=isa.get(10),
        control_number=control,
        usage=isa.get(15),
        version=isa.get(12),
        delimiters=delimiters,
        groups=tuple(groups),
    )


def _int(text: str) -> int | None:
    text = text.strip()
    # ASCII digits, few enough for a count: "²".isdigit() is true and int() refuses it
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _read_group(segments: Sequence[Segment], i: int) -> tuple[FunctionalGroup, int]:
    gs = segments[i]
    i += 1
    sets: list[TransactionSet] = []
    errors: list[X12Error] = []
    ge: Segment | None = None
    while i < len(segments):
        seg = segments[i]
        if seg.id == "ST":
            ts, i = _read_set(segments, i)
            if any(other.control_number == ts.control_number for other in sets):
                duplicate = DuplicateControl(
                    f"ST02 {ts.control_number!r} is not unique in functional group {gs.get(6)!r}",
                    segment_position=seg.position,
                    set_position=1,
                    segment_id="ST",
                    element_position=2,
                    value=ts.control_number,
                )
                ts = replace(ts, errors=(*ts.errors, duplicate))
            sets.append(ts)
        elif seg.id == "GE":
            ge = seg
            i += 1
            break
        elif seg.id in ("GS", "IEA"):
            break
        else:
            errors.append(
                UnexpectedSegment(
                    f"{seg.id} outside a transaction set (expected ST or GE)",
                    segment_position=seg.position,
                    segment_id=seg.id,
                )
            )
            i += 1
    version = gs.get(8)
    if not version.startswith(SUPPORTED_VERSION_PREFIXES):
        errors.insert(
            0,
            UnsupportedVersion(
                f"functional group version {version!r} is not supported (004xxx, 005xxx)",
                segment_position=gs.position,
                segment_id="GS",
                element_position=8,
                value=version,
            ),
        )
    if ge is None:
        errors.append(
            MissingSegment(
                f"functional group {gs.get(6)!r} has no GE trailer",
                segment_position=segments[i - 1].position + 1,
                segment_id="GE",
            )
        )
    else:
        if ge.get(2) != gs.get(6):
            errors.append(
                ControlMismatch(
                    f"GE02 {ge.get(2)!r} does not match GS06 {gs.get(6)!r}",
                    segment_position=ge.position,
                    segment_id="GE",
                    element_position=2,
                    value=ge.get(2),
                )
            )
        if _int(ge.get(1)) != len(sets):
            errors.append(
                CountMismatch(
                    f"GE01 says {ge.get(1)!r} transaction sets, the group has {len(sets)}",
                    segment_position=ge.position,
                    segment_id="GE",
                    element_position=1,
                    value=ge.get(1),
                )
            )
    group = FunctionalGroup(
        functional_id=gs.get(1),
        sender=gs.get(2).strip(),
        receiver=gs.get(3).strip(),
        date=gs.get(4),
        time=gs.get(5),
        control_number=gs.get(6),
        version=version,
        sets=tuple(sets),
        errors=tuple(errors),
        included_sets=_int(ge.get(1)) if ge is not None else None,
    )
    return group, i


def _read_set(segments: Sequence[Segment], i: int) -> tuple[TransactionSet, int]:
    st = segments[i]
    body: list[Segment] = [st]
    i += 1
    se: Segment | None = None
    while i < len(segments):
        seg = segments[i]
        if seg.id == "SE":
            se = seg
            body.append(seg)
            i += 1
            break
        if seg.id in ("ST", "GE", "GS", "IEA"):
            break
        body.append(seg)
        i += 1
    errors: list[X12Error] = []
    if se is None:
        errors.append(
            MissingSegment(
                f"transaction set {st.get(2)!r} has no SE trailer",
                segment_position=body[-1].position + 1,
                set_position=len(body) + 1,
                segment_id="SE",
            )
        )
    else:
        count = len(body)
        if _int(se.get(1)) != count:
            errors.append(
                SegmentCount(
                    f"SE01 says {se.get(1)!r} segments, ST..SE holds {count}",
                    segment_position=se.position,
                    set_position=count,
                    segment_id="SE",
                    element_position=1,
                    value=se.get(1),
                )
            )
        if se.get(2) != st.get(2):
            errors.append(
                ControlMismatch(
                    f"SE02 {se.get(2)!r} does not match ST02 {st.get(2)!r}",
                    segment_position=se.position,
                    set_position=count,
                    segment_id="SE",
                    element_position=2,
                    value=se.get(2),
                )
            )
    return TransactionSet(st.get(1), st.get(2), tuple(body), tuple(errors)), i
