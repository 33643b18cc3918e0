"""GS1 connector errors: why a receiving scan is refused.

Every error carries a stable ``code`` (never change one: the dock terminal and the exception
reports key on it) and a ``reason`` an operator can act on. biip's ``ParseError`` is
translated here and never leaves the package.

Gs1Error                            code
 +-- Malformed                      gs1.malformed              not GS1 element strings, or a
 |    |                                                        value that does not match its AI
 |    +-- LeftoverData              gs1.leftover_data          data after the last element that
 |    |                                                        reads as no AI
 |    +-- InvalidDate               gs1.invalid_date           a date AI with an impossible date
 +-- BadCheckDigit                  gs1.bad_check_digit        GTIN (01) or SSCC (00) check digit
 +-- AmbiguousWithoutSeparator      gs1.missing_separator      a variable-length element with no
 |                                                             GS after it that also reads as
 |                                                             further AIs (see ``codec``)
 +-- NotReceivable                  gs1.not_receivable         decodes, but is not a receipt line
      +-- Expired                   gs1.expired                expiry before the receiving date
      +-- NoGtin                    gs1.no_gtin                no (01): e.g. an SSCC pallet label

An unknown GTIN is not an error here: the scan maps to a movement and the resolver parks it
in the exception queue (``medbridge.flows.inbound``).
"""

from __future__ import annotations


class Gs1Error(ValueError):
    """Root of the GS1 connector's errors."""

    code = "gs1.error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Malformed(Gs1Error):
    code = "gs1.malformed"


class LeftoverData(Malformed):
    code = "gs1.leftover_data"


class InvalidDate(Malformed):
    code = "gs1.invalid_date"


class BadCheckDigit(Gs1Error):
    code = "gs1.bad_check_digit"


class AmbiguousWithoutSeparator(Gs1Error):
    code = "gs1.missing_separator"


class NotReceivable(Gs1Error):
    code = "gs1.not_receivable"


class Expired(NotReceivable):
    code = "gs1.expired"


class NoGtin(NotReceivable):
    code = "gs1.no_gtin"
