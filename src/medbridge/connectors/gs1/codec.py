"""GS1 element strings from a receiving scan -> ``Gs1Scan``, using biip.

Accepted forms:

* raw, as a scanner transmits it: ``0107032069804988100329<GS>15210526``, optionally behind a
  symbology identifier (``]d2`` DataMatrix, ``]C1`` GS1-128, ``]Q3`` ...) and with a
  configured keyboard-wedge substitute (``|``) instead of GS; ``]E0``/``]E4``/``]I1``
  (EAN/UPC/ITF-14) carry a bare GTIN, read as (01);
* human-readable ``(01)07032069804988(10)0329(15)210526``, where the parentheses fix every
  boundary.

Missing separators. A variable-length element (lot 10, serial 21 ...) must be followed by GS
unless it is last. When it is not, the conformant (greedy) parse runs it to the next GS, to
the end, or to its maximum length. If that element's value, from some inner position, also
reads as a complete run of further element strings starting with an AI a receiving scan
usually carries (``SUSPECT_AIS``) that the scan does not already hold, the scan is
*ambiguous*: ``(10)032915210526`` might be ``(10)0329 (15)210526``. Likewise when the greedy
parse fails but such a re-split would succeed (serial swallowing lot and expiry). What then
happens is ``Gs1Config.missing_separator``: refuse (default) or take the greedy reading.
A lot that merely contains e.g. ``21`` followed by characters is flagged too: that is the
price of never guessing a lot.

Dates: biip reads YYMMDD with the GS1 sliding century window (relative to the current year)
and DD=00 as the last day of the month.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType

from biip import ParseConfig, ParseError
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_element_strings import GS1ElementString
from biip.symbology import GS1Symbology, SymbologyIdentifier

from medbridge.connectors.gs1.config import GS, Gs1Config, MissingSeparatorPolicy
from medbridge.connectors.gs1.errors import (
    AmbiguousWithoutSeparator,
    BadCheckDigit,
    Gs1Error,
    InvalidDate,
    LeftoverData,
    Malformed,
)

SUSPECT_AIS = ("00", "01", "10", "11", "15", "17", "21", "30", "37")
"""AIs whose appearance inside an unterminated variable-length value makes a scan ambiguous."""

MAX_SCAN_CHARS = 8192
"""Bound on a scan: the largest GS1 symbol (a QR Code) holds 7,089 digits. Longer input is
not a scan, and walking it costs quadratic time in biip."""
_BIIP = ParseConfig(separator_chars=(GS,))
_HRI = re.compile(r"\(([0-9]{2,4})\)([^(]*)")
"""Linear: the value's class excludes the ``(`` every match starts with; ASCII digits only."""
_BIIP_ERRORS = (ParseError, LookupError, ValueError)
"""What biip raises: its ``ParseError``, and on some inputs (``"]"``) an ``IndexError`` or a
``ValueError`` of its own making; translated here into ``Malformed``, never let out."""


@dataclass(frozen=True)
class Gs1Scan:
    """One decoded scan. ``other`` holds every element string not mapped to a field
    (AI -> value); ``ambiguities`` the other readings a greedy parse accepted."""

    raw: str
    elements: tuple[tuple[str, str], ...]
    symbology: str | None = None
    gtin: str | None = None
    """GTIN-14 (check digit verified)."""
    sscc: str | None = None
    lot: str | None = None
    expiry: date | None = None
    best_before: date | None = None
    production_date: date | None = None
    serial: str | None = None
    quantity: int | None = None
    """(30) variable count or (37) count of trade items."""
    other: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ambiguities: tuple[str, ...] = ()

    @property
    def hri(self) -> str:
        return "".join(f"({ai}){value}" for ai, value in self.elements)


@dataclass(frozen=True)
class _Element:
    es: GS1ElementString
    after: str  # everything after the element, before any GS is skipped
    terminated: bool  # a GS follows


def parse(scan: str, config: Gs1Config | None = None) -> Gs1Scan:
    """Decode one scan; ``Gs1Error`` (see ``errors``) if it must be refused."""
    config = config or Gs1Config()
    if len(scan) > MAX_SCAN_CHARS:
        raise Malformed(f"a scan of {len(scan):,} characters: no GS1 symbol holds that many")
    data = scan.strip()  # CR/LF from the wedge; GS counts as whitespace to Python as well
    if not data:
        raise Malformed("empty scan")
    if data.startswith("("):
        return _build(scan, None, _hri(data), ())
    symbology: str | None = None
    if data.startswith("]"):
        symbology, data = _symbology(data)
    for char in config.separator_substitutes:
        data = data.replace(char, GS)
    data = data.strip(GS)
    elements = _walk(data, check=True)
    ambiguities = tuple(a for e in elements for a in _other_readings(e, elements))
    if ambiguities and config.missing_separator is MissingSeparatorPolicy.REFUSE:
        raise AmbiguousWithoutSeparator(
            f"missing group separator: also reads as {ambiguities[0]}; rescan or key the line"
        )
    return _build(scan, symbology, elements, ambiguities)


