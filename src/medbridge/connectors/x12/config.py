"""Typed configuration of the X12 connector."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME = "x12"


class X12Config(BaseModel):
    """Who we are on the wire and how we write; control numbers come from the caller."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender_qualifier: str = Field(default="ZZ", min_length=2, max_length=2)
    """ISA05 of what we send (ISA07 of what we receive)."""
    sender_id: str = Field(default="MEDBRIDGE", min_length=1, max_length=15)
    version: str = Field(default="004010", pattern=r"^00[45]010$")
    """GS08 we write: 004010 (ISA12 00401) or 005010 (ISA12 00501)."""
    usage: str = Field(default="P", pattern=r"^[PT]$")
    send_functional_acks: bool = True
    """Answer every inbound functional group (but a group of 997s) with a 997."""
