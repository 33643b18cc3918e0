"""The audit log: every kind of change writes exactly one row, with who did it, in the
change's own transaction (a rolled-back change writes none); ``medbridge audit verify``
finds any row changed or removed; ``GET /v1/audit`` reads it; concurrent writers keep one
linear chain."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select, update
from tests.ledger_support import record_entries
from typer.testing import CliRunner

from medbridge.app import MedBridge
from medbridge.canonical.base import Money
from medbridge.canonical.erp import ErpProduct, ErpSupplier
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.inbound import ExternalItem, InboundMovement, ItemCodeKind
from medbridge.canonical.masterdata import Supplier
from medbridge.canonical.movements import MovementKind, StockMovement
from medbridge.canonical.tasks import Action, Decision, NewTask, WorkQueue
from medbridge.cli import app as cli
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.domain.audit import AuditEntry
from medbridge.flows.erp_sync import sync_from_erp
from medbridge.flows.intake import Submission
from medbridge.flows.work_queue import WorkQueues
from medbridge.governance.clients import Role, hash_key
from medbridge.masterdata.repository import MasterDataRepository
from medbridge.runtime.processes import Role as Process
from medbridge.runtime.processes import record_start
from medbridge.settings import Settings
from medbridge.store import audit
from medbridge.store import erp_postings as erp_store
from medbridge.store.tables import audit_chain_head, audit_log, suppliers

pytestmark = pytest.mark.db

SOURCE = "ehr:north"


def rows(engine: Engine, after: int = 0) -> list[AuditEntry]:
    with engine.connect() as conn:
        return [e for e in audit.entries(conn, limit=100_000) if e.seq > after]


def last_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(audit_log.c.seq), 0))).scalar_one())


def one_new(engine: Engine, since: int) -> AuditEntry:
    """The one row written after ``since`` (fails if none or several)."""
    new = rows(engine, since)
    assert len(new) == 1, [(e.seq, e.actor, e.action) for e in new]
    return new[0]


@pytest.fixture
def admin(medbridge: MedBridge) -> Iterator[TestClient]:
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        yield client


@pytest.fixture
def cli_env(database_url: str, medbridge: MedBridge) -> dict[str, str]:
    return {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}


def draft(code: str = "99999-0001-01", location: str = "WARD-7") -> InboundMovement:
    return InboundMovement(
        source_system=SOURCE,
        kind=MovementKind.DISPENSE,
        item=ExternalItem(kind=ItemCodeKind.NDC, code=code, text="Mystery drug"),
        location=location,
        quantity=Decimal(1),
        occurred_at=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
    )


# --- every kind of change: one row, the right actor ------------------------------------------


def test_the_seed_is_audited_once_and_a_re_seed_changes_nothing(medbridge: MedBridge) -> None:
    seeded = rows(medbridge.engine)
    assert seeded, "the demo seed wrote no audit row"
    assert {e.actor for e in seeded if e.action != "client.register"} == {"system:demo-seed"}
    actions = {e.action for e in seeded}
    assert {"masterdata.item.save", "masterdata.location.save", "xref.location.map"} <= actions
    since = last_seq(medbridge.engine)
    medbridge.seed_demo()
    assert rows(medbridge.engine, since) == []  # nothing changed, nothing recorded


def test_a_master_data_write_records_its_before_and_after(engine: Engine) -> None:
    repo = MasterDataRepository(engine)
    with engine.begin() as conn:
        repo.save_supplier(conn, Supplier(code="ACME", name="Acme"), actor="buyer-app")
    created = one_new(engine, 0)
    assert (created.actor, created.action, created.target_type, created.target_id) == (
        "buyer-app",
        "masterdata.supplier.save",
        "supplier",
        "ACME",
    )
    assert created.before_digest is None
    assert created.after_digest is not None
    assert created.detail["changes"]["after"]["name"] == "Acme"

    with engine.begin() as conn:  # the same again: no change, no row
        repo.save_supplier(conn, Supplier(code="ACME", name="Acme"), actor="buyer-app")
    assert last_seq(engine) == 1
    with engine.begin() as conn:
        repo.save_supplier(conn, Supplier(code="ACME", name="Acme Corp"), actor="cli:ops")
    renamed = one_new(engine, 1)
    assert renamed.actor == "cli:ops"
    assert renamed.before_digest == created.after_digest
    assert renamed.after_digest != created.after_digest
    assert renamed.detail["changes"] == {"before": {"name": "Acme"}, "after": {"name": "Acme Corp"}}


def test_an_erp_sync_is_audited_as_its_caller_and_a_re_sync_changes_nothing(
    medbridge: MedBridge,
) -> None:
    erp = FakeErp(
        products=[ErpProduct("11", "VANCO-1G", "Vancomycin", "VIAL")],
        suppliers=[ErpSupplier("8", "NEWCO", "New supplier")],
    )
    since = last_seq(medbridge.engine)
    sync_from_erp(medbridge.engine, medbridge.masterdata, erp, "tryton:erp", actor="cli:ops")
    synced = rows(medbridge.engine, since)
    assert [(e.actor, e.action, e.target_id) for e in synced] == [
        ("cli:ops", "xref.item_code.link", "erp/tryton:erp/11"),
        ("cli:ops", "masterdata.supplier.save", "NEWCO"),
    ]
    since = last_seq(medbridge.engine)
    sync_from_erp(medbridge.engine, medbridge.masterdata, erp, "tryton:erp", actor="cli:ops")
    assert rows(medbridge.engine, since) == []


def test_cross_references_through_the_api_name_the_client(
    admin: TestClient, medbridge: MedBridge
) -> None:
    for path, body, action in (
        (
            "items",
            {"system": "ndc", "code": "99999-0001-01", "item": "VANCO-1G"},
            "xref.item_code.link",
        ),
        (
            "locations",
            {"source_system": SOURCE, "code": "WARD-7", "target": "H1-ICU"},
            "xref.location.map",
        ),
        (
            "cost-centers",
            {"source_system": SOURCE, "code": "4EAST", "target": "H1-CC-ICU"},
            "xref.cost_center.map",
        ),
        (
            "units",
            {"source_system": SOURCE, "code": "385055001", "target": "CAP"},
            "xref.unit.map",
        ),
    ):
        since = last_seq(medbridge.engine)
        answer = admin.post(f"/v1/cross-references/{path}", json=body)
        assert answer.status_code == 201, answer.text
        row = one_new(medbridge.engine, since)
        assert (row.actor, row.action) == ("admin", action)


def test_cross_references_through_the_cli_name_the_os_user(
    medbridge: MedBridge, cli_env: dict[str, str]
) -> None:
    runner = CliRunner()
    for args, action in (
        (["xref", "item", "VANCO-1G", "--system", "ndc", "--code", "99999-0001-01"], "item_code"),
        (["xref", "location", SOURCE, "WARD-7", "H1-ICU"], "location"),
        (["xref", "cost-center", SOURCE, "4EAST", "H1-CC-ICU"], "cost_center"),
        (["xref", "unit", SOURCE, "385055001", "CAP"], "unit"),
    ):
        since = last_seq(medbridge.engine)
        result = runner.invoke(cli, args, env=cli_env)
        assert result.exit_code == 0, result.output
        row = one_new(medbridge.engine, since)
        assert row.actor == audit.cli_actor()
        assert row.action in (f"xref.{action}.map", f"xref.{action}.link")


def test_clients_added_and_revoked_through_the_cli(
    medbridge: MedBridge, cli_env: dict[str, str]
) -> None:
    runner = CliRunner()
    since = last_seq(medbridge.engine)
    added = runner.invoke(cli, ["clients", "add", "ward-app", "--role", "reader"], env=cli_env)
    assert added.exit_code == 0, added.output
    key = added.output.strip()
    row = one_new(medbridge.engine, since)
    assert (row.actor, row.action, row.target_id) == (
        audit.cli_actor(),
        "client.register",
        "ward-app",
    )
    logged = json.dumps(row.detail)
    assert "key_hash" in logged  # it changed ...
    assert key not in logged
    assert medbridge.clients.authenticate(key) is not None
    assert hash_key(key) not in logged  # ... but its value is not in the log

    since = last_seq(medbridge.engine)
    assert runner.invoke(cli, ["clients", "revoke", "ward-app"], env=cli_env).exit_code == 0
    row = one_new(medbridge.engine, since)
    assert (row.actor, row.action) == (audit.cli_actor(), "client.revoke")
    assert row.detail["changes"]["before"] == {"revoked_at": None}
    since = last_seq(medbridge.engine)
    assert runner.invoke(cli, ["clients", "revoke", "ward-app"], env=cli_env).exit_code == 1
    assert rows(medbridge.engine, since) == []  # nothing revoked, nothing recorded


def test_exception_replays_and_discards_name_the_client(
    admin: TestClient, medbridge: MedBridge
) -> None:
    parked = medbridge.inbound.receive([draft()], source="ehr", idempotency_key="ehr:msg-1")
    other = medbridge.inbound.receive(
        [draft(code="99999-0002-01")], source="ehr", idempotency_key="ehr:msg-2"
    )
    since = last_seq(medbridge.engine)
    assert admin.post(f"/v1/exceptions/{parked.exception_id}/replay").json()["outcome"] == (
        "exception"
    )
    still = one_new(medbridge.engine, since)
    assert (still.actor, still.action, still.target_id) == (
        "admin",
        "inbound_exception.replay",
        str(parked.exception_id),
    )
    assert still.detail["outcome"] == "exception"
    assert "WARD-7" not in json.dumps(still.detail)  # the values stay out; the fields are named
    assert still.detail["unresolved"] == ["item", "location"]

    for path, body in (
        ("items", {"system": "ndc", "code": "99999-0001-01", "item": "VANCO-1G"}),
        ("locations", {"source_system": SOURCE, "code": "WARD-7", "target": "H1-ICU"}),
    ):
        assert admin.post(f"/v1/cross-references/{path}", json=body).status_code == 201
    since = last_seq(medbridge.engine)
    assert admin.post(f"/v1/exceptions/{parked.exception_id}/replay").json()["outcome"] == (
        "accepted"
    )
    applied = one_new(medbridge.engine, since)
    assert (applied.actor, applied.action, applied.detail["outcome"]) == (
        "admin",
        "inbound_exception.replay",
        "applied",
    )
    assert applied.before_digest != applied.after_digest

    since = last_seq(medbridge.engine)
    discarded = admin.post(
        f"/v1/exceptions/{other.exception_id}/discard", json={"reason": "test message"}
    )
    assert discarded.status_code == 200
    row = one_new(medbridge.engine, since)
    assert (row.actor, row.action, row.detail["outcome"]) == (
        "admin",
        "inbound_exception.discard",
        "discarded",
    )
    since = last_seq(medbridge.engine)
    again = admin.post(f"/v1/exceptions/{other.exception_id}/discard", json={"reason": "twice"})
    assert again.status_code == 409
    assert rows(medbridge.engine, since) == []


def test_dead_letter_replays_name_the_client_failed_or_applied(
    admin: TestClient, medbridge: MedBridge
) -> None:
    def movement(kind: MovementKind, quantity: str, **extra: Any) -> StockMovement:
        return StockMovement(
            kind=kind,
            item="AMPI-250",
            location="H2-ED",
            quantity=Decimal(quantity),
            unit="CAP",
            occurred_at=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
            **extra,
        )

    consumer = medbridge.consumers["ledger"]
    medbridge.intake.submit(
        [Submission(movement(MovementKind.WASTAGE, "5", reason="expired"), "w1")], "test"
    )
    consumer.drain()  # beyond the stock: dead-lettered at once
    [dead] = admin.get("/v1/dead-letters", params={"group": "ledger"}).json()["items"]

    since = last_seq(medbridge.engine)
    failed = admin.post("/v1/dead-letters/replay", json={"group": "ledger", "ids": [dead["id"]]})
    assert failed.json()["applied"] == []
    row = one_new(medbridge.engine, since)
    assert (row.actor, row.action, row.target_id) == (
        "admin",
        "dead_letter.replay_failed",
        str(dead["id"]),
    )
    assert row.detail["error_type"] == "InsufficientStock"
    assert row.detail["event_id"] == dead["event_id"]

    receipt = movement(MovementKind.RECEIPT, "20", unit_cost=Money(amount="0.40"))
    medbridge.intake.submit([Submission(receipt, "r1")], "test")
    consumer.drain()
    since = last_seq(medbridge.engine)
    applied = admin.post("/v1/dead-letters/replay", json={"group": "ledger", "ids": [dead["id"]]})
    assert applied.json()["applied"] == [dead["id"]]
    row = one_new(medbridge.engine, since)
    assert (row.actor, row.action) == ("admin", "dead_letter.replay")


def test_work_item_decisions_name_who_acted(medbridge: MedBridge) -> None:
    def task(key: str) -> NewTask:
        return NewTask(
            key=key,
            queue=WorkQueue.AP,
            kind="price_variance",
            subject="ACME invoice INV-1",
            reason="line 2 over contract",
            context={"invoice": "INV-1"},
            actions=(Action.APPROVE, Action.REJECT),
        )

    queues = WorkQueues(medbridge.engine)
    first, second = queues.open(task("t1")), queues.open(task("t2"))
    with TestClient(medbridge.api()) as client:
        client.headers["X-API-Key"] = medbridge.clients.register("ap-clerk", Role.INTEGRATION)
        since = last_seq(medbridge.engine)
        refused = client.post(f"/v1/work-items/{first.id}/decision", json={"action": "close"})
        assert refused.status_code == 422
        assert rows(medbridge.engine, since) == []  # refused: nothing decided, nothing logged
        answer = client.post(
            f"/v1/work-items/{first.id}/decision", json={"action": "approve", "note": "ok"}
        )
        assert answer.status_code == 200, answer.text
        row = one_new(medbridge.engine, since)
        assert (row.actor, row.action, row.target_id) == (
            "ap-clerk",
            "work_item.decide",
            str(first.id),
        )
        assert row.detail["decision"]["action"] == "approve"
        since = last_seq(medbridge.engine)
        again = client.post(f"/v1/work-items/{first.id}/decision", json={"action": "reject"})
        assert again.status_code == 409
        assert rows(medbridge.engine, since) == []

    since = last_seq(medbridge.engine)
    decision = Decision(action=Action.REJECT, note="sent twice")
    queues.decide(second.id, decision, decided_by="cli:pharmacist", actor="cli:osuser")
    row = one_new(medbridge.engine, since)
    assert (row.actor, row.detail["decided_by"]) == ("cli:osuser", "cli:pharmacist")


def test_an_erp_requeue_names_the_client(admin: TestClient, medbridge: MedBridge) -> None:
    amount = Decimal("12.50")
    entry = JournalEntry(
        entry_id="JE-0001",
        posting_date=datetime(2026, 11, 20, tzinfo=UTC).date(),
        description="test entry",
        source_event_id="event-1",
        correlation_id="corr-1",
        lines=(
            JournalLine(account="5100-H1", debit=amount, cost_center="H1-CC-PHARM", facility="H1"),
            JournalLine(account="1300-H1", credit=amount, facility="H1"),
        ),
    )
    with medbridge.engine.begin() as conn:
        record_entries(conn, [entry])
        erp_store.mark_failed(conn, "tryton", "JE-0001", "field account: unknown 5100-H1")
    since = last_seq(medbridge.engine)
    assert admin.post("/v1/erp-postings/JE-0001/requeue").status_code == 200
    row = one_new(medbridge.engine, since)
    assert (row.actor, row.action, row.target_id) == ("admin", "erp_posting.requeue", "JE-0001")
    assert row.detail["last_error"] == "field account: unknown 5100-H1"
    since = last_seq(medbridge.engine)
    assert admin.post("/v1/erp-postings/JE-0001/requeue").status_code == 409  # pending now
    assert rows(medbridge.engine, since) == []


def test_a_process_start_records_its_settings_with_the_secrets_redacted(
    engine: Engine, settings: Settings
) -> None:
    secrets = {
        "admin_api_key": "admin-key-do-not-log",
        "erp_password": "erp-password-do-not-log",
        "pseudonym_secret": "pseudonym-do-not-log",
        "gnuhealth_password": "gnuhealth-do-not-log",
    }
    with_secrets = settings.model_copy(update={k: _secret(v) for k, v in secrets.items()})
    record_start(SimpleNamespace(settings=with_secrets, engine=engine), Process.WORKER)  # type: ignore[arg-type]
    row = one_new(engine, 0)
    assert (row.actor, row.action, row.target_type) == (
        "system:worker",
        "settings.start",
        "process",
    )
    logged = json.dumps(row.detail)
    for value in secrets.values():
        assert value not in logged
    recorded = row.detail["settings"]
    assert recorded["erp_password"] == "<redacted>"
    assert recorded["bus_partitions"] == settings.bus_partitions
    assert recorded["database_url"] == settings.database_url  # no password in it to hide
    assert row.after_digest is not None


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


# --- a rolled-back change leaves no row ------------------------------------------------------


def test_a_rolled_back_change_writes_no_audit_row(engine: Engine) -> None:
    repo = MasterDataRepository(engine)
    inside: list[int] = []

    def change_then_fail() -> None:
        with engine.begin() as conn:
            repo.save_supplier(conn, Supplier(code="ACME", name="Acme"), actor="buyer-app")
            inside.append(rows_in(conn))  # written, inside the transaction
            raise RuntimeError("the change fails after its write")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert inside == [1]
    assert rows(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(suppliers)).scalar_one() == 0
    assert audit.verify(engine).intact


def rows_in(conn: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def test_refused_api_changes_write_no_audit_row(admin: TestClient, medbridge: MedBridge) -> None:
    since = last_seq(medbridge.engine)
    unknown_item = admin.post(
        "/v1/cross-references/items", json={"system": "ndc", "code": "1234-5678-90", "item": "NO"}
    )
    assert unknown_item.status_code == 422
    unknown_target = admin.post(  # the foreign key refuses it inside the transaction
        "/v1/cross-references/locations",
        json={"source_system": SOURCE, "code": "WARD-9", "target": "NOWHERE"},
    )
    assert unknown_target.status_code == 422
    taken = admin.post(  # VANCO-1G's code, now claimed for another item
        "/v1/cross-references/items",
        json={"system": "ndc", "code": "1111-2222-33", "item": "VANCO-1G"},
    )
    assert taken.status_code == 201
    since = last_seq(medbridge.engine)
    conflict = admin.post(
        "/v1/cross-references/items",
        json={"system": "ndc", "code": "1111-2222-33", "item": "AMPI-250"},
    )
    assert conflict.status_code == 422
    assert rows(medbridge.engine, since) == []
    assert audit.verify(medbridge.engine).intact


# --- medbridge audit verify ------------------------------------------------------------------


@pytest.fixture
def chain(engine: Engine, database_url: str) -> dict[str, str]:
    """Five audited changes on an empty database; the CLI's environment."""
    repo = MasterDataRepository(engine)
    for n in range(1, 6):
        with engine.begin() as conn:
            repo.save_supplier(conn, Supplier(code=f"S{n}", name=f"Supplier {n}"), actor="t")
    assert last_seq(engine) == 5
    return {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}


