"""Exactly-once writes into a real Tryton ERP when an answer is lost on the way back.

A small HTTP proxy between the adapter and trytond forwards every request, and for the first
matching call (``model.account.move.create`` ...) it lets trytond apply it, reads the answer
and DROPS it: it closes the adapter's connection without a byte. The adapter sees a reset
(``ErpUnavailable``): it cannot know whether the document exists. The retry with the same
document must find it by its reference and return it (``created`` False), carry it on to
where the call takes it (a draft move is posted), and Tryton must hold exactly one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from contract.test_erp_contract import entry, invoice, order, receipt
from medbridge.canonical.erp import ErpRef, ErpUnavailable
from medbridge.connectors.tryton.outbound import TrytonErp
from peers.proxy import Proxy, running
from peers.tryton import TrytonPeer

pytestmark = pytest.mark.peer


@dataclass
class DroppingProxy(Proxy):
    """Drops the answers of the first ``drops`` requests whose JSON-RPC body names
    ``method``."""

    method: str = ""
    drops: int = 0
    dropped: list[str] = field(default_factory=list)

    def should_drop(self, body: bytes) -> bool:
        with self.lock:
            if (
                self.drops > 0
                and self.method
                and f'"method":"{self.method}"' in body.decode(errors="replace").replace(" ", "")
            ):
                self.drops -= 1
                self.dropped.append(self.method)
                return True
            return False


@pytest.fixture
def proxy(tryton: TrytonPeer) -> Iterator[tuple[DroppingProxy, str]]:
    with running(DroppingProxy(upstream=tryton.url)) as served:
        yield served


@pytest.fixture
def erp(tryton: TrytonPeer, proxy: tuple[DroppingProxy, str]) -> Iterator[TrytonErp]:
    adapter = TrytonErp(tryton.config(url=proxy[1], timeout=30.0))
    yield adapter
    adapter.close()


@pytest.fixture
def direct(tryton: TrytonPeer) -> Iterator[TrytonErp]:
    """A second adapter straight to trytond, to count what Tryton holds."""
    adapter = TrytonErp(tryton.config())
    yield adapter
    adapter.close()


def _count(direct: TrytonErp, model: str, domain: list[Any]) -> list[dict[str, Any]]:
    return direct.client.search_read(model, domain, ["id", "state"])


def _lose_then_retry(proxy: DroppingProxy, method: str, call: Callable[[], ErpRef]) -> ErpRef:
    proxy.method, proxy.drops = method, 1
    with pytest.raises(ErpUnavailable):
        call()
    assert proxy.dropped == [method], "the request reached Tryton and its answer was dropped"
    return call()


@pytest.mark.parametrize(
    "method", ["model.account.move.create", "model.account.move.post"], ids=["create", "post"]
)
def test_journal_entry_lost_answer_posts_one_move(
    erp: TrytonErp, direct: TrytonErp, proxy: tuple[DroppingProxy, str], method: str
) -> None:
    je = entry()
    retried = _lose_then_retry(proxy[0], method, lambda: erp.post_journal_entry(je))
    assert retried.created is False  # the first call created it; its answer was lost

    moves = _count(direct, "account.move", [("description", "=", je.entry_id)])
    assert [(str(m["id"]), m["state"]) for m in moves] == [(retried.erp_id, "posted")]
    lines = [ln for ln in direct.ledger_lines(je.posting_date, je.posting_date)]
    mine = [ln for ln in lines if ln.reference == je.entry_id]
    assert len(mine) == 2
    assert sum(ln.debit for ln in mine) == sum(ln.credit for ln in mine)
    assert erp.post_journal_entry(je).created is False  # and any later retry too


def test_purchase_order_lost_answer_creates_one_order(
    erp: TrytonErp, direct: TrytonErp, proxy: tuple[DroppingProxy, str]
) -> None:
    po = order()
    retried = _lose_then_retry(
        proxy[0], "model.purchase.purchase.create", lambda: erp.create_purchase_order(po)
    )
    assert retried.created is False
    orders = _count(direct, "purchase.purchase", [("reference", "=", po.reference)])
    assert [(str(o["id"]), o["state"]) for o in orders] == [(retried.erp_id, "quotation")]
    erp.confirm_purchase_order(retried.erp_id)
    assert direct.purchase_order_state(retried.erp_id) == "processing"


def test_receipt_and_invoice_lost_answers_create_one_each(
    erp: TrytonErp, direct: TrytonErp, proxy: tuple[DroppingProxy, str]
) -> None:
    po = order()
    erp.confirm_purchase_order(erp.create_purchase_order(po).erp_id)

    gr = receipt(po)
    shipment = _lose_then_retry(
        proxy[0], "model.stock.shipment.in.create", lambda: erp.record_goods_receipt(gr)
    )
    assert shipment.created is False
    shipments = _count(direct, "stock.shipment.in", [("reference", "=", gr.reference)])
    assert [(str(s["id"]), s["state"]) for s in shipments] == [(shipment.erp_id, "done")]

    proxy[0].dropped.clear()
    inv = invoice(po)
    created = _lose_then_retry(
        proxy[0], "model.account.invoice.create", lambda: erp.create_supplier_invoice(inv)
    )
    assert created.created is False
    invoices = _count(direct, "account.invoice", [("reference", "=", inv.reference)])
    assert [str(i["id"]) for i in invoices] == [created.erp_id]
    erp.post_supplier_invoice(created.erp_id)
    assert direct.supplier_invoice_state(created.erp_id) == "posted"
