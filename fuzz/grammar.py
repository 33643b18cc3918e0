"""Grammar-aware generation: inputs that keep each standard's structure (envelopes, counts,
delimiters, JSON shapes) so that hostile values reach the mapping code behind the parser,
where byte mutations alone rarely get (an X12 value is only read once SE01 counts right).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from fuzz.mutate import hostile

# --- HL7 v2 ----------------------------------------------------------------------------------

_HL7_TYPES = ("RDS^O13^RDS_O13", "RDS^O01", "DFT^P03^DFT_P03", "DFT^P11", "RDE^O11", "RDE^O25")
_HL7_VERSIONS = ("2.3", "2.4", "2.5.1", "2.6", "2.8", "2.9", "")
_TS = ("20240101", "202401011230", "20240101123045.1234+0100", "2024", "20240101+2500")
_CODES = ("0409-4888-02", "00409488802", "12345", "VANCO-1G", "00312345678906")
_SYSTEMS = ("NDC", "N", "GTIN", "GS1", "RXNORM", "L", "", "99LOCAL", "SCT")


def _pick(rng: random.Random, plausible: Sequence[str], hostility: float = 0.3) -> str:
    return hostile(rng) if rng.random() < hostility else rng.choice(plausible)


def hl7_message(rng: random.Random) -> bytes:
    def f(plausible: Sequence[str]) -> str:
        return _pick(rng, plausible)

    kind = rng.choice(_HL7_TYPES)
    segments = [
        f"MSH|^~\\&|{f(('CABINET',))}|{f(('H1', 'H2'))}|MB|MB|{f(_TS)}||{kind}|"
        f"{f(('CTL1', 'X'))}|P|{f(_HL7_VERSIONS)}",
        f"PV1|1|I|{f(('WARD-4', 'ICU'))}" + "|" * 16 + f"{f(('V1', 'VISIT-2'))}",
    ]
    item = f"{f(_CODES)}^{f(('Vancomycin', ''))}^{f(_SYSTEMS)}"
    for _ in range(rng.randint(0, 3)):
        if kind.startswith("RDS"):
            fields = [""] * 31
            fields[2], fields[3], fields[4] = item, f(_TS), f(("1", "2.5", "10"))
            fields[5], fields[18], fields[19] = f(("VIAL", "EA")), f(("LOT1",)), f(_TS)
            fields[30] = f(("H1-PHARM", ""))
            segments.append("RXD" + "|".join(fields))
        elif kind.startswith("DFT"):
            fields = [""] * 30
            fields[4], fields[6], fields[7] = f(_TS), f(("CG", "CD")), item
            fields[10], fields[13] = f(("1", "3", "")), f(("OR-1", ""))
            fields[29] = f(("", "0409-4888-02"))
            segments.append("FT1" + "|".join(fields))
        else:
            segments.append(f"ORC|NW|{f(('ORD1', ''))}|||||||{f(_TS)}")
            fields = [""] * 12
            fields[2], fields[10], fields[11] = item, f(("1", "")), f(("VIAL",))
            segments.append("RXE" + "|".join(fields))
    sep = rng.choice(("\r", "\n", "\r\n"))
    return sep.join(segments).encode("utf-8", "surrogatepass")


def hl7_structured(rng: random.Random, sample: str) -> str:
    """A sample with one field or component of one segment replaced, delimiters intact."""
    lines = [ln for ln in sample.replace("\r\n", "\r").replace("\n", "\r").split("\r") if ln]
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        fields = lines[i].split("|")
        if len(fields) < 2:
            continue
        j = rng.randrange(1 if i else 2, len(fields)) if len(fields) > 2 else 1
        components = fields[j].split("^")
        k = rng.randrange(len(components))
        components[k] = hostile(rng)
        fields[j] = "^".join(components)
        lines[i] = "|".join(fields)
    return "\r".join(lines)


# --- X12 -------------------------------------------------------------------------------------


def x12_structured(rng: random.Random, sample: str) -> str:
    """A sample with body elements replaced and every count (SE01, GE01, IEA01) still right."""
    body = sample.lstrip("\ufeff").lstrip()
    if len(body) < 106 or not body.startswith("ISA"):
        return body
    element, terminator = body[3], body[105]
    segments = [s.strip() for s in body.split(terminator)]
    segments = [s for s in segments if s]
    editable = [
        i
        for i, s in enumerate(segments)
        if s.split(element, 1)[0] not in ("ISA", "GS", "ST", "SE", "GE", "IEA")
    ]
    for _ in range(rng.randint(1, 3)):
        if not editable:
            break
        i = rng.choice(editable)
        parts = segments[i].split(element)
        if len(parts) > 1:
            parts[rng.randrange(1, len(parts))] = hostile(rng).replace(terminator, "")
        segments[i] = element.join(parts)
    # recount SE01 per set so that the set is mapped, not refused for its count
    out: list[str] = []
    start = 0
    for seg in segments:
        ident = seg.split(element, 1)[0]
        if ident == "ST":
            start = len(out)
        if ident == "SE":
            parts = seg.split(element)
            if len(parts) > 1:
                parts[1] = str(len(out) - start + 1)
            seg = element.join(parts)
        out.append(seg)
    return terminator.join(out) + terminator


# --- cXML ------------------------------------------------------------------------------------


def xml_structured(rng: random.Random, sample: str) -> str:
    """A sample with text nodes and attribute values replaced by hostile ones, escaped."""

    def escaped() -> str:
        value = hostile(rng)
        if rng.random() < 0.7:
            value = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
        return value

    text = sample
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:  # a text node
            starts = [i for i in range(len(text)) if text[i] == ">"] if len(text) < 200_000 else []
            if not starts:
                continue
            i = rng.choice(starts) + 1
            j = text.find("<", i)
            if j > i:
                text = text[:i] + escaped() + text[j:]
        else:  # an attribute value
            i = text.find('="', rng.randrange(max(1, len(text))))
            if i == -1:
                continue
            j = text.find('"', i + 2)
            if j != -1:
                text = text[: i + 2] + escaped() + text[j:]
    return text


# --- FHIR ------------------------------------------------------------------------------------


_BIG = "__a 4400-digit number__"


def _hostile_json(rng: random.Random) -> Any:
    roll = rng.randrange(8)
    if roll == 0:
        return rng.choice((_BIG, -1, 0, 2**64, 1e308, -1e-308))
    if roll == 1:
        return rng.choice((None, True, [], {}, [{}], {"value": "x"}))
    if roll == 2:
        return float(rng.choice(("1e308", "-0.0", "1.5")))
    return hostile(rng)


def json_structured(rng: random.Random, document: Any) -> str:
    """A JSON document with leaves (and now and then whole objects) replaced."""
    document = json.loads(json.dumps(document))
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in list(node):
                paths.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                paths.append((node, index))
                walk(node[index])

    walk(document)
    for _ in range(rng.randint(1, 4)):
        if not paths:
            break
        parent, key = rng.choice(paths)
        if rng.random() < 0.15 and isinstance(parent, dict):
            parent[hostile(rng)[:80] or "x"] = _hostile_json(rng)
        else:
            parent[key] = _hostile_json(rng)
    text = json.dumps(document, ensure_ascii=rng.random() < 0.5)
    return text.replace(f'"{_BIG}"', "9" * 4400)  # a JSON number Python cannot print


# --- GS1 -------------------------------------------------------------------------------------

_AIS: tuple[tuple[str, int | None, str], ...] = (
    ("01", 14, "0"),
    ("02", 14, "0"),
    ("00", 18, "0"),
    ("10", None, "A"),
    ("21", None, "A"),
    ("11", 6, "0"),
    ("15", 6, "0"),
    ("17", 6, "0"),
    ("30", None, "0"),
    ("37", None, "0"),
    ("240", None, "A"),
    ("3103", 6, "0"),
    ("8200", None, "A"),
    ("99", None, "A"),
)


def _gtin(rng: random.Random) -> str:
    digits = [rng.randrange(10) for _ in range(13)]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits))
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def gs1_scan(rng: random.Random) -> str:
    parts: list[tuple[str, str]] = []
    for _ in range(rng.randint(1, 5)):
        ai, width, kind = rng.choice(_AIS)
        if ai in ("01", "02") and rng.random() < 0.7:
            value = _gtin(rng)
        elif ai in ("11", "15", "17") and rng.random() < 0.6:
            value = f"{rng.randrange(100):02d}{rng.randrange(14):02d}{rng.randrange(33):02d}"
        elif rng.random() < 0.2:
            value = hostile(rng)[:40]
        elif kind == "0":
            value = "".join(str(rng.randrange(10)) for _ in range(width or rng.randint(1, 8)))
        else:
            value = "".join(rng.choice("ABC123-/x") for _ in range(rng.randint(1, 20)))
        parts.append((ai, value))
    if rng.random() < 0.3:  # human-readable form
        return "".join(f"({ai}){value}" for ai, value in parts)
    sep = rng.choice(("\x1d", "", "\x1d", "|"))
    body = sep.join(ai + value for ai, value in parts)
    prefix = rng.choice(("", "", "]C1", "]d2", "]e0", "]Q3", "]E0", "]", "]X9", "]C"))
    return prefix + body + rng.choice(("", "\r\n", "\x1d"))


# --- CSV -------------------------------------------------------------------------------------

_COLUMNS = ("item", "location", "lot", "quantity")


def csv_snapshot(rng: random.Random) -> bytes:
    header = list(_COLUMNS)
    rng.shuffle(header)
    if rng.random() < 0.2:
        header.append(rng.choice(("unit", "expiry", "item", "")))
    plausible = {
        "item": ("VANCO-1G", "AMPI-250", ""),
        "location": ("H1-PHARM", "H2-OR"),
        "lot": ("V1", "A1", ""),
        "quantity": ("37", "2", "0.5", "-1"),
    }
    rows = []
    for _ in range(rng.randint(0, 5)):
        row = [_pick(rng, plausible.get(c, ("x",)), 0.25) for c in header]
        rows.append(",".join(_quote(rng, v) for v in row))
    count = str(len(rows))
    if rng.random() < 0.3:
        count = rng.choice((hostile(rng), str(len(rows) + 1), "1\u00b2", "\u0663", "9" * 5000))
    trailer = rng.choice(("#EOF,", "#EOF,", "#EOF", "EOF,")) + count
    lines = [",".join(header), *rows]
    if rng.random() < 0.95:
        lines.append(trailer)
    return rng.choice(("\n", "\r\n")).join(lines).encode("utf-8", "surrogatepass")


def _quote(rng: random.Random, value: str) -> str:
    if any(c in value for c in ',"\r\n') or rng.random() < 0.1:
        return '"' + value.replace('"', '""') + '"'
    return value
