"""Exception work queues: a task is opened once per key, listed in its queue, decided once
with one of its actions through the API or the CLI, with who decided what; the waiting
process is told (``on_decision``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.canonical.tasks import Action, Decision, NewTask, TaskStatus, WorkQueue
from medbridge.cli import app as cli
from medbridge.flows.work_queue import WorkQueues
from medbridge.governance.clients import Role
from medbridge.store.work_items import WorkItem

pytestmark = pytest.mark.db


def price_variance(key: str = "match:ACME:INV-1:price_variance") -> NewTask:
    return NewTask(
        key=key,
        queue=WorkQueue.AP,
        kind="price_variance",
        subject="ACME invoice INV-1",
        reason="line 2: 13.13 per BX invoiced, 12.50 ordered (+5.0 %, tolerance 2 %)",
        context={"invoice": "INV-1", "line": 2, "ordered": "12.50", "invoiced": "13.13"},
        actions=(Action.APPROVE, Action.ADJUST_PRICE, Action.REQUEST_CREDIT, Action.REJECT),
        correlation_id="0195f3c2-0000-7000-8000-000000000001",
        workflow_id="p2p:ACME:PO-7",
    )


@pytest.fixture
def client(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as c:
        c.headers["X-API-Key"] = medbridge.clients.register("ap-clerk", Role.INTEGRATION)
        yield c


def test_a_task_is_opened_once_and_decided_once_through_the_api(
    medbridge: MedBridge, client: TestClient
) -> None:
    told: list[WorkItem] = []
    queues = WorkQueues(medbridge.engine, on_decision=told.append)
    first = queues.open(price_variance())
    again = queues.open(price_variance())  # a retried step finds the same task
    assert first.id == again.id
    [listed] = client.get("/v1/work-items", params={"queue": "ap"}).json()["items"]
    assert listed["reason"].startswith("line 2: 13.13 per BX")
    assert listed["actions"] == ["approve", "adjust_price", "request_credit", "reject"]
    assert client.get("/v1/work-items", params={"queue": "pharmacy"}).json()["items"] == []

    refused = client.post(f"/v1/work-items/{first.id}/decision", json={"action": "close"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "action"]
    missing_price = client.post(
        f"/v1/work-items/{first.id}/decision", json={"action": "adjust_price"}
    )
    assert missing_price.status_code == 422

    # decided through the service the API uses, so the waiting process is told
    decided = queues.decide(first.id, decision(Action.REQUEST_CREDIT), decided_by="ap-clerk")
    assert decided.status is TaskStatus.DECIDED
    assert [t.id for t in told] == [first.id]
    stale = client.post(f"/v1/work-items/{first.id}/decision", json={"action": "approve"})
    assert stale.status_code == 409
    assert "decided by ap-clerk (request_credit)" in stale.json()["detail"]
    shown = client.get(f"/v1/work-items/{first.id}").json()
    assert shown["decision"]["action"] == "request_credit"
    assert shown["decided_by"] == "ap-clerk"
    assert client.get("/v1/work-items/999").status_code == 404


def decision(action: Action) -> Decision:
    return Decision(action=action, note="supplier agreed on the phone")


def test_the_api_records_the_deciding_client(medbridge: MedBridge, client: TestClient) -> None:
    item = medbridge.work_queues().open(price_variance("k-2"))
    answer = client.post(
        f"/v1/work-items/{item.id}/decision",
        json={"action": "adjust_price", "unit_price": "12.50", "note": "contract price"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["decided_by"] == "ap-clerk"
    assert answer.json()["decision"]["unit_price"] == "12.50"
    reader = medbridge.clients.register("auditor", Role.READER)
    other = medbridge.work_queues().open(price_variance("k-3"))
    forbidden = client.post(
        f"/v1/work-items/{other.id}/decision",
        json={"action": "approve"},
        headers={"X-API-Key": reader},
    )
    assert forbidden.status_code == 403


def test_cli_lists_and_decides(medbridge: MedBridge, database_url: str) -> None:
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    item = medbridge.work_queues().open(price_variance("k-4"))
    runner = CliRunner()
    listed = runner.invoke(cli, ["tasks", "list", "--queue", "ap"], env=env)
    assert "price_variance" in listed.output
    assert "1 task(s)" in listed.output
    wrong = runner.invoke(cli, ["tasks", "decide", str(item.id), "close", "--by", "ana"], env=env)
    assert wrong.exit_code == 1
    assert "allows approve" in wrong.output
    done = runner.invoke(cli, ["tasks", "decide", str(item.id), "approve", "--by", "ana"], env=env)
    assert done.exit_code == 0, done.output
    again = runner.invoke(cli, ["tasks", "decide", str(item.id), "reject", "--by", "bo"], env=env)
    assert again.exit_code == 1
    assert "decided by cli:ana" in again.output
    assert runner.invoke(cli, ["tasks", "list"], env=env).output.count("price_variance") == 0


def test_a_queue_with_owners_is_decided_by_them_or_an_admin(
    settings: object, engine: object
) -> None:
    from medbridge.settings import Settings

    assert isinstance(settings, Settings)
    mb = MedBridge.build(settings.model_copy(update={"queue_owners": {"ap": ["ap-clerk"]}}))
    queues = mb.work_queues()
    first = queues.open(price_variance("owned:1"))
    second = queues.open(price_variance("owned:2"))
    other = queues.open(price_variance("owned:3").model_copy(update={"queue": WorkQueue.PHARMACY}))
    with TestClient(mb.api()) as c:
        buyer = {"X-API-Key": mb.clients.register("buyer", Role.INTEGRATION)}
        clerk = {"X-API-Key": mb.clients.register("ap-clerk", Role.INTEGRATION)}
        admin = {"X-API-Key": mb.ensure_admin_key()[0]}
        approve = {"action": "approve"}
        refused = c.post(f"/v1/work-items/{first.id}/decision", json=approve, headers=buyer)
        assert refused.status_code == 403
        assert "ap queue, decided by ap-clerk; not by buyer" in refused.json()["detail"]
        assert c.post(f"/v1/work-items/{first.id}/decision", json=approve, headers=clerk).is_success
        assert c.post(
            f"/v1/work-items/{second.id}/decision", json=approve, headers=admin
        ).is_success
        assert c.post(f"/v1/work-items/{other.id}/decision", json=approve, headers=buyer).is_success
    mb.engine.dispose()
