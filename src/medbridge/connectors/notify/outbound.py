"""Delivery of a notice to every configured destination: a webhook (``POST`` of the notice as
JSON, any 2xx is delivered) and e-mail (one message through the SMTP relay). A destination
that fails raises ``NotifyError`` naming it; receivers should treat the notice's
(``rule``, ``incident``, ``state``) as its identity, since a notice whose delivery failed
is sent again."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

import httpx

from medbridge.connectors.notify.config import NotifyConfig
from medbridge.connectors.notify.errors import NotifyError


class Notifier:
    def __init__(self, config: NotifyConfig) -> None:
        self.config = config

    @property
    def configured(self) -> bool:
        return bool(
            self.config.webhook_url or (self.config.smtp_host and self.config.smtp_recipients)
        )

    def send(self, subject: str, document: dict[str, Any]) -> None:
        c = self.config
        if c.webhook_url:
            try:
                answer = httpx.post(c.webhook_url, json=document, timeout=c.webhook_timeout)
            except httpx.HTTPError as error:
                raise NotifyError(f"webhook {c.webhook_url}: {type(error).__name__}") from error
            if not answer.is_success:
                raise NotifyError(f"webhook {c.webhook_url}: HTTP {answer.status_code}")
        if c.smtp_host and c.smtp_recipients:
            message = EmailMessage()
            message["Subject"], message["From"] = subject, c.smtp_sender
            message["To"] = ", ".join(c.smtp_recipients)
            message.set_content("\n".join(f"{k}: {v}" for k, v in document.items()))
            try:
                with smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=c.webhook_timeout) as smtp:
                    smtp.send_message(message)
            except (OSError, smtplib.SMTPException) as error:
                raise NotifyError(f"smtp {c.smtp_host}: {type(error).__name__}") from error
