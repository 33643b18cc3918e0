"""X12 connector errors: why an interchange, a functional group or a transaction set is refused.

Every error carries a stable ``code`` (never change one: the 997s we send and the exception
reports key on it), a ``reason`` an operator can act on, and where it happened:
``segment_position`` (1-based ordinal of the segment in the interchange, ISA = 1),
``set_position`` (1-based ordinal inside its transaction set, ST = 1: what 997 AK302 carries),
``segment_id`` and ``element_position`` (1-based, None for a segment-level error). Each class
names the 997 code it maps to: ``ak304`` (segment syntax error), ``ak403`` (element syntax
error), ``ak502`` (transaction set) or ``ak905`` (functional group).

X12Error                            code                       997
 +-- DecodeError                    x12.encoding               (interchange: no 997)
 +-- EnvelopeError                  x12.envelope               AK905 / AK502 by level
 |    +-- IsaLength                 x12.isa_length             an ISA element of the wrong width
 |    +-- IsaElement                x12.isa_element            an ISA element with a bad value
 |    |    +-- InvalidIsaVersion    x12.isa_version            ISA12 not a version code
 |    +-- ControlMismatch           x12.control_mismatch       ISA13/IEA02, GS06/GE02, ST02/SE02
 |    +-- CountMismatch             x12.count_mismatch         IEA01, GE01
 |    |    +-- SegmentCount         x12.segment_count          SE01 is not the ST..SE count
 |    +-- DuplicateControl          x12.duplicate_control      ST02 repeated in a group (AK502=23)
 |    +-- MissingSegment            x12.missing_segment        IEA, GE, SE, or a mandatory segment
 |    +-- UnexpectedSegment         x12.unexpected_segment     a segment where none may be
 |    +-- UnsupportedVersion        x12.unsupported_version    GS08 not 004xxx / 005xxx (AK905=2)
 |    +-- UnsupportedSet            x12.unsupported_set        an ST01 we do not map (AK502=1)
 +-- BadElement                     x12.bad_element            AK403 = ``ak403``
 |    +-- MissingElement            x12.missing_element        mandatory element empty (AK403=1)
 |    +-- BadNumber                 x12.bad_number             not a number (AK403=6)
 |    +-- BadDate                   x12.bad_date               not a date (AK403=8)
 |    +-- BadCode                   x12.bad_code               code not in the code list (AK403=7)
 +-- InvalidDocument                x12.invalid_document       parses, but breaks a canonical rule
 +-- RenderError                    x12.render                 cannot write the interchange
      +-- NoSafeDelimiters          x12.no_delimiters          every candidate occurs in the data
"""

from __future__ import annotations

from typing import Any


class X12Error(ValueError):
    """Root of the X12 connector's errors."""

    code = "x12.error"
    ak304: str = "8"  # segment has data element errors
    ak403: str | None = None
    ak502: str = "5"  # one or more segments in error
    ak905: str | None = None

    def __init__(
        self,
        reason: str,
        *,
        segment_position: int | None = None,
        set_position: int | None = None,
        segment_id: str | None = None,
        element_position: int | None = None,
        value: str | None = None,
    ) -> None:
        self.reason = reason
        self.segment_position = segment_position
        self.set_position = set_position
        self.segment_id = segment_id
        self.element_position = element_position
        self.value = value
        super().__init__(self.message)

    @property
    def element_name(self) -> str | None:
        """``PO102`` for element 2 of PO1, None for a segment-level error."""
        if self.segment_id is None or self.element_position is None:
            return None
        return f"{self.segment_id}{self.element_position:02d}"

    @property
    def message(self) -> str:
        """``segment 14 (PO1), element PO102: quantity 'abc' is not a number``."""
        where: list[str] = []
        if self.segment_position is not None:
            label = f"segment {self.segment_position}"
            if self.segment_id:
                label += f" ({self.segment_id})"
            if self.set_position is not None:
                label += f" [#{self.set_position} in its transaction set]"
            where.append(label)
        elif self.segment_id:
            where.append(f"segment {self.segment_id}")
        if self.element_name is not None:
            where.append(f"element {self.element_name}")
        return ", ".join(where) + f": {self.reason}" if where else self.reason

    def __reduce__(self) -> tuple[object, ...]:  # keep the positions when pickled
        where = {
            "segment_position": self.segment_position,
            "set_position": self.set_position,
            "segment_id": self.segment_id,
            "element_position": self.element_position,
            "value": self.value,
        }
        return (_rebuild, (type(self), self.reason, where))


def _rebuild(cls: type[X12Error], reason: str, where: dict[str, Any]) -> X12Error:
    return cls(reason, **where)


class DecodeError(X12Error):
    code = "x12.encoding"


class EnvelopeError(X12Error):
    code = "x12.envelope"


class IsaLength(EnvelopeError):
    code = "x12.isa_length"


class IsaElement(EnvelopeError):
    code = "x12.isa_element"


class InvalidIsaVersion(IsaElement):
    code = "x12.isa_version"


class ControlMismatch(EnvelopeError):
    code = "x12.control_mismatch"
    ak502 = "3"  # control number in header and trailer do not match
    ak905 = "4"


class CountMismatch(EnvelopeError):
    code = "x12.count_mismatch"
    ak905 = "5"  # number of included transaction sets does not match actual count


class SegmentCount(CountMismatch):
    code = "x12.segment_count"
    ak502 = "4"  # number of included segments does not match actual count


class DuplicateControl(EnvelopeError):
    code = "x12.duplicate_control"
    ak502 = "23"  # transaction set control number not unique within the functional group


class MissingSegment(EnvelopeError):
    code = "x12.missing_segment"
    ak304 = "3"  # mandatory segment missing
    ak502 = "2"  # transaction set trailer missing (SE); else 5 via ``for_mandatory``
    ak905 = "3"  # functional group trailer missing


class MissingMandatory(MissingSegment):
    """A mandatory body segment (BEG, BIG ...) is absent: AK304=3, AK502=5."""

    ak502 = "5"


class UnexpectedSegment(EnvelopeError):
    code = "x12.unexpected_segment"
    ak304 = "2"


class UnsupportedVersion(EnvelopeError):
    code = "x12.unsupported_version"
    ak905 = "2"  # functional group version not supported


class UnsupportedSet(EnvelopeError):
    code = "x12.unsupported_set"
    ak502 = "1"  # transaction set not supported


class BadElement(X12Error):
    code = "x12.bad_element"
    ak403 = "7"


class MissingElement(BadElement):
    code = "x12.missing_element"
    ak403 = "1"


class BadNumber(BadElement):
    code = "x12.bad_number"
    ak403 = "6"


class BadDate(BadElement):
    code = "x12.bad_date"
    ak403 = "8"


class BadCode(BadElement):
    code = "x12.bad_code"
    ak403 = "7"


class InvalidDocument(X12Error):
    code = "x12.invalid_document"


class RenderError(X12Error):
    code = "x12.render"


class NoSafeDelimiters(RenderError):
    code = "x12.no_delimiters"
