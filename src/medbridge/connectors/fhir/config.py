"""Typed configuration of the FHIR connector.

The connector reads no environment: ``medbridge.settings.fhir_config()`` reads it from
``MEDBRIDGE_FHIR_*`` environment variables and from the ``[fhir]`` table of the TOML file named
by ``MEDBRIDGE_CONFIG_FILE`` (environment wins over the file, as for ``Settings``), and the
composition root hands it over. Per-client profiles (``clients``) tune how one sender's feed
is read, e.g. a FHIR Converter feed that marks every dispense ``unknown``::

    [fhir]
    pseudonym_secret = "at least sixteen characters"
    [fhir.clients.ehr-converter]
    applied_statuses = ["completed", "unknown"]
    default_location = "pharmacy"
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

NAME = "fhir"
USED_QUANTITY_EXTENSION = "http://medbridge.example.org/fhir/StructureDefinition/used-quantity"
"""Extension (valueQuantity) on a ``Procedure.usedCode``/``usedReference`` element that says
how much of the item was used; without it, one unit of the item's base unit."""


class FhirClientProfile(BaseModel):
    """How the feed of one API client is read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_system: str | None = Field(default=None, min_length=1, max_length=64)
    """Whose codes the resources carry (cross-references are looked up under it).
    Default: ``fhir:<client name>``."""
    applied_statuses: frozenset[str] = frozenset({"completed"})
    """Statuses that mean "the stock has moved". A converter that cannot know the status
    (HL7 v2 RDS -> FHIR gives ``unknown``) may need ``unknown`` here."""
    default_location: str | None = Field(default=None, min_length=1, max_length=120)
    """Location code (in this source's codes) for a dispense that names no ``location``."""


class FhirConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pseudonym_secret: SecretStr | None = None
    """Key of the HMAC that turns an encounter reference into ``encounter_ref``. Keep it
    stable: a new key gives every encounter a new pseudonym. Without it the connector
    refuses to work (503) rather than let an encounter id through."""
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_bundle_entries: int = Field(default=1000, ge=1)
    timezone: str = "UTC"
    """The zone of date-only times (``whenHandedOver = 2020-12-12`` is midnight there)."""
    used_quantity_extension: str = USED_QUANTITY_EXTENSION
    clients: dict[str, FhirClientProfile] = Field(default_factory=dict)

    @field_validator("pseudonym_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def profile(self, client: str) -> FhirClientProfile:
        return self.clients.get(client) or FhirClientProfile()

    def source_system(self, client: str) -> str:
        """The cross-reference namespace of a client's resources."""
        return self.profile(client).source_system or f"{NAME}:{client}"[:64]

    @staticmethod
    def event_source(client: str) -> str:
        """The events' ``source`` (scopes their idempotency keys on the bus): never change it."""
        return f"{NAME}/{client}"