def _symbology(data: str) -> tuple[str, str]:
    try:
        si = SymbologyIdentifier.extract(data)
    except _BIIP_ERRORS as error:
        raise Malformed(f"unknown symbology identifier in {data[:8]!r}: {error}") from None
    payload = data[len(si.value) :]
    if si.gs1_symbology in GS1Symbology.with_gs1_messages():
        return si.value, payload
    if si.gs1_symbology in GS1Symbology.with_gtin() and payload.isascii() and payload.isdigit():
        return si.value, "01" + payload.zfill(14)
    raise Malformed(f"symbology {si.value} carries no GS1 element strings")


def _hri(data: str) -> list[_Element]:
    text = "".join(data.split())
    groups = _HRI.findall(text)
    if "".join(f"({ai}){value}" for ai, value in groups) != text:
        raise Malformed(f"not a human-readable GS1 string: {data!r}")
    elements = _walk(GS.join(ai + value for ai, value in groups), check=False)
    if len(elements) != len(groups) or any(
        e.es.ai.ai != ai for e, (ai, _) in zip(elements, groups, strict=False)
    ):
        raise Malformed(f"an element of {data!r} does not match its AI's length")
    return elements


def _walk(data: str, *, check: bool) -> list[_Element]:
    """Split into element strings exactly as biip's ``GS1Message.parse`` does, keeping where
    each one ended; ``check`` looks for a missing separator when the split fails."""
    elements: list[_Element] = []
    rest = data
    while rest:
        try:
            es = GS1ElementString.extract(rest, config=_BIIP)
        except _BIIP_ERRORS as error:
            raise _refusal(rest, elements, error, check=check) from None
        rest = rest[len(es) :]
        elements.append(_Element(es, rest, rest.startswith(GS)))
        rest = rest.lstrip(GS)
    return elements


def _refusal(rest: str, elements: list[_Element], error: Exception, *, check: bool) -> Gs1Error:
    if check:
        open_ = [e for e in elements if e.es.ai.separator_required and not e.terminated]
        if open_:
            readings = _other_readings(open_[-1], elements)
            if readings:
                return AmbiguousWithoutSeparator(
                    f"missing group separator after ({open_[-1].es.ai.ai}): the strict parse "
                    f"fails ({error}), but it reads as {readings[0]}"
                )
    try:
        ai = GS1ApplicationIdentifier.extract(rest)
    except _BIIP_ERRORS:
        if elements:
            return LeftoverData(
                f"leftover data {rest!r} after ({elements[-1].es.ai.ai}) reads as no GS1 AI"
            )
        return Malformed(f"not GS1 element strings: {rest!r} starts with no GS1 AI")
    if "YYMMDD" in ai.description:
        return InvalidDate(f"({ai.ai}) {ai.data_title}: {rest[len(ai.ai) :]!r} is not a date")
    return Malformed(f"({ai.ai}) {ai.data_title}: value does not match {ai.format}: {error}")


def _other_readings(element: _Element, elements: list[_Element]) -> list[str]:
    """Readings of an unterminated variable-length element's value as further elements."""
    es = element.es
    if not es.ai.separator_required or element.terminated:
        return []
    present = {e.es.ai.ai for e in elements}
    readings: list[str] = []
    for i in range(1, len(es.value)):
        tail = es.value[i:] + element.after
        if not tail.startswith(tuple(a for a in SUSPECT_AIS if a not in present)):
            continue
        try:
            split = _walk(tail, check=False)
        except Gs1Error:
            continue
        if any(e.es.gtin_error or e.es.sscc_error for e in split):
            continue
        hri = "".join(f"({e.es.ai.ai}){e.es.value}" for e in split)
        readings.append(f"({es.ai.ai}){es.value[:i]}{hri}")
    return readings


_DATES = {"17": "expiry", "15": "best_before", "11": "production_date"}
_TEXT = {"10": "lot", "21": "serial"}


def _build(
    raw: str, symbology: str | None, elements: list[_Element], ambiguities: tuple[str, ...]
) -> Gs1Scan:
    fields: dict[str, object] = {}
    other: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for element in elements:
        es = element.es
        ai, value = es.ai.ai, es.value
        pairs.append((ai, value))
        name: str | None = None
        parsed: object = value
        if ai == "01":
            if es.gtin_error:
                raise BadCheckDigit(f"GTIN {value}: {es.gtin_error}")
            name = "gtin"
        elif ai == "00":
            if es.sscc_error:
                raise BadCheckDigit(f"SSCC {value}: {es.sscc_error}")
            name = "sscc"
        elif ai in _DATES:
            name, parsed = _DATES[ai], es.date
        elif ai in _TEXT:
            name = _TEXT[ai]
        elif ai in ("30", "37"):
            if not (value.isascii() and value.isdigit()):
                raise Malformed(f"({ai}) count {value!r} is not a number")
            name, parsed = "quantity", int(value)
        if name is None:
            if other.setdefault(ai, value) != value:
                raise Malformed(f"({ai}) given twice with different values")
        elif fields.setdefault(name, parsed) != parsed:
            raise Malformed(f"({ai}) {name} given twice with different values")
    return Gs1Scan(
        raw=raw,
        elements=tuple(pairs),
        symbology=symbology,
        other=MappingProxyType(other),
        ambiguities=ambiguities,
        **fields,  # type: ignore[arg-type]
    )
