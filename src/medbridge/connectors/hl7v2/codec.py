"""HL7 v2 ER7 (pipe-and-hat) encoding: parse, read fields, escape, render.

Written here rather than taken from python-hl7 or hl7apy for speed, measured on this machine
(``make bench`` prints both): python-hl7 parses ~2,100 and hl7apy ~78 messages/s
(../shared/LIBRARIES.md), both build an object per element, and both treat LF-separated input
as a single MSH segment. This parser splits lazily: a segment keeps its raw fields and splits
components only when asked. It is checked against python-hl7 and hl7apy as oracles on the
samples and on generated messages (tests/unit/test_hl7_codec.py).

Segment separators CR, LF and CRLF are all accepted. Field numbering follows the standard:
``MSH-1`` is the field separator itself and ``MSH-2`` the encoding characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from medbridge.connectors.hl7v2.errors import ContentError, Hl7ParseError

_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")


@dataclass(frozen=True)
class Encoding:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def msh2(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


DEFAULT_ENCODING = Encoding()


class Segment:
    __slots__ = ("_fields", "encoding", "name")

    def __init__(self, name: str, fields: list[str], encoding: Encoding) -> None:
        self.name, self._fields, self.encoding = name, fields, encoding

    def raw(self, number: int) -> str:
        """Field ``number`` as sent (escapes and all); "" when absent."""
        index = number - 1 if self.name == "MSH" else number
        if self.name == "MSH" and number == 1:
            return self.encoding.field
        return self._fields[index] if 0 < index < len(self._fields) else ""

    def repetitions(self, number: int) -> list[str]:
        raw = self.raw(number)
        if self.name == "MSH" and number == 2:
            return [raw]
        return raw.split(self.encoding.repetition) if raw else []

    def get(
        self, number: int, component: int = 1, subcomponent: int = 1, repetition: int = 0
    ) -> str:
        """One value, unescaped; "" when absent."""
        reps = self.repetitions(number)
        if repetition >= len(reps):
            return ""
        value = reps[repetition]
        if self.name == "MSH" and number <= 2:
            return value
        components = value.split(self.encoding.component)
        if component > len(components):
            return ""
        subs = components[component - 1].split(self.encoding.subcomponent)
        if subcomponent > len(subs):
            return ""
        return unescape(subs[subcomponent - 1], self.encoding)

    def components(self, number: int, repetition: int = 0) -> list[str]:
        reps = self.repetitions(number)
        if repetition >= len(reps):
            return []
        return [unescape(c, self.encoding) for c in reps[repetition].split(self.encoding.component)]

    def __len__(self) -> int:
        """The number of the last field present."""
        return len(self._fields) if self.name == "MSH" else len(self._fields) - 1

    def __repr__(self) -> str:
        return f"Segment({self.name}, {len(self)} fields)"


class Message:
    __slots__ = ("encoding", "segments")

    def __init__(self, segments: list[Segment], encoding: Encoding) -> None:
        self.segments, self.encoding = segments, encoding

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)


def decode(raw: bytes) -> str:
    """Bytes to text: UTF-8, else ISO-8859-1 (which every byte sequence is)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse(text: str) -> Message:
    """Parse an ER7 message; raise Hl7ParseError naming the segment at fault."""
    text = text.lstrip("\ufeff")  # a byte-order mark some senders put first
    lines = [line for line in _SEGMENT_SPLIT.split(text.strip("\r\n\x0b\x1c ")) if line.strip()]
    if not lines or not lines[0].startswith("MSH"):
        raise Hl7ParseError("message does not start with an MSH segment", segment="MSH")
    header = lines[0]
    if len(header) < 8:
        raise Hl7ParseError("MSH is too short to hold its delimiters", segment="MSH", field=2)
    separator = header[3]
    chars = header[4:].split(separator, 1)[0]
    delimiters = separator + chars[:4]
    if (
        len(chars) < 4
        or len(set(delimiters)) != 5
        or any(c.isalnum() or c.isspace() for c in delimiters)  # e.g. MSH-2 left out
    ):
        raise Hl7ParseError(
            "MSH-1/MSH-2 do not declare five distinct delimiters", segment="MSH", field=2
        )
    encoding = Encoding(separator, chars[0], chars[1], chars[2], chars[3])
    segments = []
    for number, line in enumerate(lines, start=1):
        fields = line.split(separator)
        name = fields[0].strip()
        if not _SEGMENT_NAME.match(name):
            raise Hl7ParseError(
                f"segment {number} has no valid name ({name[:8]!r})", segment=name[:3] or "?"
            )
        segments.append(Segment(name, fields, encoding))
    return Message(segments, encoding)


