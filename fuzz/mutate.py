"""Seeded, structure-blind and token-aware mutations of real samples.

Every mutation is a pure function of ``random.Random`` and the input, so one (seed, index)
pair names one input for ever: a failure is reproduced by its number alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

HOSTILE: tuple[str, ...] = (
    "",
    " ",
    "\u2028",
    "\u2029",
    "\u0085",
    "\x00",
    "\x1c",
    "\x0b",
    "\x1d",
    "\ufeff",
    "A" * 64,
    "A" * 65,
    "B" * 121,
    "C" * 201,
    "+2500",
    "-2500",
    "+9999",
    "20250230",
    "20251301",
    "99999999",
    "0000",
    "-1",
    "0",
    "-0",
    "1e999999",
    "1E+5",
    "1e-999999",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "9" * 4301,
    "1" * 30_000,
    "1." + "1" * 5000 + "x",
    "0" * 31_000 + "x",
    " " * 5000 + "x",
    "\t" * 3000 + "x",
    "\u0661\u0662\u0663",
    "\u0663\u0660",
    "1\u00b2",
    "\u00b2",
    "\u2460",
    "\uff11\uff12",
    "12345678901234567890",
    "0.0000001",
    "1.234567891",
    "12345678901234567890.5",
    "%",
    "\\",
    "\\X0D\\",
    "\\Xzz\\",
    "&amp;",
    "&#0;",
    "&#x1F600;",
    "<",
    ">",
    "]]>",
    "<![CDATA[x]]>",
    "<!DOCTYPE x [<!ENTITY a 'b'>]>",
    "<!DOCTYPE" * 400,
    "regex.'" * 50,
    "\ud7ff",
    "\U0001f600",
    "]",
    "]C1",
    "]d2",
    "]e0",
    "]Q3",
    "]E0",
    "(",
    "(01)",
    "()",
    "#EOF",
    "#EOF,1\u00b2",
    '"',
    '""',
    ",",
    "\r\n",
    "\n",
    "\r",
    "null",
    "true",
    "[]",
    "{}",
    '{"resourceType":"Bundle"}',
    "2024-02-30",
    "2024-13-01T00:00:00Z",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01",
    "2024-01-01T25:00:00",
    "--",
)
"""Values that broke a parser somewhere once, or that sit on a boundary of the standards."""

DELIMITERS = "|^~&*:,\n\r<>\"'= \x1d{}[]()-"


def _token_spans(text: str) -> list[tuple[int, int]]:
    """Runs of characters between delimiters: the values a sender fills in."""
    spans: list[tuple[int, int]] = []
    start = None
    for i, char in enumerate(text):
        if char in DELIMITERS:
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


def hostile(rng: random.Random) -> str:
    value = rng.choice(HOSTILE)
    if rng.random() < 0.1:
        value = value * rng.randint(2, 20)
    return value


def mutate_text(rng: random.Random, text: str, others: Sequence[str]) -> str:
    """One to four mutations of ``text``; ``others`` are splice partners."""
    for _ in range(rng.randint(1, 4)):
        text = _one(rng, text, others)
    return text


def _one(rng: random.Random, text: str, others: Sequence[str]) -> str:
    choice = rng.randrange(10)
    n = len(text)
    if choice <= 2:  # a value replaced by a hostile one (the most fruitful)
        spans = _token_spans(text)
        if spans:
            start, end = rng.choice(spans)
            return text[:start] + hostile(rng) + text[end:]
    if choice == 3 and n:  # a character replaced
        i = rng.randrange(n)
        char = chr(rng.choice((rng.randrange(0x20, 0x7F), rng.randrange(0xD800))))
        return text[:i] + char + text[i + 1 :]
    if choice == 4 and n:  # a range deleted
        i = rng.randrange(n)
        return text[:i] + text[i + rng.randint(1, max(1, min(64, n - i))) :]
    if choice == 5 and n:  # a range duplicated
        i = rng.randrange(n)
        j = min(n, i + rng.randint(1, 200))
        return text[:j] + text[i:j] * rng.randint(1, 8) + text[j:]
    if choice == 6 and others:  # spliced with another sample
        other = rng.choice(others)
        return text[: rng.randint(0, n)] + other[rng.randint(0, len(other)) :]
    if choice == 7 and n:  # cut short
        return text[: rng.randrange(n)]
    if choice == 8:  # a delimiter inserted
        i = rng.randint(0, n)
        return text[:i] + rng.choice(DELIMITERS) + text[i:]
    i = rng.randint(0, n)  # a hostile value inserted
    return text[:i] + hostile(rng) + text[i:]


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage: flipped bits, random bytes, broken UTF-8."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += bytes([rng.randrange(256)])
            continue
        i = rng.randrange(len(buf))
        kind = rng.randrange(3)
        if kind == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            buf.insert(i, rng.choice((0x00, 0x80, 0xC0, 0xFF, 0xED, 0xF4, rng.randrange(256))))
        else:
            del buf[i]
    return bytes(buf)
