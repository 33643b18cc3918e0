"""An 832 price catalog from a supplier proposes contract price changes (issue 18): within
the tolerance it applies (audited with the catalog as source), beyond it a procurement task
decides (approve applies, reject changes nothing), an unknown item is reported, a resend
proposes nothing new. Built from the shared HIBCC 832 samples (their ISA12 ``00040`` fixed to
``00401``: SOURCES.md flags it) against the demo's MEDSURG contract for DRAPE-SM (2.94 per EA;
1 CA = 20 EA, the BX pack carries the sample's GTIN 30387698433527)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from medbridge.app import MedBridge, contract_catalog_of
from medbridge.canonical.partners import OwnIdentity, TradingPartner
from medbridge.canonical.tasks import Action, Decision
from medbridge.cli import app as cli
from medbridge.flows.work_queue import WorkQueues
from medbridge.governance.permissions import Role
from medbridge.store.tables import audit_log, work_items
from paths import SAMPLES

pytestmark = pytest.mark.db

MEDIA = {"Content-Type": "application/edi-x12"}
CONTRACT = "MEDSURG-DRAPE-SM"
PARTNER = TradingPartner(code="MEDSURG", x12_qualifier="16", x12_id="102096559TEST")
OWN = OwnIdentity(x12_qualifier="14", x12_id="PARTNERTEST")
Open = Callable[..., tuple[TestClient, MedBridge]]


def sample(name: str, *replacements: tuple[str, str]) -> bytes:
    text = (SAMPLES / "x12" / name).read_text(encoding="utf-8-sig")
    text = text.replace("^U^00040^", "^U^00401^")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text.encode()


def list_832(*replacements: tuple[str, str]) -> bytes:
    return sample("832-oopfactory-hibcc-medsurg-ex1.edi", *replacements)


def contract_832(*replacements: tuple[str, str]) -> bytes:
    """The contract pricing sample (tiers C01..C03 per CA), valid until 2099."""
    return sample(
        "832-oopfactory-hibcc-medsurg-ex2-contract-pricing.edi",
        ("DTM^093^20001231", "DTM^093^20991231"),
        *replacements,
    )


def renumbered(raw: bytes) -> bytes:
    """The same catalog in a new interchange (new ISA13/GS06/ST02): a new wire identity."""
    text = raw.decode()
    text = text.replace("810000263", "810000264").replace("^1001~", "^1009~")
    return text.replace("^1002~", "^1009~").encode()


def gtin(first13: str) -> str:
    """A GTIN-14 with its GS1 check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(first13)))
    return first13 + str((10 - total % 10) % 10)


@pytest.fixture
def open_medbridge(medbridge: MedBridge) -> Iterator[Open]:
    opened: list[tuple[TestClient, MedBridge]] = []

    def make(**settings: Any) -> tuple[TestClient, MedBridge]:
        mb = MedBridge.build(
            medbridge.settings.model_copy(
                update={"partners": {"MEDSURG": PARTNER}, "own_identity": OWN} | settings
            )
        )
        client = TestClient(mb.api())
        client.__enter__()
        client.headers["X-API-Key"] = medbridge.ensure_admin_key()[0]
        opened.append((client, mb))
        return client, mb

    yield make
    for client, mb in opened:
        client.__exit__(None, None, None)
        mb.close()


def receive(client: TestClient, mb: MedBridge, raw: bytes) -> list[dict[str, Any]]:
    answer = client.post("/v1/edi/x12", content=raw, headers=MEDIA)
    assert answer.status_code == 200, answer.text
    mb.consumers["contracts"].drain()
    proposals = client.get("/v1/contracts/proposals")
    assert proposals.status_code == 200
    body: list[dict[str, Any]] = proposals.json()["proposals"]
    return body


def price(client: TestClient) -> Decimal:
    return Decimal(client.get(f"/v1/contracts/{CONTRACT}").json()["price"]["amount"])


def tasks(mb: MedBridge) -> list[Any]:
    with mb.engine.connect() as conn:
        return list(
            conn.execute(select(work_items).where(work_items.c.kind == "contract_price_change"))
        )


