"""What every transaction set mapping shares: typed element readers that fail with the
position of the segment and element, product id qualifiers, parties, number and date formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import ValidationError

from medbridge.canonical.base import CanonicalModel
from medbridge.canonical.trade import PartnerItem, Party, PartyRole
from medbridge.connectors.x12.codec import Segment
from medbridge.connectors.x12.envelope import TransactionSet
from medbridge.connectors.x12.errors import (
    BadCode,
    BadDate,
    BadElement,
    BadNumber,
    InvalidDocument,
    MissingElement,
    MissingMandatory,
    X12Error,
)

Out = tuple[str, ...]
"""A segment to write: ``(id, e01, e02 ...)``."""
M = TypeVar("M", bound=CanonicalModel)

SUPPLIER_PART = ("VN", "VC", "VP", "VA")
BUYER_PART = ("BP", "IN", "CB", "SK")
GTIN_QUALIFIERS = ("UK", "EN", "UP", "UA", "UI")
NDC_QUALIFIERS = ("N4", "ND", "N1", "N2", "N5", "N6")

ROLE_OF: dict[str, PartyRole] = {
    "BY": PartyRole.BUYER,
    "OB": PartyRole.BUYER,
    "SU": PartyRole.SUPPLIER,
    "SE": PartyRole.SUPPLIER,
    "VN": PartyRole.SUPPLIER,
    "DS": PartyRole.SUPPLIER,
    "ST": PartyRole.SHIP_TO,
    "BT": PartyRole.BILL_TO,
    "MF": PartyRole.MANUFACTURER,
    "BG": PartyRole.GROUP,
}
"""N101 entity identifier codes read as canonical roles; the first N1 of a role wins."""
CODE_OF: dict[PartyRole, str] = {
    PartyRole.BUYER: "BY",
    PartyRole.SUPPLIER: "SU",
    PartyRole.SHIP_TO: "ST",
    PartyRole.BILL_TO: "BT",
    PartyRole.MANUFACTURER: "MF",
    PartyRole.GROUP: "BG",
}

EXTENSION = "ZZ"
"""REF01 of MedBridge's extension REFs: ``REF*ZZ*<KEY>*<value>`` carries a canonical field
that the standard segment has no place for (read back by the same key)."""

_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
r"""An ``R`` value, matched whole. Linear by construction: the two digit runs of
``[0-9]+(?:\.[0-9]*)?`` are split by a mandatory ``.``, so no run of digits can be shared out
between them (``\d+\.?\d*`` could, and took quadratic time on long digit runs). ASCII
digits: ``\d`` also matches Arabic-Indic and other scripts' digits."""
_DIGITS = re.compile(r"[0-9]+")
_SIGNED_DIGITS = re.compile(r"-?[0-9]+")
MAX_NUMBER_CHARS = 32
"""Longer than any X12 numeric element (R and N are at most 15-18 characters): refused as
not a number before Decimal or int (which refuses more than 4,300 digits) sees it."""


