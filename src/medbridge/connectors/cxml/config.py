"""Typed configuration of the cXML connector."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME = "cxml"

CXML_VERSION = "1.2.060"
"""The cXML version MedBridge writes (``cXML/@version`` and the DOCTYPE's DTD folder)."""

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
"""2 MiB: a document above this is refused before it is parsed."""


class CxmlConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024, le=64 * 1024 * 1024)
    """Largest inbound document accepted, in bytes (``TooLarge`` above it)."""
