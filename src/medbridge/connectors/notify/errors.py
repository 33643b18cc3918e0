"""Notification errors.

NotifyError        a notice could not be delivered (webhook refused or unreachable, SMTP
                   failed); nothing is marked as sent, so the next round sends it again.
"""

from __future__ import annotations


class NotifyError(Exception):
    """A notice could not be delivered to one of its destinations."""