def verify(env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", "verify"], env=env)
    return result.exit_code, " ".join(result.output.split())


def test_verify_passes_an_intact_chain(chain: dict[str, str]) -> None:
    code, output = verify(chain)
    assert code == 0, output
    assert "audit chain intact: 5 row(s) verified" in output


def test_verify_passes_an_empty_log(engine: Engine, database_url: str) -> None:
    code, output = verify({"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false"})
    assert (code, output) == (0, "audit chain intact: 0 row(s) verified")


TAMPERED: dict[str, Any] = {
    "seq": 99,
    "at": datetime(2026, 1, 1, tzinfo=UTC),
    "actor": "mallory",
    "action": "masterdata.item.save",
    "target_type": "item",
    "target_id": "S9",
    "before_digest": "f" * 64,
    "after_digest": "e" * 64,
    "detail": {"changes": {"before": None, "after": {"name": "Someone else"}}},
    "prev_hash": "1" * 64,
    "hash": "2" * 64,
}


@pytest.mark.parametrize("column", sorted(TAMPERED))
def test_verify_names_a_row_updated_in_any_column(
    engine: Engine, chain: dict[str, str], column: str
) -> None:
    with engine.begin() as conn:
        changed = conn.execute(
            update(audit_log).where(audit_log.c.seq == 3).values({column: TAMPERED[column]})
        )
        assert changed.rowcount == 1
    code, output = verify(chain)
    assert code == 1, output
    assert "audit chain broken at row 3:" in output
    assert "2 row(s) verified before it" in output


def test_verify_names_a_row_whose_time_moved_by_a_microsecond(
    engine: Engine, chain: dict[str, str]
) -> None:
    with engine.connect() as conn:
        at = conn.execute(select(audit_log.c.at).where(audit_log.c.seq == 4)).scalar_one()
    with engine.begin() as conn:
        conn.execute(
            update(audit_log).where(audit_log.c.seq == 4).values(at=at + timedelta(microseconds=1))
        )
    code, output = verify(chain)
    assert code == 1
    assert "audit chain broken at row 4: row 4: its content does not match its hash" in output


def test_verify_names_a_deleted_middle_row(engine: Engine, chain: dict[str, str]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 3))
    code, output = verify(chain)
    assert code == 1
    assert "audit chain broken at row 3: row 3 is missing (the next row is 4)" in output


