"""Notifications out: a JSON webhook and e-mail (SMTP) for alerts (``flows.alerts``)."""

from medbridge.connectors.notify.config import NotifyConfig
from medbridge.connectors.notify.errors import NotifyError
from medbridge.connectors.notify.outbound import Notifier

__all__ = ["Notifier", "NotifyConfig", "NotifyError"]
