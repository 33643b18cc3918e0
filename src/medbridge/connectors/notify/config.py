"""Where notifications go (built by the runtime from ``MEDBRIDGE_ALERT_*`` settings)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class NotifyConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    webhook_url: str | None = None
    """POSTed one JSON document per notice."""
    webhook_timeout: float = Field(default=5.0, gt=0)
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "medbridge@localhost"
    smtp_recipients: tuple[str, ...] = ()
