"""Every regular expression that reads input in the connectors is linear by construction.

Python's ``re`` backtracks, so a pattern can take quadratic (or exponential) time on input made
for it: ``\\d+\\.?\\d*`` on a long run of digits held ``/health`` for 4 s. No test here measures
time; each pattern's structure is checked against three rules that rule backtracking blow-ups
out:

A. no repeat nested in an unbounded repeat (``(a+)+``: exponential);
B. no two unbounded repeats that can match the same character with only optional items
   between them (``\\d+\\.?\\d*``, ``\\s*[\\t\\r\\n]+``: a run can be shared out between them in
   n ways, tried at each of n positions);
C. in a pattern that is searched (not anchored at the start), no unbounded repeat that can
   match the character a match starts with and is followed by something that can fail
   (``<!DOCTYPE[^>\\[]*\\[`` on ``<!DOCTYPE<!DOCTYPE...``: each start scans to the end).

The patterns are found in the source (``re.<function>(literal ...)``), so a new one is checked
without anyone listing it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "medbridge"
READ_INPUT = [*sorted((SRC / "connectors").rglob("*.py")), SRC / "canonical" / "codes.py"]
FUNCTIONS = {
    "compile",
    "match",
    "fullmatch",
    "search",
    "sub",
    "subn",
    "findall",
    "finditer",
    "split",
}
UNBOUNDED = 50  # a repeat allowed more times than this counts as unbounded
ALPHABET = 0x3000  # the characters classes are compared over (ASCII, Latin, spaces, digits)


def _chars(op: Any, av: Any, flags: int, size: int) -> set[int]:
    """The characters one class item matches (of the first ``size``)."""
    if op is C.LITERAL:
        out = {av}
    elif op is C.NOT_LITERAL:
        out = set(range(size)) - {av}
    elif op is C.ANY:
        out = set(range(size))
    elif op is C.RANGE:
        out = set(range(av[0], min(av[1], size - 1) + 1))
    elif op is C.CATEGORY:
        out = {c for c in range(size) if _category(av, chr(c))}
    elif op is C.IN:
        negate = bool(av) and av[0][0] is C.NEGATE
        out = set().union(*(_chars(o, a, flags, size) for o, a in av if o is not C.NEGATE))
        out = set(range(size)) - out if negate else out
    else:
        return set()
    if flags & re.IGNORECASE:
        out |= {ord(chr(c).swapcase()[0]) for c in out if ord(chr(c).swapcase()[0]) < size}
    return out


def _category(name: Any, char: str) -> bool:
    tests = {
        C.CATEGORY_DIGIT: str.isdecimal,
        C.CATEGORY_SPACE: str.isspace,
        C.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    }
    for positive, test in tests.items():
        if name is positive:
            return test(char)
    negated = {C.CATEGORY_NOT_DIGIT: C.CATEGORY_DIGIT, C.CATEGORY_NOT_SPACE: C.CATEGORY_SPACE}
    negated[C.CATEGORY_NOT_WORD] = C.CATEGORY_WORD
    return not _category(negated[name], char) if name in negated else False


class Pattern:
    def __init__(self, source: str | bytes, flags: int = 0) -> None:
        self.source = source
        self.size = 256 if isinstance(source, bytes) else ALPHABET
        parsed = P.parse(source, flags)
        self.flags = parsed.state.flags
        self.items = list(parsed)

    # --- what an item can match ------------------------------------------------------------

    def nullable(self, items: list[Any]) -> bool:
        return all(self._nullable(op, av) for op, av in items)

    def _nullable(self, op: Any, av: Any) -> bool:
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            return av[0] == 0 or self.nullable(list(av[2]))
        if op is C.SUBPATTERN:
            return self.nullable(list(av[-1]))
        if op is C.BRANCH:
            return any(self.nullable(list(b)) for b in av[1])
        return op in (C.AT, C.ASSERT, C.ASSERT_NOT)

    def first(self, items: list[Any]) -> set[int]:
        """Characters a match of ``items`` can start with."""
        out: set[int] = set()
        for op, av in items:
            out |= self._first(op, av)
            if not self._nullable(op, av):
                break
        return out

    def _first(self, op: Any, av: Any) -> set[int]:
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            return self.first(list(av[2]))
        if op is C.SUBPATTERN:
            return self.first(list(av[-1]))
        if op is C.BRANCH:
            return set().union(*(self.first(list(b)) for b in av[1]))
        if op is C.GROUPREF:
            return set(range(self.size))
        return _chars(op, av, self.flags, self.size)

    def consumed(self, items: list[Any]) -> set[int]:
        """Every character ``items`` can consume, anywhere."""
        out: set[int] = set()
        for op, av in items:
            if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
                out |= self.consumed(list(av[2]))
            elif op is C.SUBPATTERN:
                out |= self.consumed(list(av[-1]))
            elif op is C.BRANCH:
                for branch in av[1]:
                    out |= self.consumed(list(branch))
            else:
                out |= _chars(op, av, self.flags, self.size)
        return out

    # --- the three rules ---------------------------------------------------------------------

    def problems(self, searched: bool) -> list[str]:
        found: list[str] = []
        self._walk(self.items, found)
        if searched and not (self.items and self.items[0][0] is C.AT):
            found += self._rule_c(_flatten(self.items))
        return found

    def _walk(self, items: list[Any], found: list[str]) -> None:
        flat = _flatten(items)
        for i, (op, av) in enumerate(flat):
            if _unbounded(op, av):
                if _has_repeat(list(av[2])):
                    found.append("A: a repeat nested in an unbounded repeat")
                mine = self.consumed(list(av[2]))
                for op2, av2 in flat[i + 1 :]:
                    if _unbounded(op2, av2) and mine & self.first(list(av2[2])):
                        found.append("B: two unbounded repeats can share a run of characters")
                        break
                    if not self._nullable(op2, av2):
                        break
            for child in _children(op, av):
                self._walk(child, found)

    def _rule_c(self, flat: list[Any]) -> list[str]:
        start = self.first(flat)
        for i, (op, av) in enumerate(flat):
            overlaps = _unbounded(op, av) and self.consumed(list(av[2])) & start
            if overlaps and not self.nullable(flat[i + 1 :]):
                return ["C: a searched pattern rescans from every start"]
        return []


def _unbounded(op: Any, av: Any) -> bool:
    return op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[1] > UNBOUNDED


def _has_repeat(items: list[Any]) -> bool:
    for op, av in items:
        if op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[1] > 1:
            return True
        if any(_has_repeat(child) for child in _children(op, av)):
            return True
    return False


def _children(op: Any, av: Any) -> list[list[Any]]:
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
        return [list(av[2])]
    if op is C.SUBPATTERN:
        return [list(av[-1])]
    if op is C.BRANCH:
        return [list(b) for b in av[1]]
    return []


def _flatten(items: list[Any]) -> list[Any]:
    """Groups opened into the sequence around them (a repeat at the end of a group meets the
    one after the group)."""
    out: list[Any] = []
    for op, av in items:
        if op is C.SUBPATTERN:
            out += _flatten(list(av[-1]))
        else:
            out.append((op, av))
    return out


def problems(source: str | bytes, *, searched: bool, flags: int = 0) -> list[str]:
    return Pattern(source, flags).problems(searched)


# --- the patterns in the source ------------------------------------------------------------


def _literal(node: ast.expr) -> str | bytes | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return node.value
    if isinstance(node, ast.JoinedStr):  # rf"^{re.escape(X)},(\d+)$": the literal parts
        parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
        return "x".join(str(p) for p in parts)
    return None


def _flags(call: ast.Call) -> int:
    flags = 0
    for node in ast.walk(call):
        if isinstance(node, ast.Attribute) and node.attr in ("IGNORECASE", "I"):
            flags |= re.IGNORECASE
    return flags


def patterns_in_source() -> list[tuple[str, str | bytes, str, int]]:
    """(where, pattern, function, flags) of every ``re.<function>(literal, ...)``."""
    found = []
    for path in READ_INPUT:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            func = call.func
            if not (isinstance(func.value, ast.Name) and func.value.id == "re"):
                continue
            if func.attr not in FUNCTIONS or not call.args:
                continue
            source = _literal(call.args[0])
            if source is not None:
                where = f"{path.relative_to(SRC)}:{call.lineno}"
                found.append((where, source, func.attr, _flags(call)))
    return found


FOUND = patterns_in_source()


def test_the_source_scan_finds_the_patterns_it_must_check() -> None:
    where = {w.split(":")[0] for w, *_ in FOUND}
    assert {"connectors/x12/mapping/common.py", "connectors/cxml/safexml.py"} <= where
    assert len(FOUND) >= 15


@pytest.mark.parametrize(("where", "source", "function", "flags"), FOUND, ids=[f[0] for f in FOUND])
def test_every_pattern_on_input_is_linear_by_construction(
    where: str, source: str | bytes, function: str, flags: int
) -> None:
    # a compiled pattern may be searched wherever it is used: checked as searched
    searched = function not in ("match", "fullmatch")
    assert problems(source, searched=searched, flags=flags) == [], f"{where}: {source!r}"


# --- the rules catch what they must (so that the test above can fail) ------------------------


@pytest.mark.parametrize(
    ("source", "searched", "rule"),
    [
        (r"^-?(\d+\.?\d*|\.\d+)$", False, "B"),  # the X12 number pattern of issue 15
        (r"\s*[\t\r\n]+\s*", True, "B"),  # cXML's whitespace folding before the fix
        (rb"<!DOCTYPE[^>\[]*\[", True, "C"),  # the DOCTYPE scan before the fix
        (r"(regex\.)\s*'[^']*'\s*$", True, "C"),  # FHIR's redaction before the fix
        (r"^(a+)+$", False, "A"),
        (r"^(\w+\s?)*$", False, "A"),
        (r"(\d+)(\d+)x", False, "B"),
    ],
)
def test_the_rules_refuse_the_superlinear_patterns(
    source: str | bytes, searched: bool, rule: str
) -> None:
    found = problems(source, searched=searched)
    assert any(p.startswith(rule) for p in found), found


@pytest.mark.parametrize(
    "source",
    [
        r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)",
        r"\s+",
        rb"<!DOCTYPE[^<>\[]*\[",
        r"\(([0-9]{2,4})\)([^(]*)",
        r"([0-9]{4})([0-9]{2})?([0-9]{2})?(\.[0-9]{1,4})?([+-][0-9]{4})?",
    ],
)
def test_the_rules_accept_the_linear_rewrites(source: str | bytes) -> None:
    assert problems(source, searched=True) == []