def test_a_price_within_tolerance_applies_audited_with_the_catalog(open_medbridge: Open) -> None:
    client, mb = open_medbridge()
    raw = list_832(("CTP^DI^CAT^66.50", "CTP^DI^CAT^60.00"))  # 3.00 per EA: +2.04%
    [proposal] = receive(client, mb, raw)
    assert proposal["status"] == "applied"
    assert proposal["contract"] == CONTRACT
    assert proposal["item"] == "DRAPE-SM"  # by the BX pack's GTIN
    assert Decimal(proposal["proposed_price"]) == Decimal("3.00")
    assert Decimal(proposal["change_percent"]).quantize(Decimal("0.01")) == Decimal("2.04")
    assert price(client) == Decimal("3.00")
    assert tasks(mb) == []
    with mb.engine.connect() as conn:
        [row] = conn.execute(
            select(audit_log).where(
                audit_log.c.action == "masterdata.contract.save",
                audit_log.c.target_id == CONTRACT,
                audit_log.c.actor == "system:contract-catalog",
            )
        )
    assert row.detail["catalog"] == proposal["catalog_key"]
    assert row.detail["source"] == "x12 832 catalog"

    assert receive(client, mb, raw) == [proposal]  # the interchange resent: nothing new
    again = receive(client, mb, renumbered(raw))  # the same catalog, a new interchange
    assert [p["status"] for p in again] == ["unchanged", "applied"]
    assert price(client) == Decimal("3.00")


def test_a_price_beyond_tolerance_waits_for_approval(open_medbridge: Open) -> None:
    client, mb = open_medbridge()
    raw = list_832()  # 66.50 per CA: 3.325 per EA, +13.1%
    [proposal] = receive(client, mb, raw)
    assert proposal["status"] == "pending"
    assert price(client) == Decimal("2.94")
    [task] = tasks(mb)
    assert task.id == proposal["task_id"]
    assert task.queue == "procurement"
    assert task.context["proposed_price"] == "3.325000"
    assert set(task.actions) == {"approve", "adjust_price", "reject"}

    receive(client, mb, raw)
    renewed = receive(client, mb, renumbered(raw))
    assert [p["status"] for p in renewed] == ["unchanged", "pending"]
    assert len(tasks(mb)) == 1, "a resent catalog opens no second task"

    buyer = mb.clients.register("buyer", Role.PROCUREMENT)
    decided = client.post(
        f"/v1/work-items/{task.id}/decision",
        json={"action": "approve"},
        headers={"X-API-Key": buyer},
    )
    assert decided.status_code == 200, decided.text
    assert price(client) == Decimal("3.325")
    [settled] = [p for p in receive(client, mb, raw) if p["id"] == proposal["id"]]
    assert settled["status"] == "approved"
    assert settled["decided_by"] == "buyer"


def test_the_cli_lists_the_proposals(open_medbridge: Open, database_url: str) -> None:
    client, mb = open_medbridge()
    [proposal] = receive(client, mb, list_832())
    assert proposal["status"] == "pending"
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    shown = CliRunner().invoke(cli, ["contracts", "proposals", "--status", "pending"], env=env)
    assert shown.exit_code == 0, shown.output
    assert CONTRACT in shown.output
    assert "2.940000 -> 3.325000" in shown.output
    assert "1 proposal(s)" in shown.output
    listed = CliRunner().invoke(cli, ["contracts", "list", "--item", "DRAPE-SM"], env=env)
    assert "1 contract(s)" in listed.output
    bad = CliRunner().invoke(cli, ["contracts", "list", "--valid-on", "someday"], env=env)
    assert bad.exit_code == 2
    assert "not a date" in bad.output


def test_a_rejected_price_changes_nothing(open_medbridge: Open) -> None:
    client, mb = open_medbridge()
    [proposal] = receive(client, mb, list_832())
    mb.work_queues().decide(proposal["task_id"], Decision(action=Action.REJECT), decided_by="buyer")
    assert price(client) == Decimal("2.94")
    [settled] = receive(client, mb, list_832())
    assert settled["status"] == "rejected"


def test_a_newer_catalog_supersedes_a_pending_proposal(open_medbridge: Open) -> None:
    client, mb = open_medbridge()
    [first] = receive(client, mb, list_832())
    newer = renumbered(list_832(("CTP^DI^CAT^66.50", "CTP^DI^CAT^70.00")))  # 3.50 per EA
    second, superseded = receive(client, mb, newer)
    assert superseded["id"] == first["id"]
    assert superseded["status"] == "superseded"
    assert second["status"] == "pending"
    assert second["task_id"] != first["task_id"]
    closed = client.post(f"/v1/work-items/{first['task_id']}/decision", json={"action": "approve"})
    assert closed.status_code == 409, "the system closed the superseded task"
    assert price(client) == Decimal("2.94")
    back = renumbered(renumbered(list_832(("CTP^DI^CAT^66.50", "CTP^DI^CAT^58.80"))))
    back = back.replace(b"810000264", b"810000265")  # 2.94 per EA again: the contract price
    latest = receive(client, mb, back)[0]
    assert latest["status"] == "unchanged"
    statuses = {p["id"]: p["status"] for p in receive(client, mb, back)}
    assert statuses[second["id"]] == "superseded", "the pending change is outdated"


