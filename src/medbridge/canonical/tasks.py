"""Human tasks (v1): exceptions a process cannot settle alone, each in the work queue of the
people who can (pharmacy, procurement, accounts payable), with the full context, the actions
allowed on it, and, once decided, who decided what.

A waiting process names the task by a stable ``key`` (e.g. ``match:ACME:INV-1:price_variance``)
so that opening it again (a retried step) finds the same task, and it resumes on the decision.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from medbridge.canonical.base import CanonicalModel


class WorkQueue(StrEnum):
    PHARMACY = "pharmacy"
    PROCUREMENT = "procurement"
    AP = "ap"  # accounts payable


class Action(StrEnum):
    APPROVE = "approve"  # accept as it is (e.g. post the invoice despite the variance)
    REJECT = "reject"  # refuse (the shipment, the invoice): the process compensates
    ADJUST_QUANTITY = "adjust_quantity"  # continue with the corrected ``quantity``
    ADJUST_PRICE = "adjust_price"  # continue with the corrected ``unit_price``
    REQUEST_CREDIT = "request_credit"  # ask the supplier for a credit memo, then continue
    CLOSE = "close"  # nothing more to do: end the process
    REQUEST_COUNT = "request_count"  # a physical count was asked for (it returns as a count
    # adjustment); used on stock discrepancies


class TaskStatus(StrEnum):
    OPEN = "open"
    DECIDED = "decided"


class NewTask(CanonicalModel):
    key: str = Field(min_length=1, max_length=200)
    queue: WorkQueue
    kind: str = Field(min_length=1, max_length=64)
    """What went wrong, e.g. ``price_variance``, ``ack_overdue``, ``invoice_without_receipt``."""
    subject: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=1000)
    context: dict[str, Any] = {}
    actions: tuple[Action, ...] = Field(min_length=1)
    correlation_id: str | None = Field(default=None, max_length=36)
    workflow_id: str | None = Field(default=None, max_length=200)
    """The waiting process to resume on the decision."""
    facility: str | None = Field(default=None, max_length=64)
    """The facility the task is about (None: several or none; then only a client bound to
    no facility sees it)."""


class Decision(CanonicalModel):
    action: Action
    quantity: Decimal | None = Field(default=None, gt=0, max_digits=18, decimal_places=6)
    unit_price: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=6)
    note: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _values(self) -> Decision:
        if self.action is Action.ADJUST_QUANTITY and self.quantity is None:
            raise ValueError("quantity: adjust_quantity needs the corrected quantity")
        if self.action is Action.ADJUST_PRICE and self.unit_price is None:
            raise ValueError("unit_price: adjust_price needs the corrected unit price")
        return self