_ESCAPES = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition", "E": "escape"}


def unescape(value: str, encoding: Encoding) -> str:
    esc = encoding.escape
    if esc not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        end = value.find(esc, i + 1) if char == esc else -1
        if end == -1:
            out.append(char)
            i += 1
            continue
        code = value[i + 1 : end]
        if code in _ESCAPES:
            out.append(getattr(encoding, _ESCAPES[code]))
        elif code.startswith("X") and len(code) % 2 == 1:
            try:
                out.append(bytes.fromhex(code[1:]).decode("latin-1"))
            except ValueError:
                out.append(value[i : end + 1])
        elif code in (".br", "H", "N"):  # formatting: line break, highlight on/off
            out.append("\n" if code == ".br" else "")
        else:
            out.append(value[i : end + 1])
        i = end + 1
    return "".join(out)


def escape(value: str, encoding: Encoding = DEFAULT_ENCODING) -> str:
    out = value.replace(encoding.escape, f"{encoding.escape}E{encoding.escape}")
    for attribute, code in (
        ("field", "F"),
        ("component", "S"),
        ("subcomponent", "T"),
        ("repetition", "R"),
    ):
        out = out.replace(getattr(encoding, attribute), f"{encoding.escape}{code}{encoding.escape}")
    return out.replace("\r", f"{encoding.escape}X0D{encoding.escape}").replace(
        "\n", f"{encoding.escape}X0A{encoding.escape}"
    )


def render(segments: list[list[str]], encoding: Encoding = DEFAULT_ENCODING) -> str:
    """Segments given as [name, field1, field2, ...] (already escaped) -> ER7 with CR."""
    lines = []
    for fields in segments:
        if fields[0] == "MSH":
            lines.append(
                "MSH"
                + encoding.field
                + encoding.msh2
                + encoding.field
                + encoding.field.join(fields[1:])
            )
        else:
            lines.append(encoding.field.join(fields))
    return "\r".join(lines) + "\r"


_TS = re.compile(
    r"([0-9]{4})([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?(\.[0-9]{1,4})?"
    r"([+-][0-9]{4})?"
)
"""Every repeat bounded, so linear; ASCII digits only (``\\d`` would take any script's)."""


def parse_ts(value: str, where: tuple[str, int], default_tz: timezone = UTC) -> datetime:
    """An HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as an aware datetime."""
    match = _TS.fullmatch(value.strip())
    if not match:
        raise ContentError(f"{value!r} is not an HL7 date/time", segment=where[0], field=where[1])
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    tz = default_tz
    if offset:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 23 or minutes > 59:  # real offsets run from -1200 to +1400
            raise ContentError(
                f"{value!r}: time-zone offset {offset} is not -2359 .. +2359",
                segment=where[0],
                field=where[1],
            )
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int(float(fraction) * 1_000_000) if fraction else 0,
            tzinfo=tz,
        )
    except ValueError as error:
        raise ContentError(f"{value!r}: {error}", segment=where[0], field=where[1]) from error


def parse_date(value: str, where: tuple[str, int]) -> date:
    return parse_ts(value, where).date()
