"""Exception work queues: a process opens a human task (once per key) and waits; a person of
the owning queue decides through ``/v1/work-items`` or ``medbridge tasks``; the decision is
recorded with who made it, then handed to ``on_decision`` (the waiting workflow resumes).

Refusals are typed: ``TaskNotFound``, ``TaskAlreadyDecided`` (the first decision stands: a
second person acting on a stale screen must not overturn it), ``ActionNotAllowed`` (the task
offers a fixed set of actions: e.g. a duplicate invoice can be rejected or closed, not
approved).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from sqlalchemy import Engine

from medbridge.canonical.tasks import Decision, NewTask, TaskStatus, WorkQueue
from medbridge.observability.logging import get_logger
from medbridge.store import work_items as store
from medbridge.store.work_items import WorkItem

log = get_logger(__name__)


class TaskError(Exception):
    """Root of the work queue's refusals."""


class TaskNotFound(TaskError):
    pass


class TaskAlreadyDecided(TaskError):
    pass


class ActionNotAllowed(TaskError):
    pass


class NotQueueOwner(TaskError):
    """The queue has owners and the person deciding is not one of them."""


OnDecision = Callable[[WorkItem], None]


class WorkQueues:
    def __init__(
        self,
        engine: Engine,
        on_decision: OnDecision | None = None,
        owners: Mapping[WorkQueue, Collection[str]] | None = None,
    ) -> None:
        """``owners``: who may decide the tasks of a queue (client or person names); a queue
        not listed may be decided by any operator."""
        self.engine, self.on_decision = engine, on_decision
        self.owners = {queue: frozenset(names) for queue, names in (owners or {}).items()}

    def open(self, task: NewTask) -> WorkItem:
        with self.engine.begin() as conn:
            item, new = store.open_task(conn, task)
        if new:
            log.warning(
                "task.opened", id=item.id, queue=item.queue.value, kind=item.kind, key=item.key
            )
        return item

    def decide(
        self,
        item_id: int,
        decision: Decision,
        *,
        decided_by: str,
        override: bool = False,
        authorize: Callable[[WorkItem], None] | None = None,
        actor: str | None = None,
    ) -> WorkItem:
        """``override``: an administrator deciding outside the queue's owners. ``authorize``
        sees the task before anything changes and raises to refuse (the caller's permission
        for the task's queue, its facility). ``actor``: who is audited as acting (the API
        client, ``cli:<user>``), ``decided_by`` if not given."""
        with self.engine.begin() as conn:
            item = store.get(conn, item_id)
            if item is None:
                raise TaskNotFound(f"no work item {item_id}")
            if authorize is not None:
                authorize(item)
            owners = self.owners.get(item.queue)
            if owners and decided_by not in owners and not override:
                raise NotQueueOwner(
                    f"work item {item_id} is in the {item.queue.value} queue, decided by "
                    f"{', '.join(sorted(owners))}; not by {decided_by}"
                )
            if decision.action not in item.actions:
                allowed = ", ".join(a.value for a in item.actions)
                raise ActionNotAllowed(
                    f"work item {item_id} ({item.kind}) allows {allowed}, "
                    f"not {decision.action.value}"
                )
            if not store.decide(conn, item_id, decision, decided_by, actor=actor or decided_by):
                raise TaskAlreadyDecided(
                    f"work item {item_id} was decided by {item.decided_by} "
                    f"({item.decision.action.value if item.decision else '?'})"
                )
            decided = store.get(conn, item_id)
            assert decided is not None
        log.info(
            "task.decided",
            id=item_id,
            action=decision.action.value,
            decided_by=decided_by,
            workflow_id=decided.workflow_id,
        )
        if self.on_decision is not None:
            self.on_decision(decided)
        return decided

    def listing(self, queue: WorkQueue | None = None, *, open_only: bool = True) -> list[WorkItem]:
        with self.engine.connect() as conn:
            return store.listing(conn, queue=queue, status=TaskStatus.OPEN if open_only else None)
