"""The simulated supplier's answers: every fault does what it says, deterministically."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import pytest

from medbridge.canonical.trade import (
    AcknowledgementDocument,
    AckStatus,
    InvoiceDocument,
    LineStatus,
    OrderDocument,
    OrderLine,
    PartnerItem,
    ShipNoticeDocument,
)
from medbridge.demo.supplier_behaviour import Fault, Faults, answer, sscc

D = Decimal


def order(*parts: str, quantity: str = "10") -> OrderDocument:
    return OrderDocument(
        order_number="PO-100",
        order_date=date(2026, 11, 2),
        lines=tuple(
            OrderLine(
                line_number=n,
                item=PartnerItem(supplier_part=part),
                quantity=D(quantity),
                unit="BX",
                unit_price=D("12.50"),
            )
            for n, part in enumerate(parts, start=1)
        ),
    )


def split(
    docs: Sequence[object],
) -> tuple[AcknowledgementDocument, list[ShipNoticeDocument], list[InvoiceDocument]]:
    acks = [d for d in docs if isinstance(d, AcknowledgementDocument)]
    assert len(acks) == 1
    assert docs[0] is acks[0], "the acknowledgement comes first"
    return (
        acks[0],
        [d for d in docs if isinstance(d, ShipNoticeDocument)],
        [d for d in docs if isinstance(d, InvoiceDocument)],
    )


def shipped(notices: list[ShipNoticeDocument]) -> dict[int, Decimal]:
    total: dict[int, Decimal] = {}
    for notice in notices:
        for o in notice.orders:
            for pack in o.packs:
                for line in pack.lines:
                    total[line.line_number] = total.get(line.line_number, D(0)) + line.quantity
    return total


def test_no_faults_ships_and_invoices_everything_once() -> None:
    ack, notices, invoices = split(answer(order("A", "B"), Faults()))
    assert ack.status is AckStatus.ACCEPTED
    assert [line.status for line in ack.lines] == [LineStatus.ACCEPTED] * 2
    assert len(notices) == 1
    assert shipped(notices) == {1: D(10), 2: D(10)}
    assert len(invoices) == 1
    assert invoices[0].total == D("250.00")
    assert invoices[0].order_numbers == ("PO-100",)


@pytest.mark.parametrize(
    ("fault", "status", "first", "second"),
    [
        (Fault.BACKORDER, LineStatus.BACKORDERED, None, D(10)),
        (Fault.PARTIAL, LineStatus.ACCEPTED, D(5), D(5)),
        (Fault.REJECT, LineStatus.REJECTED, None, None),
        (Fault.SUBSTITUTE, LineStatus.SUBSTITUTED, D(10), None),
        (Fault.PRICE_CHANGE, LineStatus.PRICE_CHANGED, D(10), None),
    ],
)
def test_forced_line_faults(
    fault: Fault, status: LineStatus, first: Decimal | None, second: Decimal | None
) -> None:
    docs = answer(order("A", "B"), Faults(force={"B": fault}))
    ack, notices, invoices = split(docs)
    # a partial shipment is not announced: the order is accepted, the ship notices tell
    changed = fault is not Fault.PARTIAL
    assert ack.status is (AckStatus.ACCEPTED_WITH_CHANGES if changed else AckStatus.ACCEPTED)
    assert ack.lines[1].status is status
    assert ack.lines[0].status is LineStatus.ACCEPTED
    per_shipment = [shipped([n]).get(2) for n in notices]
    expected = [first, second]
    # the first shipment always carries line 1; a second exists only for line 2's rest
    assert per_shipment[0] == expected[0]
    assert (per_shipment[1] if len(per_shipment) > 1 else None) == expected[1]
    assert len(invoices) == len(notices)
    if fault is Fault.SUBSTITUTE:
        assert ack.lines[1].substitute is not None
        assert notices[0].orders[0].packs[0].lines[1].item == ack.lines[1].substitute
    if fault is Fault.PRICE_CHANGE:
        assert ack.lines[1].unit_price == D("13.13")
        assert invoices[0].lines[1].unit_price == D("13.13")


def test_rejecting_every_line_rejects_the_order_and_ships_nothing() -> None:
    ack, notices, invoices = split(answer(order("A"), Faults(force={"A": Fault.REJECT})))
    assert ack.status is AckStatus.REJECTED
    assert ack.lines[0].quantity == 0
    assert notices == []
    assert invoices == []


def test_over_invoice_and_duplicate_invoice() -> None:
    faults = Faults(force={"A": Fault.OVER_INVOICE}, force_duplicate_invoice=True)
    _, notices, invoices = split(answer(order("A"), faults))
    assert shipped(notices) == {1: D(10)}
    assert [i.lines[0].quantity for i in invoices] == [D(11), D(11)]
    assert invoices[0] == invoices[1], "a duplicate invoice is the same document sent twice"


def test_answers_are_deterministic_and_probabilities_apply() -> None:
    faults = Faults(backorder=0.3, partial=0.3, seed=7)
    big = order(*[f"P{n}" for n in range(60)])
    assert answer(big, faults) == answer(big, faults)
    ack, notices, _ = split(answer(big, faults))
    counts = {s: sum(1 for line in ack.lines if line.status is s) for s in LineStatus}
    assert 8 <= counts[LineStatus.BACKORDERED] <= 30
    assert len(notices) == 2
    assert shipped(notices) == {n: D(10) for n in range(1, 61)}, "everything ships in the end"


def test_fault_odds_are_checked() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        Faults(backorder=0.6, partial=0.6)


def test_sscc_check_digit() -> None:
    code = sscc(123456789)
    assert len(code) == 18
    assert code.isdigit()
    body, check = code[:-1], int(code[-1])
    weighted = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    assert (weighted + check) % 10 == 0
    assert sscc(123456789) == "006141411234567890"
