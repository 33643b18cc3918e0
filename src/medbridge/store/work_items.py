"""Human tasks: opened once per key, decided once, with who decided what and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from medbridge.canonical.tasks import Action, Decision, NewTask, TaskStatus, WorkQueue
from medbridge.store import audit
from medbridge.store.tables import work_items as t


@dataclass(frozen=True)
class WorkItem:
    id: int
    key: str
    queue: WorkQueue
    kind: str
    subject: str
    reason: str
    context: dict[str, Any]
    actions: tuple[Action, ...]
    status: TaskStatus
    correlation_id: str | None
    workflow_id: str | None
    decision: Decision | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime
    facility: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "queue": self.queue.value,
            "kind": self.kind,
            "subject": self.subject,
            "reason": self.reason,
            "context": self.context,
            "actions": [a.value for a in self.actions],
            "status": self.status.value,
            "correlation_id": self.correlation_id,
            "workflow_id": self.workflow_id,
            "decision": self.decision.model_dump(mode="json") if self.decision else None,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "created_at": self.created_at.isoformat(),
            "facility": self.facility,
        }


def _item(r: Any) -> WorkItem:
    return WorkItem(
        id=int(r.id),
        key=r.key,
        queue=WorkQueue(r.queue),
        kind=r.kind,
        subject=r.subject,
        reason=r.reason,
        context=dict(r.context),
        actions=tuple(Action(a) for a in r.actions),
        status=TaskStatus(r.status),
        correlation_id=r.correlation_id,
        workflow_id=r.workflow_id,
        decision=Decision.model_validate(r.decision) if r.decision else None,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        created_at=r.created_at,
        facility=r.facility,
    )


def open_task(conn: Connection, task: NewTask) -> tuple[WorkItem, bool]:
    """Open ``task`` unless a task with its key exists; return it and whether it is new."""
    found = by_key(conn, task.key)
    if found is not None:
        return found, False
    conn.execute(
        insert(t).values(
            key=task.key,
            queue=task.queue.value,
            kind=task.kind,
            subject=task.subject,
            reason=task.reason,
            context=task.model_dump(mode="json")["context"],
            actions=[a.value for a in task.actions],
            status=TaskStatus.OPEN.value,
            correlation_id=task.correlation_id,
            workflow_id=task.workflow_id,
            facility=task.facility,
            created_at=datetime.now(UTC),
        )
    )
    created = by_key(conn, task.key)
    assert created is not None
    return created, True


def by_key(conn: Connection, key: str) -> WorkItem | None:
    row = conn.execute(select(t).where(t.c.key == key)).first()
    return _item(row) if row else None


def get(conn: Connection, item_id: int) -> WorkItem | None:
    row = conn.execute(select(t).where(t.c.id == item_id)).first()
    return _item(row) if row else None


def listing(
    conn: Connection,
    *,
    queue: WorkQueue | None = None,
    status: TaskStatus | None = TaskStatus.OPEN,
    correlation_id: str | None = None,
    facilities: frozenset[str] | None = None,
    limit: int = 200,
) -> list[WorkItem]:
    """``facilities``: only the tasks about one of these (never a task of no facility)."""
    query = select(t).order_by(t.c.id).limit(limit)
    if facilities is not None:
        query = query.where(t.c.facility.in_(facilities))
    if queue is not None:
        query = query.where(t.c.queue == queue.value)
    if status is not None:
        query = query.where(t.c.status == status.value)
    if correlation_id is not None:
        query = query.where(t.c.correlation_id == correlation_id)
    return [_item(r) for r in conn.execute(query)]


def decide(
    conn: Connection, item_id: int, decision: Decision, decided_by: str, *, actor: str
) -> bool:
    """Record the decision if the task is still open; False if it was decided already.
    Audited as ``actor``'s (who acted: an API client, ``cli:<user>``) with the decision."""
    before = audit.row_state(conn, t, id=item_id)
    moved = conn.execute(
        update(t)
        .where(t.c.id == item_id, t.c.status == TaskStatus.OPEN.value)
        .values(
            status=TaskStatus.DECIDED.value,
            decision=decision.model_dump(mode="json"),
            decided_by=decided_by,
            decided_at=datetime.now(UTC),
        )
    )
    if moved.rowcount != 1:
        return False
    audit.append(
        conn,
        actor=actor,
        action="work_item.decide",
        target_type="work_item",
        target_id=item_id,
        before=before,
        after=audit.row_state(conn, t, id=item_id),
        detail={
            "queue": before["queue"] if before else None,
            "kind": before["kind"] if before else None,
            "decision": decision.model_dump(mode="json"),
            "decided_by": decided_by,
        },
    )
    return True
