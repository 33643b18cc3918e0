"""The ERP port contract (``medbridge.canonical.erp``), one suite for every adapter.

``ErpContract`` holds the tests; an adapter joins by subclassing it as ``Test<Adapter>`` and
providing three fixtures: ``erp`` (a port on an ERP seeded with MedBridge's demo codes:
suppliers MCK and MEDSURG, the demo items, the demo GL accounts of H1 and H2 and the demo cost
centers), ``refused`` (a port whose credentials that ERP refuses) and ``unreachable`` (a port
on an ERP that cannot be reached). ``TestTrytonErp`` runs it against a real trytond 7.0 (peer),
``TestTrytonErpNextSeries`` against a real trytond 8.0 (the second peer); ``TestFakeErp``
against the in-memory fake shipped in the product.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from pydantic import SecretStr

from medbridge.canonical.base import Money
from medbridge.canonical.erp import (
    ErpAccount,
    ErpAuthError,
    ErpPort,
    ErpProduct,
    ErpRef,
    ErpRejected,
    ErpSupplier,
    ErpUnavailable,
)
from medbridge.canonical.finance import JournalEntry, JournalLine
from medbridge.canonical.masterdata import AccountType, Item, ItemCategory, Supplier
from medbridge.canonical.procurement import (
    GoodsReceipt,
    InvoiceLine,
    OrderLine,
    PurchaseOrder,
    ReceiptLine,
    SupplierInvoice,
)
from medbridge.connectors.tryton.fake import FakeErp
from medbridge.connectors.tryton.outbound import TrytonErp
from peers.tryton import TrytonPeer
from peers.trytond import free_port

DRAFT_STATES = {"draft", "quotation"}
CONFIRMED_STATES = {"confirmed", "processing", "done"}
POSTED_STATES = {"posted", "paid"}
COST_CENTERS = ("H1-CC-ICU", "H1-CC-OR", "H1-CC-PHARM", "H2-CC-ED", "H2-CC-PHARM")
ACCOUNTS = tuple(
    f"{base}-{facility}"
    for facility in ("H1", "H2")
    for base in ("1400", "2000", "2100", "5100", "5200", "5300", "5400", "5500")
)


def usd(amount: str) -> Money:
    return Money(amount=Decimal(amount), currency="USD")


def key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def order(reference: str | None = None) -> PurchaseOrder:
    return PurchaseOrder(
        reference=reference or key("PO"),
        supplier="MCK",
        order_date=date.today(),
        lines=(
            OrderLine(item="VANCO-1G", quantity=Decimal(20), unit="VIAL", unit_price=usd("6.85")),
            OrderLine(item="AMPI-250", quantity=Decimal(100), unit="CAP", unit_price=usd("0.42")),
        ),
        cost_center="H1-CC-PHARM",
    )


def receipt(po: PurchaseOrder, reference: str | None = None) -> GoodsReceipt:
    return GoodsReceipt(
        reference=reference or key("GR"),
        supplier=po.supplier,
        purchase_order=po.reference,
        received_on=date.today(),
        lines=(
            ReceiptLine(
                item="VANCO-1G",
                quantity=Decimal(20),
                unit="VIAL",
                lot="VAN-24A17",
                expiry=date(2028, 3, 31),
                unit_price=usd("6.85"),
            ),
            ReceiptLine(
                item="AMPI-250",
                quantity=Decimal(100),
                unit="CAP",
                lot="AMP-0912",
                expiry=date(2027, 9, 30),
                unit_price=usd("0.42"),
            ),
        ),
    )


def invoice(po: PurchaseOrder, reference: str | None = None) -> SupplierInvoice:
    return SupplierInvoice(
        reference=reference or key("INV"),
        supplier=po.supplier,
        invoice_number=key("MCK-INV"),
        invoice_date=date.today(),
        purchase_order=po.reference,
        lines=(
            InvoiceLine(item="VANCO-1G", quantity=Decimal(20), unit="VIAL", unit_price=usd("6.85")),
            InvoiceLine(item="AMPI-250", quantity=Decimal(100), unit="CAP", unit_price=usd("0.42")),
        ),
    )


def entry(entry_id: str | None = None, *, expense_account: str = "5100-H1") -> JournalEntry:
    """A dispense to the H1 ICU: drug expense (cost center) against H1 inventory."""
    return JournalEntry(
        entry_id=entry_id or key("JE"),
        posting_date=date.today(),
        description="dispense VANCO-1G x2 at H1-ICU",
        source_event_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        lines=(
            JournalLine(
                account=expense_account,
                debit=Decimal("13.70"),
                cost_center="H1-CC-ICU",
                facility="H1",
            ),
            JournalLine(account="1400-H1", credit=Decimal("13.70"), facility="H1"),
        ),
    )


class ErpContract:
    """What every ``ErpPort`` adapter guarantees."""

    @pytest.fixture
    def erp(self) -> ErpPort:
        raise NotImplementedError("an adapter's test class provides erp")

    @pytest.fixture
    def refused(self) -> ErpPort:
        raise NotImplementedError("an adapter's test class provides refused")

    @pytest.fixture
    def unreachable(self) -> ErpPort:
        raise NotImplementedError("an adapter's test class provides unreachable")

    # --- reads -----------------------------------------------------------------------------

    def test_reads_the_demo_master_data(self, erp: ErpPort) -> None:
        assert {"VANCO-1G", "AMPI-250", "DRAPE-SM"} <= {p.code for p in erp.products()}
        assert {"MCK", "MEDSURG"} <= {s.code for s in erp.suppliers()}
        assert set(COST_CENTERS) <= set(erp.cost_centers())

    # --- master data pushes (idempotent by code) -----------------------------------------

    def test_a_pushed_product_is_created_once_and_updated_by_code(self, erp: ErpPort) -> None:
        item = Item(
            code=key("ITEM"),
            name="Heparin 5000 units vial",
            category=ItemCategory.DRUG,
            base_unit="VIAL",
        )
        first = erp.upsert_product(item)
        assert (first.reference, first.created, first.updated) == (item.code, True, False)
        again = erp.upsert_product(item)
        assert (again.erp_id, again.created, again.updated) == (first.erp_id, False, False)
        [read] = [p for p in erp.products() if p.code == item.code]
        assert (read.erp_id, read.name, read.unit) == (first.erp_id, item.name, "VIAL")

        renamed = item.model_copy(update={"name": "Heparin sodium 5000 units vial"})
        changed = erp.upsert_product(renamed)
        assert (changed.erp_id, changed.created, changed.updated) == (first.erp_id, False, True)
        assert [p.name for p in erp.products() if p.code == item.code] == [renamed.name]
        assert erp.upsert_product(renamed).updated is False

    def test_a_pushed_products_unit_is_changed_while_nothing_uses_it(self, erp: ErpPort) -> None:
        item = Item(
            code=key("ITEM"), name="Gauze swab", category=ItemCategory.SUPPLY, base_unit="EA"
        )
        first = erp.upsert_product(item)
        changed = erp.upsert_product(item.model_copy(update={"base_unit": "BAG"}))
        assert (changed.erp_id, changed.created, changed.updated) == (first.erp_id, False, True)
        assert [(p.name, p.unit) for p in erp.products() if p.code == item.code] == [
            ("Gauze swab", "BAG")
        ]

    def test_a_pushed_product_can_be_ordered(self, erp: ErpPort) -> None:
        item = Item(
            code=key("ITEM"), name="Saline 10 mL", category=ItemCategory.SUPPLY, base_unit="EA"
        )
        erp.upsert_product(item)
        line = OrderLine(item=item.code, quantity=Decimal(5), unit="EA", unit_price=usd("0.50"))
        po = order().model_copy(update={"lines": (line,)})
        ref = erp.create_purchase_order(po)
        assert ref.created
        erp.confirm_purchase_order(ref.erp_id)
        assert erp.purchase_order_state(ref.erp_id) in CONFIRMED_STATES

    def test_an_existing_product_pushed_as_the_erp_has_it_is_not_written(
        self, erp: ErpPort
    ) -> None:
        [vanco] = [p for p in erp.products() if p.code == "VANCO-1G"]
        item = Item(
            code="VANCO-1G", name=vanco.name, category=ItemCategory.DRUG, base_unit=vanco.unit
        )
        ref = erp.upsert_product(item)
        assert (ref.erp_id, ref.created, ref.updated) == (vanco.erp_id, False, False)

    def test_a_product_in_an_unknown_unit_is_rejected_and_not_created(self, erp: ErpPort) -> None:
        item = Item(
            code=key("ITEM"), name="Odd unit", category=ItemCategory.SUPPLY, base_unit="FURLONG"
        )
        with pytest.raises(ErpRejected) as caught:
            erp.upsert_product(item)
        assert caught.value.field == "unit"
        assert item.code not in {p.code for p in erp.products()}

    def test_a_pushed_supplier_is_created_once_and_renamed_by_code(self, erp: ErpPort) -> None:
        supplier = Supplier(code=key("SUP"), name="Cardinal Health")
        first = erp.upsert_supplier(supplier)
        assert (first.reference, first.created, first.updated) == (supplier.code, True, False)
        again = erp.upsert_supplier(supplier)
        assert (again.erp_id, again.created, again.updated) == (first.erp_id, False, False)
        assert [(s.erp_id, s.name) for s in erp.suppliers() if s.code == supplier.code] == [
            (first.erp_id, supplier.name)
        ]
        renamed = erp.upsert_supplier(supplier.model_copy(update={"name": "Cardinal Health Inc"}))
        assert (renamed.erp_id, renamed.created, renamed.updated) == (first.erp_id, False, True)
        assert [s.name for s in erp.suppliers() if s.code == supplier.code] == [
            "Cardinal Health Inc"
        ]
        existing = {s.code: s for s in erp.suppliers()}["MCK"]
        mck = erp.upsert_supplier(Supplier(code="MCK", name=existing.name))
        assert (mck.erp_id, mck.created, mck.updated) == (existing.erp_id, False, False)

    def test_ensured_accounts_are_created_once_and_take_postings(self, erp: ErpPort) -> None:
        facility = key("H")
        wanted = [
            ErpAccount(
                f"1400-{facility}", f"Inventory {facility}", AccountType.ASSET, like="1400-H1"
            ),
            ErpAccount(f"5100-{facility}", f"Drug expense {facility}", AccountType.EXPENSE),
            ErpAccount(
                f"2000-{facility}",
                f"Accounts payable {facility}",
                AccountType.LIABILITY,
                payable=True,
            ),
            ErpAccount(f"2100-{facility}", f"GRNI {facility}", AccountType.LIABILITY),
        ]
        first = erp.ensure_accounts(wanted)
        assert [(r.reference, r.created, r.updated) for r in first] == [
            (a.code, True, False) for a in wanted
        ]
        again = erp.ensure_accounts(wanted)
        assert [(r.erp_id, r.created, r.updated) for r in again] == [
            (r.erp_id, False, False) for r in first
        ]
        assert erp.accounts([a.code for a in wanted]) == {a.code: a.name for a in wanted}

        je = entry().model_copy(
            update={
                "lines": (
                    JournalLine(account=f"5100-{facility}", debit=Decimal("3.00"), facility="H1"),
                    JournalLine(account=f"1400-{facility}", credit=Decimal("3.00"), facility="H1"),
                )
            }
        )
        assert erp.post_journal_entry(je).created
        mine = [
            ln
            for ln in erp.ledger_lines(je.posting_date, je.posting_date)
            if ln.reference == je.entry_id
        ]
        assert sorted((ln.account, ln.debit, ln.credit) for ln in mine) == [
            (f"1400-{facility}", Decimal(0), Decimal("3.00")),
            (f"5100-{facility}", Decimal("3.00"), Decimal(0)),
        ]

        renamed = ErpAccount(f"5100-{facility}", "Pharmacy expense", AccountType.EXPENSE)
        [changed] = erp.ensure_accounts([renamed])
        assert (changed.erp_id, changed.created, changed.updated) == (first[1].erp_id, False, True)
        assert erp.accounts([renamed.code]) == {renamed.code: "Pharmacy expense"}

    def test_ensuring_existing_accounts_creates_none(self, erp: ErpPort) -> None:
        names = erp.accounts(["1400-H1", "5100-H2", "NOSUCH-9"])
        assert set(names) == {"1400-H1", "5100-H2"}
        refs = erp.ensure_accounts(
            [
                ErpAccount("1400-H1", names["1400-H1"], AccountType.ASSET),
                ErpAccount("5100-H2", names["5100-H2"], AccountType.EXPENSE),
            ]
        )
        assert [(r.reference, r.created, r.updated) for r in refs] == [
            ("1400-H1", False, False),
            ("5100-H2", False, False),
        ]
        assert erp.ensure_accounts([]) == []

    # --- purchase orders -------------------------------------------------------------------

    def test_purchase_order_is_created_once_and_confirmed(self, erp: ErpPort) -> None:
        po = order()
        first = erp.create_purchase_order(po)
        assert first.created
        assert first.reference == po.reference
        assert erp.purchase_order_state(first.erp_id) in DRAFT_STATES

        again = erp.create_purchase_order(po)
        assert (again.erp_id, again.created) == (first.erp_id, False)

        erp.confirm_purchase_order(first.erp_id)
        assert erp.purchase_order_state(first.erp_id) in CONFIRMED_STATES
        erp.confirm_purchase_order(first.erp_id)  # safe to repeat
        assert erp.purchase_order_state(first.erp_id) in CONFIRMED_STATES

    def test_unknown_supplier_is_rejected(self, erp: ErpPort) -> None:
        po = order().model_copy(update={"supplier": "NOSUCH"})
        with pytest.raises(ErpRejected) as caught:
            erp.create_purchase_order(po)
        assert caught.value.field == "supplier"

    # --- cancelling a purchase order (compensation) ---------------------------------------

    def test_cancelling_a_quoted_purchase_order_cancels_it(self, erp: ErpPort) -> None:
        ref = erp.create_purchase_order(order())
        assert erp.cancel_purchase_order(ref.erp_id, "saga compensation") == "cancelled"
        assert erp.purchase_order_state(ref.erp_id) == "cancelled"
        assert erp.cancel_purchase_order(ref.erp_id, "saga compensation") == "cancelled"
        with pytest.raises(ErpRejected) as caught:  # a cancelled order is not confirmed again
            erp.confirm_purchase_order(ref.erp_id)
        assert caught.value.field == "erp_id"

    def test_cancelling_a_confirmed_purchase_order_closes_its_open_lines(
        self, erp: ErpPort
    ) -> None:
        po = order()
        ref = erp.create_purchase_order(po)
        erp.confirm_purchase_order(ref.erp_id)
        state = erp.cancel_purchase_order(ref.erp_id, "saga compensation")
        assert state == erp.purchase_order_state(ref.erp_id)
        assert state in CONFIRMED_STATES  # moves exist: the order itself is not cancelled
        assert erp.cancel_purchase_order(ref.erp_id, "saga compensation") == state
        with pytest.raises(ErpRejected) as caught:  # nothing is expected any more
            erp.record_goods_receipt(receipt(po))
        assert caught.value.field == "lines[0].item"

    def test_cancelling_after_a_full_receipt_keeps_the_received_goods(self, erp: ErpPort) -> None:
        po = order()
        ref = erp.create_purchase_order(po)
        erp.confirm_purchase_order(ref.erp_id)
        gr = receipt(po)
        received = erp.record_goods_receipt(gr)
        state = erp.cancel_purchase_order(ref.erp_id, "saga compensation")
        assert state != "cancelled"
        assert state in CONFIRMED_STATES
        assert state == erp.purchase_order_state(ref.erp_id)
        assert erp.cancel_purchase_order(ref.erp_id, "saga compensation") == state
        again = erp.record_goods_receipt(gr)  # the receipt is still there
        assert (again.erp_id, again.created) == (received.erp_id, False)

    def test_cancelling_an_unknown_purchase_order_is_rejected(self, erp: ErpPort) -> None:
        with pytest.raises(ErpRejected) as caught:
            erp.cancel_purchase_order("999999", "saga compensation")
        assert caught.value.field == "erp_id"

    # --- receipts and invoices -------------------------------------------------------------

    def test_goods_receipt_with_lots_is_recorded_once(self, erp: ErpPort) -> None:
        po = order()
        erp.confirm_purchase_order(erp.create_purchase_order(po).erp_id)
        gr = receipt(po)
        first = erp.record_goods_receipt(gr)
        assert first.created
        assert first.reference == gr.reference
        again = erp.record_goods_receipt(gr)
        assert (again.erp_id, again.created) == (first.erp_id, False)

    def test_supplier_invoice_is_created_once_and_posted(self, erp: ErpPort) -> None:
        po = order()
        erp.confirm_purchase_order(erp.create_purchase_order(po).erp_id)
        erp.record_goods_receipt(receipt(po))
        inv = invoice(po)
        first = erp.create_supplier_invoice(inv)
        assert first.created
        assert erp.supplier_invoice_state(first.erp_id) not in POSTED_STATES
        again = erp.create_supplier_invoice(inv)
        assert (again.erp_id, again.created) == (first.erp_id, False)

        erp.post_supplier_invoice(first.erp_id)
        assert erp.supplier_invoice_state(first.erp_id) in POSTED_STATES
        erp.post_supplier_invoice(first.erp_id)  # safe to repeat
        assert erp.supplier_invoice_state(first.erp_id) in POSTED_STATES

    # --- general ledger --------------------------------------------------------------------

    def test_journal_entry_is_posted_balanced_exactly_once(self, erp: ErpPort) -> None:
        je = entry()
        assert erp.find_journal_entry(je.entry_id) is None
        first = erp.post_journal_entry(je)
        assert first.created
        assert first.reference == je.entry_id
        again = erp.post_journal_entry(je)
        assert (again.erp_id, again.created) == (first.erp_id, False)
        found = erp.find_journal_entry(je.entry_id)
        assert found is not None
        assert found.erp_id == first.erp_id

        lines = [ln for ln in erp.ledger_lines(je.posting_date, je.posting_date)]
        mine = [ln for ln in lines if ln.reference == je.entry_id]
        assert {ln.move_id for ln in mine} == {first.erp_id}
        assert sum(ln.debit for ln in mine) == sum(ln.credit for ln in mine) == Decimal("13.70")
        assert sorted((ln.account, ln.cost_center, ln.debit, ln.credit) for ln in mine) == [
            ("1400-H1", None, Decimal(0), Decimal("13.70")),
            ("5100-H1", "H1-CC-ICU", Decimal("13.70"), Decimal(0)),
        ]
        assert all(ln.posting_date == je.posting_date for ln in mine)

    def test_ledger_lines_respect_the_date_range(self, erp: ErpPort) -> None:
        je = entry()
        erp.post_journal_entry(je)
        later = date(je.posting_date.year + 5, 1, 1)
        assert not [ln for ln in erp.ledger_lines(later, later) if ln.reference == je.entry_id]

    def test_unknown_account_is_rejected_and_nothing_is_posted(self, erp: ErpPort) -> None:
        je = entry(expense_account="9999-H9")
        with pytest.raises(ErpRejected) as caught:
            erp.post_journal_entry(je)
        assert caught.value.field == "account"
        assert "9999-H9" in str(caught.value)
        assert erp.find_journal_entry(je.entry_id) is None

    def test_a_batch_of_journal_entries_lands_once_each(self, erp: ErpPort) -> None:
        batch = [entry() for _ in range(5)]
        first = erp.post_journal_entries(batch)
        assert [r.reference for r in first if isinstance(r, ErpRef)] == [e.entry_id for e in batch]
        assert all(isinstance(r, ErpRef) and r.created for r in first)
        assert len({r.erp_id for r in first if isinstance(r, ErpRef)}) == 5
        again = erp.post_journal_entries(batch)  # e.g. after a lost answer
        assert [(r.erp_id, r.created) for r in again if isinstance(r, ErpRef)] == [
            (r.erp_id, False) for r in first if isinstance(r, ErpRef)
        ]
        for je, ref in zip(batch, first, strict=True):
            found = erp.find_journal_entry(je.entry_id)
            assert found is not None
            assert isinstance(ref, ErpRef)
            assert found.erp_id == ref.erp_id
        day = batch[0].posting_date
        mine = [ln for ln in erp.ledger_lines(day, day) if ln.reference.startswith("JE-")]
        ids = {je.entry_id for je in batch}
        assert len([ln for ln in mine if ln.reference in ids]) == 10  # 2 lines each, once

    def test_an_entry_refused_in_a_batch_does_not_sink_the_others(self, erp: ErpPort) -> None:
        posted_before = entry()
        erp.post_journal_entry(posted_before)
        bad = entry(expense_account="9999-H9")
        batch = [entry(), posted_before, bad, entry()]
        results = erp.post_journal_entries(batch)
        assert len(results) == 4
        refused = results[2]
        assert isinstance(refused, ErpRejected)
        assert refused.field == "account"
        assert "9999-H9" in str(refused)
        assert erp.find_journal_entry(bad.entry_id) is None
        assert [type(r) for r in results] == [ErpRef, ErpRef, ErpRejected, ErpRef]
        assert [r.created for r in results if isinstance(r, ErpRef)] == [True, False, True]
        for je in (batch[0], batch[3]):
            assert erp.find_journal_entry(je.entry_id) is not None
        assert erp.post_journal_entries([]) == []

    # --- failures --------------------------------------------------------------------------

    def test_refused_credentials_raise_auth_error(self, refused: ErpPort) -> None:
        with pytest.raises(ErpAuthError):
            refused.products()
        with pytest.raises(ErpAuthError):
            refused.post_journal_entry(entry())

    def test_unreachable_erp_raises_unavailable(self, unreachable: ErpPort) -> None:
        with pytest.raises(ErpUnavailable):
            unreachable.products()
        with pytest.raises(ErpUnavailable):
            unreachable.create_purchase_order(order())


# --- the adapters ---------------------------------------------------------------------------


@pytest.mark.peer
class TestTrytonErp(ErpContract):
    """The Tryton adapter against a real trytond 7.0 (``tests/peers/tryton.py``)."""

    @pytest.fixture
    def erp(self, tryton: TrytonPeer) -> Iterator[TrytonErp]:
        adapter = TrytonErp(tryton.config())
        yield adapter
        adapter.close()

    @pytest.fixture
    def refused(self, tryton: TrytonPeer) -> Iterator[TrytonErp]:
        adapter = TrytonErp(tryton.config(password=SecretStr("not-the-password")))
        yield adapter
        adapter.close()

    @pytest.fixture
    def unreachable(self, tryton: TrytonPeer) -> Iterator[TrytonErp]:
        adapter = TrytonErp(tryton.config(url=f"http://127.0.0.1:{free_port()}/", timeout=2.0))
        yield adapter
        adapter.close()

    def test_receipt_lots_carry_their_expiry(self, erp: TrytonErp) -> None:
        po = order()
        erp.confirm_purchase_order(erp.create_purchase_order(po).erp_id)
        ref = erp.record_goods_receipt(receipt(po))
        moves = erp.client.search_read(
            "stock.move",
            [("shipment", "=", f"stock.shipment.in,{ref.erp_id}")],
            ["state", "product.code", "lot.number", "lot.expiration_date", "quantity"],
        )
        got = sorted(  # the incoming moves and the inventory moves into storage: same lots
            {
                (
                    m["product."]["code"],
                    m["lot."]["number"],
                    m["lot."]["expiration_date"],
                    m["state"],
                )
                for m in moves
            }
        )
        assert len(moves) == 4
        assert got == [
            ("AMPI-250", "AMP-0912", date(2027, 9, 30), "done"),
            ("VANCO-1G", "VAN-24A17", date(2028, 3, 31), "done"),
        ]

    def test_cancelling_a_processing_order_cancels_only_its_open_moves(
        self, erp: TrytonErp
    ) -> None:
        po = order()
        ref = erp.create_purchase_order(po)
        erp.confirm_purchase_order(ref.erp_id)
        assert erp.cancel_purchase_order(ref.erp_id, "saga compensation") == "processing"
        moves = erp.client.search_read(
            "stock.move", [("purchase", "=", int(ref.erp_id))], ["state"]
        )
        assert len(moves) == 2
        assert {m["state"] for m in moves} == {"cancelled"}
        shipment_state = erp.client.search_read(
            "purchase.purchase", [("id", "=", int(ref.erp_id))], ["shipment_state"]
        )[0]["shipment_state"]
        assert shipment_state == "exception"

    def test_cancelling_after_a_receipt_leaves_the_done_moves(self, erp: TrytonErp) -> None:
        po = order()
        ref = erp.create_purchase_order(po)
        erp.confirm_purchase_order(ref.erp_id)
        erp.record_goods_receipt(receipt(po))
        assert erp.cancel_purchase_order(ref.erp_id, "saga compensation") == "processing"
        moves = erp.client.search_read(
            "stock.move", [("purchase", "=", int(ref.erp_id))], ["state"]
        )
        assert {m["state"] for m in moves} == {"done"}

    def test_tryton_validation_errors_are_rejections(self, erp: TrytonErp) -> None:
        """Translated at the boundary: a Tryton UserError (here RequiredValidationError)."""
        with pytest.raises(ErpRejected) as caught:
            erp.client.create("account.move", [{"description": key("bad")}])
        assert "UserError" in str(caught.value)


@pytest.mark.peer
class TestTrytonErpNextSeries(TestTrytonErp):
    """The same adapter against the second peer, a real trytond 8.0 (``tryton_cloud``): the
    series a migration moves to."""

    @pytest.fixture
    def erp(self, tryton_cloud: TrytonPeer) -> Iterator[TrytonErp]:
        adapter = TrytonErp(tryton_cloud.config())
        yield adapter
        adapter.close()

    @pytest.fixture
    def refused(self, tryton_cloud: TrytonPeer) -> Iterator[TrytonErp]:
        adapter = TrytonErp(tryton_cloud.config(password=SecretStr("not-the-password")))
        yield adapter
        adapter.close()

    @pytest.fixture
    def unreachable(self, tryton_cloud: TrytonPeer) -> Iterator[TrytonErp]:
        config = tryton_cloud.config(url=f"http://127.0.0.1:{free_port()}/", timeout=2.0)
        adapter = TrytonErp(config)
        yield adapter
        adapter.close()


class TestFakeErp(ErpContract):
    """The in-memory fake (``medbridge.connectors.tryton.fake``) on the demo codes."""

    @staticmethod
    def _fake() -> FakeErp:
        return FakeErp(
            accounts=ACCOUNTS,
            cost_centers=COST_CENTERS,
            products=tuple(
                ErpProduct(erp_id=str(n), code=code, name=code, unit=unit)
                for n, (code, unit) in enumerate(
                    (("VANCO-1G", "VIAL"), ("AMPI-250", "CAP"), ("DRAPE-SM", "EA")), start=1
                )
            ),
            suppliers=(ErpSupplier("1", "MCK", "MCK"), ErpSupplier("2", "MEDSURG", "MEDSURG")),
            units=("VIAL", "CAP", "BAG", "EA"),
        )

    @pytest.fixture
    def erp(self) -> FakeErp:
        return self._fake()

    @pytest.fixture
    def refused(self) -> FakeErp:
        fake = self._fake()
        fake.refuse_credentials()
        return fake

    @pytest.fixture
    def unreachable(self) -> FakeErp:
        fake = self._fake()
        fake.go_down()
        return fake
