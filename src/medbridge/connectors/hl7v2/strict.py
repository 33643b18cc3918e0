"""Optional strict validation with hl7apy (``Hl7Config.strict_validation``).

hl7apy checks message structure, cardinalities and data types against the standard's tables;
it parses ~78 messages/s here (../shared/LIBRARIES.md), so it is off the hot path by default
and meant for on-boarding a new sender. It is imported lazily: install ``medbridge[strict]``.

Its error texts can quote a value (a date of birth among them), so only the element it names
reaches the ERR segment and the logs, never the value.
"""

from __future__ import annotations

import re

from medbridge.connectors.hl7v2.errors import ContentError

_ELEMENT = re.compile(r"\b([A-Z][A-Z0-9]{2})_(\d+)\b")
_FIELD = re.compile(r"Field ([A-Z][A-Z0-9]{2})_(\d+)\b")


def validate_strict(text: str) -> None:
    """Raise ContentError when hl7apy's strict validation refuses the message."""
    try:
        from hl7apy.consts import VALIDATION_LEVEL
        from hl7apy.exceptions import HL7apyException
        from hl7apy.parser import parse_message
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "strict HL7 validation needs hl7apy: pip install 'medbridge[strict]'"
        ) from error
    normalised = text.replace("\r\n", "\r").replace("\n", "\r")
    try:
        parse_message(normalised, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    except (HL7apyException, ValueError) as error:
        message = str(error)
        element = _FIELD.search(message) or _ELEMENT.search(message)
        if isinstance(error, ValueError) and not isinstance(error, HL7apyException):
            reason = "a value does not match its HL7 data type"
        else:
            reason = _ELEMENT.sub(lambda m: f"{m.group(1)}-{m.group(2)}", message.split(":")[0])
        raise ContentError(
            f"strict validation ({type(error).__name__}): {reason}"[:200],
            segment=element.group(1) if element else None,
            field=int(element.group(2)) if element else None,
        ) from None
