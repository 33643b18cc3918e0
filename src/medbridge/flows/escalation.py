"""A workflow asks a person: it opens a task in a work queue and waits for the decision.

The task is keyed (``NewTask.key``), so a step that DBOS runs again after a crash finds the
task it opened. The decision reaches the waiting workflow by ``DBOS.send`` (topic
``decision``, see ``decision_message``); the workflow also re-reads its task every ``poll``
seconds, so a decision recorded just before a crash (and never sent) is not lost.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from medbridge.canonical.tasks import Action, NewTask, WorkQueue
from medbridge.flows.procurement_runtime import order_correlation, runtime, steady
from medbridge.store import work_items


def approved(reference: str, key: str, kind: str, reason: str) -> bool:
    """Ask procurement about the order: approve (go on) or close (stop)."""
    decision = escalate(
        reference,
        NewTask(
            key=f"{reference}:{key}",
            queue=WorkQueue.PROCUREMENT,
            kind=kind,
            subject=f"purchase order {reference}",
            reason=reason,
            actions=(Action.APPROVE, Action.CLOSE),
        ),
    )
    return bool(decision["action"] == Action.APPROVE)


def escalate(workflow_id: str, task: NewTask) -> dict[str, Any]:
    """Open ``task`` for this workflow and wait for its decision (sent, or re-read)."""
    item_id = _open_task(
        task.model_copy(update={"workflow_id": workflow_id}).model_dump(mode="json")
    )
    while True:
        message = DBOS.recv("decision", timeout_seconds=runtime().policy.poll)
        if message is not None and message.get("item_id") == item_id:
            return dict(message)
        decided = _decided(item_id)
        if decided is not None:
            return decided


@DBOS.step()
@steady
def _open_task(task: dict[str, Any]) -> int:
    new = NewTask.model_validate(task)
    if new.correlation_id is None and new.workflow_id:
        new = new.model_copy(update={"correlation_id": order_correlation(new.workflow_id)})
    return runtime().work_queues.open(new).id


@DBOS.step()
@steady
def _decided(item_id: int) -> dict[str, Any] | None:
    with runtime().engine.connect() as conn:
        item = work_items.get(conn, item_id)
    if item is None or item.decision is None:
        return None
    return decision_message(item.id, item.decision.model_dump(mode="json"), item.decided_by)


def decision_message(
    item_id: int, decision: dict[str, Any], decided_by: str | None
) -> dict[str, Any]:
    return {"item_id": item_id, **decision, "decided_by": decided_by}