class SetReader:
    """Reads one transaction set's elements, failing with segment position and element."""

    def __init__(self, ts: TransactionSet) -> None:
        self.ts = ts

    def error(
        self,
        cls: type[X12Error],
        seg: Segment,
        n: int | None,
        reason: str,
        value: str | None = None,
    ) -> X12Error:
        return cls(
            reason,
            segment_position=seg.position,
            set_position=self.ts.set_position(seg),
            segment_id=seg.id,
            element_position=n,
            value=value,
        )

    def header(self, segment_id: str, document: str) -> Segment:
        """The set's first ``segment_id`` segment (its beginning segment: BEG, BAK, BSN ...),
        or ``MissingMandatory`` where it was expected."""
        found = next((s for s in self.ts.body if s.id == segment_id), None)
        if found is None:
            raise self.missing_segment(segment_id, f"the {document} has no {segment_id} segment")
        return found

    def missing_segment(self, segment_id: str, reason: str) -> X12Error:
        """Where the segment was expected: right after ST (AK302 = 2)."""
        st = self.ts.segments[0]
        return MissingMandatory(
            reason,
            segment_position=st.position + 1,
            set_position=2,
            segment_id=segment_id,
        )

    def text(self, seg: Segment, n: int, what: str) -> str:
        value = seg.get(n).strip()
        if not value:
            raise self.error(MissingElement, seg, n, f"{what} is missing")
        return value

    def optional(self, seg: Segment, n: int) -> str | None:
        return seg.get(n).strip() or None

    def number(self, seg: Segment, n: int, what: str) -> Decimal:
        raw = self.text(seg, n, what)
        if len(raw) > MAX_NUMBER_CHARS:
            raise self.error(BadNumber, seg, n, _too_long(what, raw), raw[:MAX_NUMBER_CHARS])
        if not _NUMBER.fullmatch(raw):
            raise self.error(BadNumber, seg, n, f"{what} {raw!r} is not a number", raw)
        try:
            return Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the pattern rules it out
            raise self.error(BadNumber, seg, n, f"{what} {raw!r} is not a number", raw) from None

    def optional_number(self, seg: Segment, n: int, what: str) -> Decimal | None:
        return self.number(seg, n, what) if seg.get(n).strip() else None

    def implied(self, seg: Segment, n: int, what: str, places: int = 2) -> Decimal:
        """An ``N2`` element: digits with ``places`` implied decimals (289603530 = 2896035.30)."""
        raw = self.text(seg, n, what)
        if len(raw) > MAX_NUMBER_CHARS:
            raise self.error(BadNumber, seg, n, _too_long(what, raw), raw[:MAX_NUMBER_CHARS])
        if not _SIGNED_DIGITS.fullmatch(raw):
            raise self.error(BadNumber, seg, n, f"{what} {raw!r} is not an N{places} number", raw)
        return Decimal(raw).scaleb(-places)

    def integer(self, seg: Segment, n: int, what: str) -> int:
        raw = self.text(seg, n, what)
        if len(raw) > MAX_NUMBER_CHARS:
            raise self.error(BadNumber, seg, n, _too_long(what, raw), raw[:MAX_NUMBER_CHARS])
        if not _DIGITS.fullmatch(raw):
            raise self.error(BadNumber, seg, n, f"{what} {raw!r} is not a whole number", raw)
        return int(raw)

    def line_number(self, seg: Segment, n: int, fallback: int) -> int:
        """An assigned line id as a number; ``fallback`` (the line's ordinal) when empty."""
        if not seg.get(n).strip():
            return fallback
        number = self.integer(seg, n, "line number")
        if not 1 <= number <= 999_999:
            raise self.error(BadNumber, seg, n, f"line number {number} is outside 1..999999")
        return number

    def date(self, seg: Segment, n: int, what: str) -> date:
        raw = self.text(seg, n, what)
        parsed = parse_date(raw)
        if parsed is None:
            raise self.error(BadDate, seg, n, f"{what} {raw!r} is not a date (CCYYMMDD)", raw)
        return parsed

    def code(self, seg: Segment, n: int, what: str, codes: dict[str, Any]) -> Any:
        raw = self.text(seg, n, what)
        if raw not in codes:
            known = ", ".join(sorted(codes))
            raise self.error(BadCode, seg, n, f"{what} {raw!r} is not one of {known}", raw)
        return codes[raw]

    def build(self, seg: Segment, model: type[M], **fields: Any) -> M:
        """A canonical model; a broken canonical rule is an ``InvalidDocument`` at ``seg``."""
        try:
            return model(**fields)
        except ValidationError as exc:
            raise self.error(InvalidDocument, seg, None, _explain(model, exc)) from None

    def item(self, seg: Segment, first: int, description: str | None = None) -> PartnerItem:
        """A ``PartnerItem`` from the (qualifier, id) pairs of ``seg`` from element ``first``."""
        ids = self.item_ids(seg, first)
        if not ids and not description:
            pairs = [seg.get(k) for k in range(first, len(seg.elements) + 1, 2) if seg.get(k)]
            raise self.error(
                MissingElement,
                seg,
                first,
                "no supplier part, buyer part, GTIN or NDC among product id qualifiers "
                f"{pairs or 'none'}, and no description (PID)",
            )
        return self.build(seg, PartnerItem, description=description, **ids)

    def item_ids(self, seg: Segment, first: int) -> dict[str, str]:
        ids: dict[str, str] = {}
        bad_gtin: tuple[int, str, str] | None = None
        for k in range(first, len(seg.elements), 2):
            qualifier, value = seg.get(k).strip(), seg.get(k + 1).strip()
            if not qualifier or not value:
                continue
            if qualifier in SUPPLIER_PART:
                ids.setdefault("supplier_part", value)
            elif qualifier in BUYER_PART:
                ids.setdefault("buyer_part", value)
            elif qualifier in GTIN_QUALIFIERS:
                gtin = as_gtin(value)
                if gtin is None:
                    bad_gtin = bad_gtin or (k + 1, qualifier, value)
                else:
                    ids.setdefault("gtin", gtin)
            elif qualifier in NDC_QUALIFIERS:
                ndc = as_ndc(value)
                if ndc is None:
                    raise self.error(
                        BadElement, seg, k + 1, f"{qualifier} id {value!r} is not an NDC", value
                    )
                ids.setdefault("ndc", ndc)
        if bad_gtin is not None and "gtin" not in ids:
            n, qualifier, value = bad_gtin
            raise self.error(
                BadElement,
                seg,
                n,
                f"{qualifier} id {value!r} is not a GTIN (8, 12, 13 or 14 digits)",
                value,
            )
        return ids

    def parties(self, segments: Iterable[Segment]) -> tuple[Party, ...]:
        """N1 segments of a known role with an id (N104); the first of each role wins."""
        found: dict[PartyRole, Party] = {}
        for seg in segments:
            role = ROLE_OF.get(seg.get(1).strip())
            ident = seg.get(4).strip()
            if role is None or not ident or role in found:
                continue
            found[role] = self.build(
                seg, Party, role=role, id=ident, name=seg.get(2).strip() or None
            )
        return tuple(found.values())


