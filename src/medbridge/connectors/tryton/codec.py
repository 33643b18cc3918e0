"""Tryton's JSON-RPC wire format, as the Tryton ERP adapter uses it.

The encoding lives in ``medbridge.rpc.tryton`` (shared with the other trytond connector);
this module turns its decode failures into ``TrytonProtocolError``.
"""

from __future__ import annotations

from typing import Any

from medbridge.connectors.tryton.errors import TrytonProtocolError
from medbridge.rpc.tryton import TrytonValueError, encode, from_utc, to_utc
from medbridge.rpc.tryton import decode as _decode

__all__ = ["decode", "encode", "from_utc", "to_utc"]


def decode(value: Any) -> Any:
    """Decode a parsed JSON answer; an undecodable value is a ``TrytonProtocolError``."""
    try:
        return _decode(value)
    except TrytonValueError as exc:
        raise TrytonProtocolError(str(exc)) from exc