def test_a_decision_not_applied_before_a_crash_is_applied_by_the_sweep(
    open_medbridge: Open,
) -> None:
    client, mb = open_medbridge()
    [proposal] = receive(client, mb, list_832())
    WorkQueues(mb.engine).decide(  # decided, and the process stopped before applying it
        proposal["task_id"], Decision(action=Action.APPROVE), decided_by="buyer"
    )
    assert price(client) == Decimal("2.94")
    catalog = contract_catalog_of(mb.engine, mb.masterdata, mb.settings)
    assert catalog.settle_decided() == 1
    assert price(client) == Decimal("3.325")
    assert catalog.settle_decided() == 0


def test_an_adjusted_price_applies_the_price_decided(open_medbridge: Open) -> None:
    client, mb = open_medbridge()
    [proposal] = receive(client, mb, list_832())
    mb.work_queues().decide(
        proposal["task_id"],
        Decision(action=Action.ADJUST_PRICE, unit_price=Decimal("3.10")),
        decided_by="buyer",
    )
    assert price(client) == Decimal("3.10")


def test_an_unknown_item_is_reported_not_lost(open_medbridge: Open) -> None:
    client, mb = open_medbridge()
    raw = list_832(
        ("50387698433528", gtin("5999999999999")), ("30387698433527", gtin("3999999999999"))
    )
    [proposal] = receive(client, mb, raw)
    assert proposal["status"] == "unknown_item"
    assert proposal["item"] is None
    assert gtin("5999999999999") in proposal["partner_item"]
    assert "map it, then reread" in proposal["reason"]
    assert price(client) == Decimal("2.94")
    listed = client.get("/v1/contracts/proposals", params={"status": "unknown_item"}).json()
    assert [p["id"] for p in listed["proposals"]] == [proposal["id"]]


def test_an_unknown_item_is_read_again_once_mapped(open_medbridge: Open, database_url: str) -> None:
    client, mb = open_medbridge()
    unknown = gtin("5999999999999")
    raw = list_832(
        ("50387698433528", unknown),
        ("30387698433527", gtin("3999999999999")),
        ("CTP^DI^CAT^66.50", "CTP^DI^CAT^60.00"),
    )
    [report] = receive(client, mb, raw)
    assert report["status"] == "unknown_item"
    early = client.post(f"/v1/contracts/proposals/{report['id']}/reread")
    assert early.status_code == 200
    [still] = early.json()["proposals"]
    assert still["status"] == "unknown_item"
    mapped = client.post(
        "/v1/cross-references/items",
        json={"item": "DRAPE-SM", "system": "gtin", "code": unknown},
    )
    assert mapped.status_code < 300, mapped.text
    env = {"MEDBRIDGE_DATABASE_URL": database_url, "MEDBRIDGE_LOG_JSON": "false", "COLUMNS": "250"}
    again = CliRunner().invoke(cli, ["contracts", "reread", str(still["id"])], env=env)
    assert again.exit_code == 0, again.output
    assert "applied" in again.output
    assert price(client) == Decimal("3.00")
    [applied] = client.get("/v1/contracts/proposals").json()["proposals"]
    assert applied["status"] == "applied"
    assert applied["item"] == "DRAPE-SM"
    refused = client.post(f"/v1/contracts/proposals/{applied['id']}/reread")
    assert refused.status_code == 409
    assert client.post("/v1/contracts/proposals/999999/reread").status_code == 404


def test_contract_tiers_need_ours_named(open_medbridge: Open) -> None:
    client, mb = open_medbridge()
    [proposal] = receive(client, mb, contract_832())  # by supplier part 1000 (VC)
    assert proposal["status"] == "no_price"
    assert "MEDBRIDGE_CONTRACT_CATALOG_TIER" in proposal["reason"]

    client, mb = open_medbridge(contract_catalog_tier="C02", contract_price_tolerance=Decimal(10))
    ours, first = receive(client, mb, renumbered(contract_832()))  # newest first
    assert first == proposal
    assert ours["status"] == "applied"  # 62.20 per CA: 3.11 per EA, +5.8% within 10%
    assert price(client) == Decimal("3.11")


def test_an_expired_catalog_proposes_nothing(open_medbridge: Open) -> None:
    client, mb = open_medbridge()
    raw = contract_832(("DTM^093^20991231", "DTM^093^20001231"))
    [proposal] = receive(client, mb, raw)
    assert proposal["status"] == "expired"
    assert price(client) == Decimal("2.94")