def _explain(model: type[CanonicalModel], exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    return f"not a valid {model.__name__}: " + "; ".join(parts)


def _too_long(what: str, raw: str) -> str:
    return f"{what} of {len(raw)} characters is not a number (at most {MAX_NUMBER_CHARS})"


def parse_date(raw: str) -> date | None:
    if len(raw) not in (6, 8) or not _DIGITS.fullmatch(raw):
        return None
    if len(raw) == 6:
        year = int(raw[:2])
        raw = ("20" if year < 50 else "19") + raw
    try:
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))
    except ValueError:
        return None


def as_gtin(value: str) -> str | None:
    """A GTIN-8/12/13/14 zero-padded to 14 digits, None when the value is not one."""
    if len(value) in (8, 12, 13, 14) and _DIGITS.fullmatch(value):
        return value.zfill(14)
    return None


def as_ndc(value: str) -> str | None:
    """An 11-digit NDC; a dashed 10-digit one (4-4-2, 5-3-2, 5-4-1) is padded to 5-4-2."""
    if len(value) == 11 and _DIGITS.fullmatch(value):
        return value
    parts = value.split("-")
    if len(parts) == 3 and all(_DIGITS.fullmatch(p) for p in parts):
        a, b, c = parts
        if len(a) <= 5 and len(b) <= 4 and len(c) <= 2 and len(a + b + c) >= 10:
            return a.zfill(5) + b.zfill(4) + c.zfill(2)
    return None


# --- writing --------------------------------------------------------------------------------


def fmt_decimal(value: Decimal) -> str:
    """An X12 ``R`` value: no exponent, no trailing zeros (``157.50`` -> ``157.5``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_implied(value: Decimal, places: int = 2) -> str:
    """An ``N2`` value (2896035.30 -> ``289603530``); the caller checks it is exact."""
    return str(int(value.scaleb(places).to_integral_value()))


def fmt_date(value: date) -> str:
    return value.strftime("%Y%m%d")


def item_pairs(item: PartnerItem) -> list[str]:
    pairs: list[str] = []
    for qualifier, value in (
        ("VN", item.supplier_part),
        ("BP", item.buyer_part),
        ("UK", item.gtin),
        ("N4", item.ndc),
    ):
        if value is not None:
            pairs += [qualifier, value]
    return pairs


def pid(description: str | None) -> list[Out]:
    return [("PID", "F", "", "", "", description)] if description else []


def n1_segments(parties: Sequence[Party]) -> list[Out]:
    return [("N1", CODE_OF[p.role], p.name or "", "ZZ", p.id) for p in parties]


def extension(key: str, value: str) -> Out:
    return ("REF", EXTENSION, key, value)


def read_extension(seg: Segment, key: str) -> str | None:
    if seg.id == "REF" and seg.get(1) == EXTENSION and seg.get(2) == key:
        return seg.get(3).strip() or None
    return None


def split_loops(
    segments: Iterable[Segment], loop_id: str, stop: Sequence[str] = ("CTT",)
) -> tuple[list[Segment], list[list[Segment]], list[Segment]]:
    """``(header, loops, summary)``: each loop starts at a ``loop_id`` segment; the summary
    starts at the first ``stop`` segment after a loop."""
    header: list[Segment] = []
    loops: list[list[Segment]] = []
    summary: list[Segment] = []
    for seg in segments:
        if summary or (loops and seg.id in stop):
            summary.append(seg)
        elif seg.id == loop_id:
            loops.append([seg])
        elif loops:
            loops[-1].append(seg)
        else:
            header.append(seg)
    return header, loops, summary


def first(segments: Iterable[Segment], predicate: Callable[[Segment], bool]) -> Segment | None:
    return next((s for s in segments if predicate(s)), None)
