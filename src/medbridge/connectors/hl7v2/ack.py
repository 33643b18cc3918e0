"""Original-mode acknowledgements (ACK) with MSA and, for errors, ERR.

ERR follows the message's version: 2.5 and later carry ERR-2 (location), ERR-3 (HL7 error
code, table 0357), ERR-4 (severity) and ERR-8 (user message); 2.3 and 2.4 carry ERR-1 (ELD).
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count

from medbridge.connectors.hl7v2.codec import DEFAULT_ENCODING, Encoding, Message, escape, render
from medbridge.connectors.hl7v2.errors import Hl7Error

_control_ids = count(1)


def _legacy_err(version: str) -> bool:
    return version.startswith(("2.3", "2.4"))


def build_ack(
    message: Message | None,
    code: str,
    *,
    error: Hl7Error | None = None,
    text: str = "",
    receiving_application: str = "MEDBRIDGE",
    receiving_facility: str = "MEDBRIDGE",
) -> str:
    """An ACK for ``message`` (None when it could not be parsed at all)."""
    enc: Encoding = message.encoding if message else DEFAULT_ENCODING
    msh = message.msh if message else None
    version = (msh.get(12) if msh else "") or "2.5.1"
    trigger = msh.get(9, 2) if msh else ""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    header = [
        "MSH",
        escape(receiving_application, enc),
        escape(receiving_facility, enc),
        msh.raw(3) if msh else "",
        msh.raw(4) if msh else "",
        now,
        "",
        f"ACK{enc.component}{trigger}{enc.component}ACK" if trigger else "ACK",
        f"MB{now[:14]}{next(_control_ids):06d}",
        msh.raw(11) if msh and msh.raw(11) else "P",
        msh.raw(12) if msh and msh.raw(12) else version,
    ]
    segments = [
        header,
        ["MSA", code, msh.raw(10) if msh else "", escape(text[:80], enc) if text else ""],
    ]
    if error is not None:
        segments.append(_err(error, version, enc))
    return render(segments, enc)


def _err(error: Hl7Error, version: str, enc: Encoding) -> list[str]:
    c = enc.component
    location = ""
    if error.segment:
        parts = [
            error.segment,
            str(error.sequence),
            str(error.field or ""),
            "1" if error.field else "",
        ]
        if error.component:
            parts.append(str(error.component))
        location = c.join(parts).rstrip(c)
    code = f"{error.error_code}{c}{escape(error.error_text, enc)}{c}HL70357"
    message = escape(str(error)[:250], enc)
    if _legacy_err(version):
        return ["ERR", f"{location}{c}{code}" if location else f"{c}{c}{c}{code}"]
    return ["ERR", "", location, code, "E", "", "", "", message]
