"""Our ER7 parser (``medbridge.connectors.hl7v2.codec``) against python-hl7 and hl7apy.

Both libraries serve as oracles; neither is on our hot path (../shared/LIBRARIES.md). Both need
CR segment separators, so every text is normalised first (``to_cr``); our parser takes CR, LF
and CRLF as they come, and is given the file as it is.

- Every sample (../shared/samples/hl7v2) and fixture (tests/fixtures/hl7v2): each segment's
  name, field count, raw fields and every field/repetition/component/subcomponent value
  equal python-hl7's (python-hl7 keeps escapes raw; its own ``unescape`` gives the value), and
  every non-empty value equals hl7apy's (whose typed leaves are compared as hl7apy's types).
- Generated messages (hypothesis): random segments of random printable values without the
  delimiters, with escape sequences inserted (of each delimiter, hex, formatting), under the
  standard and random delimiter sets, CR, LF or CRLF separated, compared with python-hl7
  field by field (only a plain space as whitespace: python-hl7 strips any Unicode space at
  the end of a message, we strip only ASCII ones).
- Round trip: ``escape`` then ``render`` then ``parse`` gives every value back.
- Errors: no MSH, bad delimiters, a bad segment name each raise Hl7ParseError naming the segment.

Numbering: MSH-1 is the field separator, MSH-2 the encoding characters, in all three parsers
(python-hl7 inserts MSH-1 as ``segment[1]``; hl7apy names it ``MSH_1``). Formatting escapes are
a policy, not parsing: we turn ``\\.br\\`` into LF and drop ``\\H\\``/``\\N\\``, where python-hl7
defaults to CR and ``_``; its ``app_map`` is set to our policy (``HL7_FORMATTING``), and
``test_formatting_escapes_follow_our_policy`` pins the policy itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hl7
import pytest
from hl7apy.base_datatypes import TextualDataType
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.factories import datatype_factory
from hl7apy.parser import parse_message, parse_segment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medbridge.connectors.hl7v2.codec import (
    DEFAULT_ENCODING,
    Encoding,
    Segment,
    decode,
    escape,
    parse,
    render,
    unescape,
)
from medbridge.connectors.hl7v2.errors import Hl7ParseError
from paths import FIXTURES, SAMPLES

FILES = sorted((SAMPLES / "hl7v2").glob("*.hl7")) + sorted((FIXTURES / "hl7v2").glob("*.hl7"))
IDS = [p.name for p in FILES]
HL7_FORMATTING = {".br": "\n", "H": "", "N": ""}
HL7APY_FALLBACK_VERSION = "2.8"  # per-segment parsing when hl7apy refuses the message's version

Tree = dict[int, list[list[list[str]]]]
"""field number -> repetitions -> components -> subcomponents (values, unescaped)."""


def to_cr(text: str) -> str:
    """What both libraries need: CR between segments (they read LF as part of a segment)."""
    return text.replace("\r\n", "\r").replace("\n", "\r")


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


# --- our parser, as a tree --------------------------------------------------------------------


def our_tree(segment: Segment) -> Tree:
    """Every value through ``Segment.get``; the shape from the raw field (delimiters cannot
    occur inside a value, so counting them gives the number of parts)."""
    enc = segment.encoding
    tree: Tree = {}
    for number in range(1, len(segment) + 1):
        if segment.name == "MSH" and number <= 2:
            tree[number] = [[[segment.get(number)]]]
            continue
        reps: list[list[list[str]]] = []
        for r, rep in enumerate(segment.repetitions(number)):
            comps = rep.split(enc.component)
            assert len(segment.components(number, r)) == len(comps)
            reps.append(
                [
                    [
                        segment.get(number, c, s, r)
                        for s in range(1, comp.count(enc.subcomponent) + 2)
                    ]
                    for c, comp in enumerate(comps, start=1)
                ]
            )
        tree[number] = reps
    return tree


def check_out_of_range(segment: Segment, tree: Tree) -> None:
    """One past the last repetition, component and subcomponent reads as empty."""
    for number, reps in tree.items():
        assert segment.get(number, 1, 1, len(reps)) == ""
        if segment.name == "MSH" and number <= 2:
            continue
        for r, comps in enumerate(reps):
            assert segment.get(number, len(comps) + 1, 1, r) == ""
            for c, subs in enumerate(comps, start=1):
                assert segment.get(number, c, len(subs) + 1, r) == ""
    assert segment.raw(len(segment) + 1) == ""
    assert segment.repetitions(len(segment) + 1) == []


# --- python-hl7, as a tree --------------------------------------------------------------------


def hl7_components(segment: hl7.Segment, number: int) -> list[list[Any]]:
    """A field's repetitions as lists of python-hl7 components (``str`` or ``Component``).
    python-hl7 nests only as deep as a field's delimiters go: a field without any is
    ``Field([str])``, a repetition without components ``Repetition([str])``, a component
    without subcomponents ``Component([str])``."""
    field = segment[number]
    if str(field) == "":
        return []
    if len(field) == 1 and isinstance(field[0], str):
        return [[field[0]]]
    return [[rep] if isinstance(rep, str) else list(rep) for rep in field]


def hl7_tree(message: hl7.Message, segment: hl7.Segment) -> Tree:
    def value(raw: str) -> str:
        return str(message.unescape(raw, HL7_FORMATTING))

    tree: Tree = {}
    for number in range(1, len(segment)):
        if str(segment[0]) == "MSH" and number <= 2:
            tree[number] = [[[str(segment[number])]]]
            continue
        tree[number] = [
            [
                [value(comp)] if isinstance(comp, str) else [value(str(sub)) for sub in comp]
                for comp in rep
            ]
            for rep in hl7_components(segment, number)
        ]
    return tree


def assert_same_as_python_hl7(text: str, ours_text: str | None = None) -> None:
    ours = parse(ours_text if ours_text is not None else text)
    oracle = hl7.parse(to_cr(text))
    assert [s.name for s in ours.segments] == [str(s[0]) for s in oracle]
    for position, (mine, theirs) in enumerate(zip(ours.segments, oracle, strict=True), 1):
        where = f"segment {position} ({mine.name})"
        assert len(mine) == len(theirs) - 1, where
        for number in range(1, len(mine) + 1):
            assert mine.raw(number) == str(theirs[number]), f"{where}-{number} raw"
            if mine.name == "MSH" and number <= 2:
                continue
            reps = hl7_components(theirs, number)
            raw = [[str(c) for c in rep] for rep in reps]
            assert mine.repetitions(number) == [ours.encoding.component.join(r) for r in raw]
            for r, comps in enumerate(raw):
                expected = [str(oracle.unescape(c, HL7_FORMATTING)) for c in comps]
                assert mine.components(number, r) == expected, f"{where}-{number}"
        tree = our_tree(mine)
        assert tree == hl7_tree(oracle, theirs), where
        check_out_of_range(mine, tree)


# --- hl7apy, as sparse leaves -----------------------------------------------------------------

Leaves = dict[tuple[int, int, int, int], Any]
"""(field, repetition from 0, component, subcomponent) -> value, for non-blank values only:
hl7apy leaves out empty components of typed fields (and blank ones), so only the values that
are there can be compared."""

_INDEX = re.compile(r"_(\d+)$")


def _index(name: str | None, position: int) -> int:
    """hl7apy names a typed part ``CX_3`` (its number) and a primitive one ``ST`` (its place)."""
    match = _INDEX.search(name or "")
    return int(match.group(1)) if match else position


def hl7apy_segments(text: str) -> list[tuple[Any, str]]:
    """hl7apy's segments, each with its line. A version hl7apy does not know (2.9) is parsed
    segment by segment as ``HL7APY_FALLBACK_VERSION``."""
    lines = [line for line in to_cr(text).strip("\r").split("\r") if line]
    try:
        message = parse_message(
            "\r".join(lines), find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT
        )
        segments = list(message.children)
    except HL7apyException:
        segments = [
            parse_segment(
                line, version=HL7APY_FALLBACK_VERSION, validation_level=VALIDATION_LEVEL.TOLERANT
            )
            for line in lines
        ]
    return list(zip(segments, lines, strict=True))


def hl7apy_fields(segment: Any, line: str, encoding: Encoding) -> list[tuple[int, int, Any]]:
    """(field number, repetition, hl7apy field) for every field hl7apy kept (the non-blank ones).

    hl7apy names a field ``PID_3``, but leaves unnamed those its version does not define (EVN-1,
    withdrawn in 2.8; PRT-16 and on, OBX-26 and on): they come in order, one per non-blank
    repetition, so they are numbered here from the line split on the field separator."""
    named = [f for f in segment.children if f.name]
    unnamed = [f for f in segment.children if not f.name]
    out: list[tuple[int, int, Any]] = []
    seen: dict[int, int] = {}
    for field in named:
        number = _index(field.name, 0)
        seen[number] = seen.get(number, -1) + 1
        out.append((number, seen[number], field))
    if unnamed:
        raw = line.split(encoding.field)
        offset = 1 if segment.name == "MSH" else 0
        slots = [
            (number + offset, r)
            for number, value in enumerate(raw)
            if number and value.strip() and number + offset not in seen
            for r, rep in enumerate(value.split(encoding.repetition))
        ]
        assert len(slots) == len(unnamed), f"{segment.name}: cannot number hl7apy's fields"
        out += [(n, r, f) for (n, r), f in zip(slots, unnamed, strict=True)]
    return out


def hl7apy_leaves(segment: Any, line: str, encoding: Encoding) -> Leaves:
    leaves: Leaves = {}
    for number, r, field in hl7apy_fields(segment, line, encoding):
        for c, component in enumerate(field.children, start=1):
            for s, sub in enumerate(component.children, start=1):
                key = (number, r, _index(component.name, c), _index(sub.name, s))
                value = sub.value
                if isinstance(value, TextualDataType | str):
                    raw = value.value if isinstance(value, TextualDataType) else value
                    if segment.name == "MSH" and number <= 2:
                        leaves[key] = raw
                    elif raw.strip():
                        leaves[key] = unescape_oracle(raw, encoding)
                elif value is not None:  # a number, date or time: compare as hl7apy's type
                    leaves[key] = ("typed", sub.datatype, value.to_er7())
    return leaves


def our_leaves(tree: Tree, like: Leaves, segment: Any) -> Leaves:
    """Our non-blank values; where hl7apy has a typed leaf, ours read as that same type."""
    leaves: Leaves = {}
    for number, reps in tree.items():
        for r, comps in enumerate(reps):
            for c, subs in enumerate(comps, start=1):
                for s, value in enumerate(subs, start=1):
                    key = (number, r, c, s)
                    if not value.strip():
                        continue
                    theirs = like.get(key)
                    if isinstance(theirs, tuple):
                        typed = datatype_factory(
                            theirs[1],
                            value,
                            version=segment.version,
                            validation_level=VALIDATION_LEVEL.TOLERANT,
                        )
                        leaves[key] = ("typed", theirs[1], typed.to_er7())
                    else:
                        leaves[key] = value
    return leaves


def unescape_oracle(raw: str, encoding: Encoding) -> str:
    """python-hl7's unescape, independent of ours, for hl7apy's raw leaves."""
    container = hl7.Message(
        separators="\r"
        + encoding.field
        + encoding.repetition
        + encoding.component
        + encoding.subcomponent,
        esc=encoding.escape,
    )
    return str(container.unescape(raw, HL7_FORMATTING))


# --- the samples and fixtures -----------------------------------------------------------------


def test_there_are_samples_and_fixtures() -> None:
    assert len([p for p in FILES if p.is_relative_to(SAMPLES)]) >= 14
    assert len([p for p in FILES if p.is_relative_to(FIXTURES)]) >= 8


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_value_of_every_file_equals_python_hl7(path: Path) -> None:
    text = read(path)
    assert_same_as_python_hl7(text, ours_text=text)  # ours reads LF and CRLF as they are


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_value_of_every_file_equals_hl7apy(path: Path) -> None:
    text = read(path)
    ours = parse(text)
    theirs = hl7apy_segments(text)
    assert [s.name for s in ours.segments] == [s.name for s, _ in theirs]
    for position, (mine, (segment, line)) in enumerate(zip(ours.segments, theirs, strict=True), 1):
        expected = hl7apy_leaves(segment, line, ours.encoding)
        assert expected, f"segment {position} ({mine.name}): hl7apy found no values"
        actual = our_leaves(our_tree(mine), expected, segment)
        assert actual == expected, f"segment {position} ({mine.name})"


def test_lf_crlf_and_cr_files_parse_alike() -> None:
    for path in FILES:
        text = to_cr(read(path))
        cr = [our_tree(s) for s in parse(text).segments]
        assert [our_tree(s) for s in parse(text.replace("\r", "\n")).segments] == cr
        assert [our_tree(s) for s in parse(text.replace("\r", "\r\n")).segments] == cr


def test_the_sample_escape_is_unescaped() -> None:
    """The FHIR-Converter samples carry one ``\\T\\`` (an escaped subcomponent separator)."""
    found = []
    for path in FILES:
        for segment in parse(read(path)).segments:
            for number in range(1, len(segment) + 1):
                if "\\T\\" in segment.raw(number):
                    found.append((segment, number))
    assert found
    for segment, number in found:
        whole = segment.components(number)
        assert any("&" in c for c in whole)
        assert all("\\T\\" not in c for c in whole)


# --- generated messages -----------------------------------------------------------------------

DELIMITER_CHOICES = "|^~\\&#!$%*+/:;?@`'=<>"
NON_MSH_NAMES = st.from_regex(r"\A[A-Z][A-Z0-9]{2}\Z").filter(
    lambda n: n not in ("MSH", "BHS", "FHS", "BTS", "FTS")
)


@st.composite
def encodings(draw: st.DrawFn) -> Encoding:
    if draw(st.booleans()):
        return DEFAULT_ENCODING
    chars = draw(st.permutations(DELIMITER_CHOICES))[:5]
    return Encoding(*chars)


def fields(enc: Encoding) -> st.SearchStrategy[str]:
    """Printable text without the delimiters, escape sequences (of the delimiters, hex, and
    formatting), and repetition, component and subcomponent separators, in any order."""
    delimiters = {enc.field, enc.component, enc.repetition, enc.escape, enc.subcomponent}
    alphabet = st.characters(
        codec="utf-8",
        categories=("L", "N", "P", "S"),
        include_characters=" ",  # other spaces: python-hl7 strips any at the end of a message
        exclude_characters="".join(delimiters),
    )
    e = enc.escape
    escapes = (
        [f"{e}{code}{e}" for code in "FSTRE"]
        + [f"{e}X{ord(ch):02X}{e}" for ch in "Az0 ~&^|"]
        + [f"{e}.br{e}", f"{e}H{e}", f"{e}N{e}"]
    )
    token = st.one_of(
        st.text(alphabet, min_size=1, max_size=6),
        st.sampled_from(escapes),
        st.sampled_from([enc.component, enc.subcomponent, enc.repetition]),
    )
    return st.lists(token, max_size=8).map("".join)


@st.composite
def messages(draw: st.DrawFn) -> str:
    enc = draw(encodings())
    # MSH-3 not empty: python-hl7 drops an empty MSH-3 when nothing follows it
    header = ["APP", *draw(st.lists(fields(enc), max_size=11))]
    lines = ["MSH" + enc.field + enc.msh2 + enc.field + enc.field.join(header)]
    for _ in range(draw(st.integers(0, 5))):
        name = draw(NON_MSH_NAMES)
        lines.append(enc.field.join([name, *draw(st.lists(fields(enc), max_size=10))]))
    separator = draw(st.sampled_from(["\r", "\n", "\r\n"]))
    return separator.join(lines) + draw(st.sampled_from(["", separator]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_generated_messages_equal_python_hl7_field_by_field(text: str) -> None:
    assert_same_as_python_hl7(text, ours_text=text)


# --- escape: round trip -----------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(value=ANY_TEXT, enc=encodings())
def test_escape_then_parse_gives_the_value_back(value: str, enc: Encoding) -> None:
    escaped = escape(value, enc)
    for delimiter in (enc.field, enc.component, enc.repetition, enc.subcomponent, "\r", "\n"):
        assert delimiter not in escaped
    assert unescape(escaped, enc) == value
    text = render([["MSH", "APP", "FAC"], ["ZZZ", escaped, "END"]], enc)
    segment = parse(text).segments[1]
    assert segment.get(1) == value
    assert segment.components(1) == ([value] if value else [])
    assert segment.get(2) == "END"
    oracle = hl7.parse(text)  # python-hl7 reads our escapes back the same
    assert oracle.unescape(str(oracle.segment("ZZZ")[1])) == value


def test_escape_covers_each_delimiter_and_line_breaks() -> None:
    assert escape("a|b^c~d\\e&f\rg\nh") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\X0D\\g\\X0A\\h"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("line one\\.br\\line two", "line one\nline two"),
        ("\\H\\bold\\N\\ plain", "bold plain"),
        ("\\X4142\\", "AB"),
        ("\\Z123\\ kept", "\\Z123\\ kept"),  # an unknown (locally defined) escape stays as sent
        ("trailing \\", "trailing \\"),
    ],
)
def test_formatting_escapes_follow_our_policy(raw: str, value: str) -> None:
    assert unescape(raw, DEFAULT_ENCODING) == value


# --- errors -----------------------------------------------------------------------------------

MSH_TAIL = "|PYXIS|H1|MEDBRIDGE|NET|20261121120000+0000||RDS^O13^RDS_O13|CAB0001|P|2.5.1"


@pytest.mark.parametrize(
    ("text", "segment", "fragment"),
    [
        ("", "MSH", "MSH"),
        ("\r\n", "MSH", "MSH"),
        ("PID|1||MRN-1\rRXD|1|X^y^NDC", "MSH", "MSH"),
        ("MSA|AA|CAB0001", "MSH", "MSH"),
        ("MSH|^~", "MSH", "delimiters"),
        ("MSH|^~\\" + MSH_TAIL, "MSH", "delimiters"),  # three encoding characters
        ("MSH|^^\\&" + MSH_TAIL, "MSH", "delimiters"),  # component = repetition
        ("MSH|^~\\|" + MSH_TAIL, "MSH", "delimiters"),  # MSH-2 holds the field separator
        ("MSHA^~\\&" + MSH_TAIL.replace("|", "A"), "MSH", "delimiters"),  # a letter separates
        ("MSH" + MSH_TAIL, "MSH", "delimiters"),  # no MSH-2: MSH-3 "PYXIS" is not delimiters
        ("MSH ^~\\& A B C D 20261121", "MSH", "delimiters"),  # a space separates
        ("MSH|^~\\&" + MSH_TAIL + "\rpid|1", "pid", "'pid'"),
        ("MSH|^~\\&" + MSH_TAIL + "\rPID|1\rR1|x", "R1", "segment 3"),
        ("MSH|^~\\&" + MSH_TAIL + "\rPID|1\rRX-|x", "RX-", "'RX-'"),
        ("MSH|^~\\&" + MSH_TAIL + "\r|1|2", "?", "segment 2"),
    ],
)
def test_malformed_messages_raise_a_parse_error_naming_the_segment(
    text: str, segment: str, fragment: str
) -> None:
    with pytest.raises(Hl7ParseError) as caught:
        parse(text)
    assert caught.value.segment == segment
    assert fragment in str(caught.value)
    assert caught.value.ack_code == "AR"


def test_a_bad_segment_name_is_reported_by_its_position() -> None:
    with pytest.raises(Hl7ParseError) as caught:
        parse("MSH|^~\\&" + MSH_TAIL + "\nPID|1\nORC|RE\nrxd|1|X^y^NDC\n")
    assert caught.value.segment == "rxd"
    assert "segment 4" in str(caught.value)


def test_the_valid_delimiter_sets_above_are_accepted() -> None:
    """The counterpart of the refusals: unusual but valid sets, and MSH-2 with the v2.7+
    truncation character."""
    for header in ("MSH|^~\\&", "MSH#$%*@", "MSH|^~\\&#"):
        sep = header[3]
        message = parse(header + MSH_TAIL.replace("|", sep) + "\rPID" + sep + "1")
        assert message.msh.get(1) == sep
        assert message.msh.get(2) == header[4:]
        assert message.msh.get(3) == "PYXIS"


def test_a_byte_order_mark_before_msh_is_tolerated() -> None:
    message = parse("\ufeffMSH|^~\\&|PYXIS|H1|||20261121||RDS^O13|C1|P|2.5.1\rRXD|1|X\r")
    assert message.msh.get(10) == "C1"
    assert decode("\ufeffMSH|^~\\&|A".encode()).startswith(
        "\ufeff"
    )  # decode keeps it; parse drops it
