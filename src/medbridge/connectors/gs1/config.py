"""Typed configuration of the GS1 receiving-scan connector."""

from __future__ import annotations

import string
from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator

NAME = "gs1"

GS = "\x1d"
"""ASCII 29, group separator: FNC1 as scanners transmit it between element strings."""

GS1_DATA_CHARACTERS = frozenset(string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_")
"""GS1 AI encodable character set 82: what element data may contain. A separator substitute
must not be one of these, or it would cut a lot or serial in two."""


class MissingSeparatorPolicy(StrEnum):
    """What to do with a scan whose variable-length element has no GS after it and also
    reads as further element strings (``(10)032915210526`` vs ``(10)0329 (15)210526``)."""

    REFUSE = "refuse"
    """Default. Refuse with ``AmbiguousWithoutSeparator``: a wrong lot on a receipt breaks
    recall tracing, so the operator rescans or keys the line."""
    ACCEPT_GREEDY = "accept_greedy"
    """Take the conformant (greedy) reading, as the GS1 General Specifications read it, and
    keep the other readings in ``Gs1Scan.ambiguities``. A failed greedy parse is still
    refused."""


class Gs1Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    separator_substitutes: tuple[str, ...] = ()
    """Characters a keyboard-wedge scanner emits instead of GS (e.g. ``"|"``); each one
    character, outside the GS1 data character set."""
    missing_separator: MissingSeparatorPolicy = MissingSeparatorPolicy.REFUSE
    refuse_expired: bool = True
    """Refuse a receipt whose expiry (17), else best-before (15), is before ``today``."""
    today: date | None = None
    """The date expiry is judged against; default: the date the goods are received."""

    @field_validator("separator_substitutes")
    @classmethod
    def _substitutes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for char in value:
            if len(char) != 1:
                raise ValueError(f"separator substitute {char!r}: must be one character")
            if char in GS1_DATA_CHARACTERS or char == GS:
                raise ValueError(
                    f"separator substitute {char!r}: may occur in GS1 data, cannot be a separator"
                )
        return value