def test_verify_names_a_deleted_last_row(engine: Engine, chain: dict[str, str]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 5))
    code, output = verify(chain)
    assert code == 1
    assert "audit chain broken at row 5: row 5 is missing" in output
    assert "the chain head records 5 row(s), the log ends at row 4" in output


def test_verify_names_a_chain_head_rewound_with_its_tail(
    engine: Engine, chain: dict[str, str]
) -> None:
    """Two rows cut off and the head set to the third's seq, with a made-up hash."""
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq >= 4))
        conn.execute(update(audit_chain_head).values(seq=3, hash="9" * 64))
    code, output = verify(chain)
    assert code == 1
    assert "audit chain broken at row 3: the chain head's hash does not match" in output


def test_verify_names_a_deleted_chain_head(engine: Engine, chain: dict[str, str]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(audit_chain_head))
    code, output = verify(chain)
    assert code == 1
    assert "audit chain broken at row 5: the chain head record is missing" in output


# --- GET /v1/audit ---------------------------------------------------------------------------


def test_the_api_reads_the_log_filtered_in_keyset_pages(
    admin: TestClient, medbridge: MedBridge
) -> None:
    everything = rows(medbridge.engine)
    seen: list[int] = []
    cursor: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 7} | ({"cursor": cursor} if cursor is not None else {})
        page = admin.get("/v1/audit", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [r["seq"] for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [e.seq for e in everything]
    first = admin.get("/v1/audit", params={"limit": 1}).json()["items"][0]
    assert first["hash"] == everything[0].hash
    assert first["prev_hash"] == "0" * 64

    admin.post(
        "/v1/cross-references/locations",
        json={"source_system": SOURCE, "code": "WARD-7", "target": "H1-ICU"},
    )
    mine = admin.get("/v1/audit", params={"actor": "admin", "action": "xref.location.map"})
    [row] = mine.json()["items"]
    assert (row["target_type"], row["target_id"]) == ("location_xref", f"{SOURCE}/WARD-7")
    by_target = admin.get(
        "/v1/audit", params={"target_type": "location_xref", "target_id": f"{SOURCE}/WARD-7"}
    )
    assert [r["seq"] for r in by_target.json()["items"]] == [row["seq"]]
    newest = admin.get("/v1/audit", params={"order": "desc", "limit": 1}).json()["items"]
    assert newest[0]["seq"] == row["seq"]

    at = datetime.fromisoformat(row["at"])
    window = {"since": at.isoformat(), "until": (at + timedelta(microseconds=1)).isoformat()}
    assert row["seq"] in [r["seq"] for r in admin.get("/v1/audit", params=window).json()["items"]]
    later = {"since": (at + timedelta(microseconds=1)).isoformat(), "action": "xref.location.map"}
    assert admin.get("/v1/audit", params=later).json()["items"] == []


def test_the_api_bounds_its_parameters_and_is_for_admins_only(
    admin: TestClient, medbridge: MedBridge
) -> None:
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"cursor": 2**63},
        {"cursor": -1},
        {"since": "2026-12-01T00:00:00"},  # no offset: which time is that?
        {"actor": "x" * 201},
        {"order": "sideways"},
    ):
        assert admin.get("/v1/audit", params=params).status_code == 422, params
    reader = medbridge.clients.register("auditor", Role.READER)
    assert admin.get("/v1/audit", headers={"X-API-Key": reader}).status_code == 403
    anonymous = TestClient(admin.app)
    assert anonymous.get("/v1/audit").status_code == 401
    schema = admin.get("/openapi.json").json()
    ok = schema["paths"]["/v1/audit"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/AuditPage"}


# --- one linear chain under concurrent writers -----------------------------------------------


def test_concurrent_changes_keep_one_linear_chain(engine: Engine) -> None:
    """Writers whose changes lock nothing else in common (decisions of different work items):
    only the chain head orders their appends."""
    threads, each = 6, 15
    queues = WorkQueues(engine)
    tasks = [
        queues.open(
            NewTask(
                key=f"t{n}-{i}",
                queue=WorkQueue.PHARMACY,
                kind="count",
                subject=f"task {n}-{i}",
                reason="test",
                context={},
                actions=(Action.APPROVE,),
            )
        ).id
        for n in range(threads)
        for i in range(each)
    ]
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            for item in tasks[n * each : (n + 1) * each]:
                decision = Decision(action=Action.APPROVE)
                queues.decide(item, decision, decided_by=f"w{n}")
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    written = rows(engine)
    assert [e.seq for e in written] == list(range(1, threads * each + 1))
    for earlier, later in itertools.pairwise(written):
        assert later.prev_hash == earlier.hash
    result = audit.verify(engine)
    assert (result.intact, result.verified) == (True, threads * each)
    by_actor: dict[str, int] = {}
    for e in written:
        by_actor[e.actor] = by_actor.get(e.actor, 0) + 1
    assert by_actor == {f"w{n}": each for n in range(threads)}
