"""X12 lexical layer: bytes -> delimiters + segments, and segments -> text.

The ISA segment is fixed width (106 characters): its element separator is the character at
index 3, ISA11 (repetition separator from 00501 on) at 82, the component separator at 104 and
the segment terminator at 105. A CR or LF terminator (an interchange whose segments end only
with a newline) makes the newline (CRLF, LF or CR) the terminator. An ISA whose element widths
are wrong is refused naming the element (``IsaLength``): delimiters are never guessed.

Between segments, newlines and indentation (pretty-printed files) are tolerated, as is
trailing whitespace after a newline terminator. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from medbridge.connectors.x12.errors import (
    DecodeError,
    InvalidIsaVersion,
    IsaElement,
    IsaLength,
    NoSafeDelimiters,
)

ISA_LENGTH = 106
ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
"""Widths of ISA01..ISA16."""

VALID_ISA_VERSIONS = frozenset(
    [f"0020{n}" for n in range(5)]
    + [f"0030{n}" for n in range(8)]
    + [f"0040{n}" for n in range(7)]
    + [f"0050{n}" for n in range(6)]
    + [f"0060{n}" for n in range(6)]
    + [f"0070{n}" for n in range(6)]
    + [f"0080{n}" for n in range(6)]
)
"""Interchange control version numbers (ISA12) of the published X12 releases."""

_NEWLINES = "\r\n"
_BLANK = " \t\r\n"
"""What may sit between segments (pretty-printing); control characters such as GS (0x1D)
are whitespace to ``str.strip`` but can be delimiters, so they are never stripped."""
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class Delimiters:
    element: str = "*"
    component: str = ">"
    segment: str = "~"
    repetition: str | None = None
    """ISA11 when it is a separator (00501 on); None when ISA11 is the standards id ``U``."""

    @property
    def newline_terminated(self) -> bool:
        return self.segment in _NEWLINES


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: ``elements[0]`` is element 01. ``position``: ordinal in the interchange."""

    id: str
    elements: tuple[str, ...]
    position: int = 0

    def get(self, n: int) -> str:
        """Element ``n`` (1-based), ``""`` when absent."""
        return self.elements[n - 1] if 0 < n <= len(self.elements) else ""


def _ascii_digits(text: str) -> bool:
    """``str.isdigit`` is true for "²" and for any script's digits."""
    return text.isascii() and text.isdigit()


