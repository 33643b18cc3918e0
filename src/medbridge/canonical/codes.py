"""Pure validation and normalisation of external product codes (NDC, GTIN).

NDC: the FDA's 10-digit code comes in three labeler-product-package shapes, 4-4-2, 5-3-2 and
5-4-1. The 11-digit form used by billing and by most item masters (5-4-2) pads the short
segment with a leading zero. An undashed 10-digit code is ambiguous (the shape is lost), so it
is only accepted when the caller states the shape.

GTIN: GTIN-8/12/13/14 share the GS1 mod-10 check digit; the canonical form is GTIN-14
(left-padded with zeros).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

NdcShape = Literal["4-4-2", "5-3-2", "5-4-1"]

_DASHED = re.compile(r"^([0-9]{4,5})-([0-9]{3,4})-([0-9]{1,2})$")


class CodeError(ValueError):
    """A code that cannot be read; the message says why."""


def normalize_ndc(raw: str, shape: NdcShape | None = None) -> str:
    """Return the 11-digit (5-4-2) NDC for any accepted NDC spelling, or raise CodeError."""
    code = raw.strip()
    dashed = _DASHED.match(code)
    if dashed:
        labeler, product, package = dashed.groups()
        if len(labeler) + len(product) + len(package) == 11 and (
            len(labeler),
            len(product),
            len(package),
        ) == (5, 4, 2):
            return labeler + product + package
        if len(labeler) + len(product) + len(package) != 10:
            raise CodeError(f"NDC {raw!r}: dashed form must have 10 or 11 digits")
        return labeler.zfill(5) + product.zfill(4) + package.zfill(2)
    if not (code.isascii() and code.isdigit()):
        raise CodeError(f"NDC {raw!r}: only digits and dashes are allowed")
    if len(code) == 11:
        return code
    if len(code) == 10:
        if shape is None:
            raise CodeError(f"NDC {raw!r}: an undashed 10-digit NDC is ambiguous without its shape")
        a, b, _c = (int(part) for part in shape.split("-"))
        return code[:a].zfill(5) + code[a : a + b].zfill(4) + code[a + b :].zfill(2)
    raise CodeError(f"NDC {raw!r}: {len(code)} digits; an NDC has 10 or 11")


def ndc_readings(raw: str) -> dict[str, str]:
    """Every 11-digit NDC an NDC spelling can mean, by shape: one for a dashed or 11-digit
    code, three for an undashed 10-digit one (``4-4-2``, ``5-3-2``, ``5-4-1``); CodeError
    for what is no NDC at all."""
    code = raw.strip()
    if code.isascii() and code.isdigit() and len(code) == 10:
        return {shape: normalize_ndc(code, shape) for shape in get_args(NdcShape)}
    return {"": normalize_ndc(code)}


def gs1_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of ``body`` (all digits but the last)."""
    backwards = body[::-1]  # the digit next to the check digit weighs 3, the next 1, ...
    total = 3 * sum(map(int, backwards[0::2])) + sum(map(int, backwards[1::2]))
    return (10 - total % 10) % 10


def normalize_gtin(raw: str) -> str:
    """Return the GTIN-14 for a GTIN-8/12/13/14, or raise CodeError (length or check digit)."""
    code = raw.strip()
    # ASCII digits only: "²".isdigit() is true, and int("²") raises
    if not (code.isascii() and code.isdigit()) or len(code) not in (8, 12, 13, 14):
        raise CodeError(f"GTIN {raw!r}: must be 8, 12, 13 or 14 digits")
    expected = gs1_check_digit(code[:-1])
    if int(code[-1]) != expected:
        raise CodeError(f"GTIN {raw!r}: check digit {code[-1]} is wrong, expected {expected}")
    return code.zfill(14)
