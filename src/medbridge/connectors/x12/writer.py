"""Writing X12 envelopes: ISA (fixed widths, padded), GS, ST/SE with their counts, GE, IEA,
control numbers supplied by the caller, delimiters chosen so that none occurs in the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, time

from medbridge.connectors.x12.codec import Delimiters, choose_delimiters, serialize
from medbridge.connectors.x12.errors import IsaElement, RenderError

ISA12_OF = {"004010": "00401", "005010": "00501"}


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the caller decides for an outbound interchange: parties and control numbers."""

    sender_qualifier: str
    sender_id: str
    receiver_qualifier: str
    receiver_id: str
    interchange_control: int
    """ISA13 (1..999999999)."""
    group_control: int
    """GS06 of the first group; each further group adds 1."""
    set_control: int
    """ST02 of the first transaction set; each further set adds 1."""
    sent_on: date
    sent_at: time
    usage: str = "P"
    version: str = "004010"
    """GS08: ``004010`` (ISA12 00401) or ``005010`` (ISA12 00501)."""
    application_sender: str | None = None
    """GS02; the ISA sender id when None."""
    application_receiver: str | None = None
    ack_requested: bool = False
    """ISA14."""
    preferred: Delimiters = field(default_factory=Delimiters)
    newline: bool = True
    """A line break after each segment terminator (readable, and tolerated by every VAN)."""

    def __post_init__(self) -> None:
        for name, value, width in (
            ("sender_qualifier", self.sender_qualifier, 2),
            ("receiver_qualifier", self.receiver_qualifier, 2),
            ("sender_id", self.sender_id, 15),
            ("receiver_id", self.receiver_id, 15),
        ):
            if not value or len(value) > width:
                raise IsaElement(f"{name} {value!r} must be 1 to {width} characters")
        if self.version not in ISA12_OF:
            raise IsaElement(f"version {self.version!r}: 004010 or 005010")
        if self.usage not in ("P", "T"):
            raise IsaElement(f"usage {self.usage!r}: P or T")
        for name, number in (
            ("interchange_control", self.interchange_control),
            ("group_control", self.group_control),
            ("set_control", self.set_control),
        ):
            if not 0 < number <= 999_999_999:
                raise IsaElement(f"{name} {number} is outside 1..999999999")


@dataclass(frozen=True, slots=True)
class OutboundSet:
    """One transaction set to write: ST01 and its body (``[id, e01 ...]``, no ST/SE)."""

    set_id: str
    body: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class OutboundGroup:
    """One functional group to write; GS02/GS03 default to the envelope's."""

    functional_id: str
    sets: tuple[OutboundSet, ...]
    application_sender: str | None = None
    application_receiver: str | None = None
    version: str | None = None
    """GS08; the envelope's version when None."""


def build_interchange(groups: Sequence[OutboundGroup], envelope: Envelope) -> str:
    """One interchange: a GS/GE per ``(functional id, sets)``, control numbers counted up
    from the envelope's, delimiters chosen so that none occurs in the data."""
    e = envelope
    isa_elements = [
        "00",
        " " * 10,
        "00",
        " " * 10,
        e.sender_qualifier.ljust(2),
        e.sender_id.ljust(15),
        e.receiver_qualifier.ljust(2),
        e.receiver_id.ljust(15),
        e.sent_on.strftime("%y%m%d"),
        e.sent_at.strftime("%H%M"),
        "",  # ISA11: "U" or the repetition separator
        ISA12_OF[e.version],
        f"{e.interchange_control:09d}",
        "1" if e.ack_requested else "0",
        e.usage,
        "",  # ISA16: component separator
    ]
    out: list[list[str]] = []
    group_control = e.group_control
    set_control = e.set_control
    gs_date, gs_time = e.sent_on.strftime("%Y%m%d"), e.sent_at.strftime("%H%M")
    for group in groups:
        sets = group.sets
        out.append(
            [
                "GS",
                group.functional_id,
                group.application_sender or e.application_sender or e.sender_id,
                group.application_receiver or e.application_receiver or e.receiver_id,
                gs_date,
                gs_time,
                str(group_control),
                "X",
                group.version or e.version,
            ]
        )
        for ts in sets:
            control = f"{set_control:04d}"
            out.append(["ST", ts.set_id, control])
            out.extend(list(seg) for seg in ts.body)
            out.append(["SE", str(len(ts.body) + 2), control])
            set_control += 1
        out.append(["GE", str(len(sets)), str(group_control)])
        group_control += 1
    out.append(["IEA", str(len(groups)), isa_elements[12]])
    texts = [value for seg in out for value in seg] + isa_elements
    repetition = e.version.startswith("005")
    preferred = e.preferred
    if repetition and preferred.repetition is None:
        preferred = Delimiters(preferred.element, preferred.component, preferred.segment, "^")
    d = choose_delimiters(texts, repetition=repetition, preferred=preferred)
    isa_elements[10] = d.repetition or "U"
    isa_elements[15] = d.component
    if set_control - 1 > 999_999_999 or group_control - 1 > 999_999_999:
        raise RenderError("control numbers overflow 999999999")
    return serialize([["ISA", *isa_elements], *out], d, newline=e.newline)
