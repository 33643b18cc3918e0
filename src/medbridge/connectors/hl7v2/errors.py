"""HL7 v2 connector errors, each mapped to the acknowledgement the standard prescribes.

Hl7Error                       (ack code, HL7 table 0357 error code)
 +-- FramingError              MLLP bytes that are not a frame: no ack possible, logged
 +-- Hl7ParseError             AR  102/100  not an HL7 message (no MSH, bad delimiters)
 +-- UnsupportedMessage        AR  200/201  message type or trigger event we do not take
 +-- UnsupportedVersion        AR  203      version outside 2.3 .. 2.8
 +-- ContentError              AE  101/102/103  a required field missing, a bad value
      +-- OutsideSenderScope   AE  207      stock of a facility the sender is not bound to
"""

from __future__ import annotations


class Hl7Error(Exception):
    ack_code = "AE"
    error_code = "207"  # application internal error
    error_text = "Application internal error"

    def __init__(
        self,
        message: str,
        *,
        segment: str | None = None,
        sequence: int = 1,
        field: int | None = None,
        component: int | None = None,
    ) -> None:
        super().__init__(message)
        self.segment, self.sequence, self.field, self.component = (
            segment,
            sequence,
            field,
            component,
        )

    @property
    def location(self) -> str:
        """``RXD-2`` style, for logs and messages."""
        if self.segment is None:
            return "message"
        where = self.segment if self.field is None else f"{self.segment}-{self.field}"
        return where if self.component is None else f"{where}.{self.component}"


class FramingError(Hl7Error):
    pass


class Hl7ParseError(Hl7Error):
    ack_code = "AR"
    error_code = "102"
    error_text = "Data type error"


class UnsupportedMessage(Hl7Error):
    ack_code = "AR"
    error_code = "200"
    error_text = "Unsupported message type"


class UnsupportedVersion(Hl7Error):
    ack_code = "AR"
    error_code = "203"
    error_text = "Unsupported version id"


class ContentError(Hl7Error):
    ack_code = "AE"
    error_code = "102"
    error_text = "Data type error"


class RequiredFieldMissing(ContentError):
    error_code = "101"
    error_text = "Required field missing"


class OutsideSenderScope(ContentError):
    """The sender is bound to facilities and the message moves stock of another: nothing
    stored; resending it cannot help (``AE``)."""

    error_code = "207"
    error_text = "Application internal error"


class TableValueNotFound(ContentError):
    error_code = "103"
    error_text = "Table value not found"
