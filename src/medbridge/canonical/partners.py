"""Trading partners (v1): who MedBridge exchanges trade documents with, and how.

A partner's ``code`` is its supplier code in master data. Inbound X12 is attributed to the
partner whose ``x12_qualifier``/``x12_id`` is the interchange sender (ISA05/ISA06); inbound
cXML to the partner whose ``cxml_domain``/``cxml_identity`` is the Sender credential, which
must carry ``cxml_shared_secret``. ``wire_format`` is how orders are sent to the partner.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, StringConstraints, model_validator

from medbridge.canonical.base import CanonicalModel, Code

X12Qualifier = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{2}$")]
X12Id = Annotated[str, StringConstraints(pattern=r"^[!-~]([ -~]{0,13}[!-~])?$")]
"""ISA06/ISA08: up to 15 printable characters (padded with spaces on the wire)."""


class WireFormat(StrEnum):
    X12 = "x12"
    CXML = "cxml"


class OwnIdentity(CanonicalModel):
    """How MedBridge (the buying organisation) identifies itself to partners."""

    x12_qualifier: X12Qualifier = "ZZ"
    x12_id: X12Id = "MEDBRIDGE"
    cxml_domain: str = Field(default="NetworkID", min_length=1, max_length=64)
    cxml_identity: str = Field(default="MEDBRIDGE", min_length=1, max_length=128)


class TradingPartner(CanonicalModel):
    code: Code
    """The partner's supplier code in master data."""
    name: str | None = Field(default=None, max_length=200)
    wire_format: WireFormat = WireFormat.X12

    x12_qualifier: X12Qualifier = "ZZ"
    x12_id: X12Id | None = None
    x12_version: Literal["004010", "005010"] = "005010"
    x12_usage: Literal["P", "T"] = "P"
    """ISA15 of what MedBridge sends: P production, T test."""

    cxml_domain: str = Field(default="NetworkID", min_length=1, max_length=64)
    cxml_identity: str | None = Field(default=None, min_length=1, max_length=128)
    cxml_shared_secret: SecretStr | None = None
    cxml_url: str | None = None
    """Where the partner takes OrderRequests (its cXML endpoint)."""

    api_client: str | None = Field(default=None, min_length=1, max_length=100)
    """The API client that may post this partner's X12 over HTTP (``POST /v1/edi/x12``);
    None: any client with ``trade:write``. A client posting another partner's ISA sender
    gets 403."""

    inbound_folder: Path | None = None
    """Files the partner drops for MedBridge (X12 interchanges)."""
    outbound_folder: Path | None = None
    """Where MedBridge writes documents for the partner (orders, 997s)."""

    @model_validator(mode="after")
    def _check(self) -> TradingPartner:
        if self.wire_format is WireFormat.X12 and self.x12_id is None:
            raise ValueError(f"partner {self.code}: X12 needs x12_id (its ISA06)")
        if self.wire_format is WireFormat.CXML and self.cxml_identity is None:
            raise ValueError(f"partner {self.code}: cXML needs cxml_identity")
        if self.cxml_identity is not None and self.cxml_shared_secret is None:
            raise ValueError(f"partner {self.code}: a cXML identity needs cxml_shared_secret")
        return self


class PartnerDirectory:
    """Look partners up by code, by X12 sender and by cXML credential."""

    def __init__(self, partners: dict[str, TradingPartner] | list[TradingPartner]) -> None:
        values = list(partners.values()) if isinstance(partners, dict) else list(partners)
        self._by_code = {p.code: p for p in values}
        self._x12 = {(p.x12_qualifier, p.x12_id): p for p in values if p.x12_id}
        self._cxml = {
            (p.cxml_domain.lower(), p.cxml_identity.lower()): p for p in values if p.cxml_identity
        }

    def __iter__(self) -> Iterator[TradingPartner]:
        return iter(self._by_code.values())

    def x12_sender(self, qualifier: str, sender_id: str) -> TradingPartner | None:
        return self._x12.get((qualifier.strip(), sender_id.strip()))

    def cxml_sender(self, domain: str, identity: str) -> TradingPartner | None:
        """cXML credential domains and identities compare case-insensitively."""
        return self._cxml.get((domain.strip().lower(), identity.strip().lower()))