def decode(data: bytes | str) -> str:
    """UTF-8 text without BOM; a decoding failure names the byte offset."""
    if isinstance(data, str):
        return data[1:] if data.startswith(_BOM) else data
    skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + skip  # in the bytes as received, BOM included
        raise DecodeError(
            f"not UTF-8 at byte offset {offset}: {data[offset : offset + 4]!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class IsaHeader:
    elements: tuple[str, ...]
    """ISA01..ISA16, unstripped."""
    delimiters: Delimiters
    end: int
    """Index just after the ISA terminator (and the LF of a CRLF terminator)."""


def read_isa(text: str) -> IsaHeader:
    """Read and check the fixed-width ISA at the start of ``text`` (after leading whitespace)."""
    start = len(text) - len(text.lstrip(_BLANK))
    if not text.startswith("ISA", start):
        found = text[start : start + 3]
        raise IsaLength(
            f"an interchange starts with ISA, found {found!r}", segment_id="ISA", value=found
        )
    if len(text) - start < 4:
        raise IsaLength("the ISA segment is truncated", segment_id="ISA", segment_position=1)
    sep = text[start + 3]
    if sep.isalnum() or sep in _BLANK:
        raise IsaElement(
            f"element separator {sep!r} is alphanumeric or whitespace",
            segment_id="ISA",
            segment_position=1,
        )
    pos = start + 4
    elements: list[str] = []
    for number, width in enumerate(ISA_WIDTHS[:15], start=1):
        end = text.find(sep, pos, pos + 40)
        stop = text.find("\n", pos, pos + 40)
        if end == -1 or (stop != -1 and stop < end):
            raise IsaLength(
                f"no element separator {sep!r} after ISA{number:02d} (expected {width} characters)",
                segment_id="ISA",
                segment_position=1,
                element_position=number,
            )
        value = text[pos:end]
        if len(value) != width:
            raise IsaLength(
                f"ISA{number:02d} {value!r} is {len(value)} characters wide, expected {width}"
                " (fixed width: the delimiters cannot be located)",
                segment_id="ISA",
                segment_position=1,
                element_position=number,
                value=value,
            )
        elements.append(value)
        pos = end + 1
    if pos + 2 > len(text):
        raise IsaLength(
            "the ISA segment is truncated after ISA15",
            segment_id="ISA",
            segment_position=1,
            element_position=16,
        )
    component, terminator = text[pos], text[pos + 1]
    elements.append(component)
    end = pos + 2
    if terminator in " \t":  # trailing blanks, then the newline that ends the segment
        blank_end = len(text) - len(text[pos + 1 :].lstrip(" \t"))
        if text.startswith(("\r", "\n"), blank_end):
            terminator, end = text[blank_end], blank_end + 1
    if terminator == "\r" and text.startswith("\n", end):
        end += 1
    if terminator in _NEWLINES:
        terminator = "\n"
    _check_delimiters(sep, component, terminator, elements[10])
    version = elements[11]
    if version not in VALID_ISA_VERSIONS:
        raise InvalidIsaVersion(
            f"ISA12 {version!r} is not an interchange control version number"
            " (00200..00204, 00300..00307, 00400..00406, 00501..00505 ...)",
            segment_id="ISA",
            segment_position=1,
            element_position=12,
            value=version,
        )
    for number, valid, what in (
        (13, _ascii_digits(elements[12]), "an interchange control number of 9 digits"),
        (14, elements[13] in ("0", "1"), "0 or 1 (acknowledgment requested)"),
        (15, elements[14] in ("P", "T", "I"), "P, T or I (usage indicator)"),
    ):
        if not valid:
            value = elements[number - 1]
            raise IsaElement(
                f"ISA{number:02d} {value!r} is not {what}",
                segment_id="ISA",
                segment_position=1,
                element_position=number,
                value=value,
            )
    repetition = elements[10] if not elements[10].isalnum() else None
    delimiters = Delimiters(sep, component, terminator, repetition)
    return IsaHeader(tuple(elements), delimiters, end)


def _check_delimiters(sep: str, component: str, terminator: str, isa11: str) -> None:
    for number, char in ((16, component), (None, terminator)):
        if char.isalnum() or char == " " or char == sep:
            what = "ISA16 component separator" if number else "segment terminator"
            raise IsaElement(
                f"{what} {char!r} is alphanumeric, a space or the element separator",
                segment_id="ISA",
                segment_position=1,
                element_position=number,
                value=char,
            )
    if component == terminator:
        raise IsaElement(
            "the component separator is also the segment terminator",
            segment_id="ISA",
            segment_position=1,
            element_position=16,
        )


def tokenize(data: bytes | str) -> tuple[Delimiters, list[Segment]]:
    """The interchange's delimiters and every segment (the ISA is segment 1)."""
    text = decode(data)
    isa = read_isa(text)
    d = isa.delimiters
    segments = [Segment("ISA", isa.elements, 1)]
    body = text[isa.end :]
    if d.newline_terminated:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    sep = d.element
    position = 1
    for raw in body.split(d.segment):
        chunk = raw.strip(_BLANK) if d.newline_terminated else raw.lstrip(_BLANK)
        if not chunk:
            continue
        position += 1
        parts = chunk.split(sep)
        segments.append(Segment(parts[0].strip(_BLANK), tuple(parts[1:]), position))
    return d, segments


# --- rendering ------------------------------------------------------------------------------

ELEMENT_CANDIDATES = ("*", "|", "^", "!", "~", "\x1d")
COMPONENT_CANDIDATES = (">", ":", "\\", "`", "\x1f")
SEGMENT_CANDIDATES = ("~", "'", "\x1c", "\x1e")
REPETITION_CANDIDATES = ("^", "{", "}", "\x1f", "\x1e")


def choose_delimiters(
    texts: Iterable[str], *, repetition: bool = False, preferred: Delimiters | None = None
) -> Delimiters:
    """Delimiters none of which occurs in ``texts`` (every element value written): the
    preferred set when it is safe, else the first safe candidate of each kind."""
    used: set[str] = set()
    for text in texts:
        used.update(text)
    if preferred is not None:
        chars = [preferred.element, preferred.component, preferred.segment]
        if preferred.repetition:
            chars.append(preferred.repetition)
        if (
            not used.intersection(chars)
            and len(set(chars)) == len(chars)
            and (preferred.repetition is not None) == repetition
        ):
            return preferred
    taken: set[str] = set()

    def pick(candidates: Sequence[str], kind: str) -> str:
        for char in candidates:
            if char not in used and char not in taken:
                taken.add(char)
                return char
        raise NoSafeDelimiters(
            f"every {kind} candidate ({', '.join(map(repr, candidates))}) occurs in the data"
        )

    element = pick(ELEMENT_CANDIDATES, "element separator")
    segment = pick(SEGMENT_CANDIDATES, "segment terminator")
    component = pick(COMPONENT_CANDIDATES, "component separator")
    rep = pick(REPETITION_CANDIDATES, "repetition separator") if repetition else None
    return Delimiters(element, component, segment, rep)


def serialize(segments: Iterable[Sequence[str]], delimiters: Delimiters, *, newline: bool) -> str:
    """Segments (``[id, e01, e02 ...]``) as text; trailing empty elements are dropped (but the
    fixed-width ISA keeps all 16). ``newline`` adds a line break after each terminator (only
    when the terminator is not itself a newline)."""
    end = delimiters.segment + ("\n" if newline and not delimiters.newline_terminated else "")
    out: list[str] = []
    for segment in segments:
        values = list(segment)
        if values[0] != "ISA":
            while len(values) > 1 and values[-1] == "":
                values.pop()
        out.append(delimiters.element.join(values) + end)
    return "".join(out)
