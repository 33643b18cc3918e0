"""Typed configuration of the GNU Health connector (one instance per GNU Health database)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from medbridge.canonical.inbound import ItemCodeKind

NAME = "gnuhealth"


class GnuHealthConfig(BaseModel):
    """Where the GNU Health (trytond) server is, who to log in as, how to poll it.

    ``source_system`` names whose codes the movements carry (cross-references are looked up
    under it); it defaults to ``gnuhealth:<database>``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: AnyHttpUrl
    """trytond's base URL, e.g. ``http://127.0.0.1:8000/``; calls go to ``<url>/<database>/``."""
    database: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.-]+$")
    user: str = Field(default="admin", min_length=1)
    password: SecretStr
    pseudonym_secret: SecretStr
    """Key of the HMAC that turns a prescription id into ``encounter_ref``. Keep it stable:
    a new key gives every encounter a new pseudonym."""
    source_system: str = Field(default="", max_length=64)
    poll_interval: float = Field(default=5.0, gt=0)
    overlap: float = Field(default=10.0, ge=0)
    """Seconds re-read before the cursor on every poll, for transactions that committed
    after a later one (their ``write_date`` is their start time, not their commit time)."""
    page_size: int = Field(default=200, ge=1, le=5000)
    timeout: float = Field(default=10.0, gt=0)
    var_dir: Path = Path("var")
    initial_since: AwareDatetime | None = None
    """Where a poller with no cursor file starts; None: from the first dispense ever."""
    item_code_kind: ItemCodeKind = ItemCodeKind.LOCAL
    """What ``product.code`` is at this site: the site's own code (default) or an NDC/GTIN."""

    @model_validator(mode="before")
    @classmethod
    def _default_source_system(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("source_system") and data.get("database"):
            data = {**data, "source_system": f"{NAME}:{data['database']}"}
        return data

    @field_validator("pseudonym_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @property
    def rpc_url(self) -> str:
        return f"{str(self.url).rstrip('/')}/{self.database}/"

    @property
    def event_source(self) -> str:
        """The events' ``source`` (scopes their idempotency keys on the bus): never change it."""
        return f"{NAME}/{self.database}"

    @property
    def cursor_file(self) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.source_system)
        return self.var_dir / "connectors" / NAME / f"{slug}.cursor.json"
