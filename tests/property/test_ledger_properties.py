"""Property tests of the stock ledger and its postings (DESIGN.md, "Finance, by default").

A hypothesis state machine applies random sequences of movements (receipts, the four issuing
kinds, transfers within and between facilities, count gains and losses) to one StockBook over
two facilities with two stores each, posts each one with the default rules, and checks after
every step:

- every journal entry balances (summed here, not only by the JournalEntry validator);
- per facility, the GL inventory balance equals the ledger value of the facility's stores;
- a lot is negative only where a dispense or clinical consumption left its shortfall, and per
  item@location the lots add up to the valuation quantity, which is also what the movements
  applied so far add up to;
- value has the sign of the quantity, is kept to the cent, and is 0 when the quantity is 0 (no
  residue); the moving average stays sane: no value beyond quantity x the dearest cost, give
  or take a cent per movement;
- each movement moves its exact moving-average (or receipt, or carried, or last known) value
  rounded once, to half a cent, and an issue that empties an item@location takes the whole
  value;
- a request (wastage, return, transfer, count loss) larger than the stock is refused exactly
  when it should be, leaving the book as it was; a fact (dispense, clinical consumption) is
  never refused (nothing to dead-letter) and is flagged exactly when it takes more than held;
  an issue without a lot draws lots first-expiry-first-out, a fact's shortfall going lot-less;
- an arrival into a negative balance fills it at its own cost: a partly filled hole keeps the
  cost it is carried at, and what is left over after the hole carries the arrival's cost; a
  restock of a negative item@location brings it back to exactly the stock received beyond
  the hole, at the receipt's cost.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from datetime import date
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from medbridge.canonical.finance import JournalEntry
from medbridge.canonical.masterdata import AccountRole, ItemCategory
from medbridge.canonical.movements import MovementKind
from medbridge.domain.errors import InsufficientStock
from medbridge.domain.ledger import (
    CENT,
    FACTS,
    NO_LOT,
    LedgerMovement,
    LotKey,
    StockBook,
    Valuation,
    ValuedMovement,
    ValueKey,
)
from medbridge.domain.posting import AccountMap, PostingContext, journal_entry_for

D = Decimal
ZERO = D(0)
QUANTUM = D("0.001")
HALF_CENT = D("0.005")

STORES = {"F1": ("F1-MAIN", "F1-ICU"), "F2": ("F2-MAIN", "F2-ER")}
FACILITY_OF = {store: facility for facility, stores in STORES.items() for store in stores}
LOCATIONS = sorted(FACILITY_OF)
COST_CENTER_OF = {store: f"CC-{store}" for store in LOCATIONS}
ITEMS = {
    "AMOX-500": ItemCategory.DRUG,
    "HEPARIN-5K": ItemCategory.DRUG,
    "GAUZE-10": ItemCategory.SUPPLY,
}
EXPIRY_OF_LOT = {"L1": date(2026, 1, 31), "L2": date(2026, 6, 30), "L3": None}

ACCOUNTS: AccountMap = {
    (facility, role): f"{role.value}-{facility}" for facility in STORES for role in AccountRole
}
INVENTORY_ACCOUNT = {facility: ACCOUNTS[(facility, AccountRole.INVENTORY)] for facility in STORES}

ISSUING_KINDS = (
    MovementKind.DISPENSE,
    MovementKind.CLINICAL_CONSUMPTION,
    MovementKind.WASTAGE,
    MovementKind.RETURN_TO_SUPPLIER,
)

items = st.sampled_from(sorted(ITEMS))
locations = st.sampled_from(LOCATIONS)
lots = st.sampled_from([None, *EXPIRY_OF_LOT])  # None: no lot (receipts) / FEFO (issues)
quantities = st.decimals(min_value=QUANTUM, max_value=D(25), places=3)
MAX_UNIT_COST = D("99.9999")
unit_costs = st.decimals(min_value=ZERO, max_value=MAX_UNIT_COST, places=4)
# How much an issue asks for: a share of what is held (often all of it), or any quantity
# (often too much: a request is refused, a fact applied and flagged).
Portion = tuple[str, Decimal]
shares = st.one_of(st.just(D(1)), st.decimals(min_value=D("0.01"), max_value=D(1), places=2))
portions = st.one_of(
    shares.map(lambda share: ("share", share)),
    quantities.map(lambda qty: ("any", qty)),
)


def fefo_key(book: StockBook, key: LotKey) -> tuple[bool, date, str]:
    expiry = book.expiries.get(key)
    return (expiry is None, expiry or date.max, key[2])


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = StockBook()
        self.entries: list[JournalEntry] = []
        self.expected_quantity: dict[ValueKey, Decimal] = defaultdict(Decimal)
        self.owing: set[LotKey] = set()
        """The lots a fact's shortfall went on: the only ones that may be negative."""
        self.sequence = 0
        self.applied = 0

    # --- helpers ------------------------------------------------------------------------------

    def held(self, item: str, location: str, lot: str | None) -> Decimal:
        """What an issue of ``lot`` (None: any lot) may draw on, per the book."""
        if lot is not None:
            return self.book.on_hand.get((item, location, lot), ZERO)
        return sum(
            (
                held
                for key, held in self.book.on_hand.items()
                if key[:2] == (item, location) and held > 0
            ),
            ZERO,
        )

    def source(self, data: st.DataObject) -> tuple[str, str, str | None]:
        """Where an issue draws from: mostly a lot that holds stock, else anywhere."""
        stocked = sorted(key for key, held in self.book.on_hand.items() if held > 0)
        from_stock = data.draw(st.integers(0, 4), label="from stock?") > 0
        if stocked and from_stock:
            item, location, lot = data.draw(st.sampled_from(stocked), label="stocked lot")
            fefo = lot == NO_LOT or data.draw(st.booleans(), label="fefo?")
            return item, location, None if fefo else lot
        return data.draw(st.tuples(items, locations, lots), label="anywhere")

    def issue_quantity(
        self, item: str, location: str, lot: str | None, portion: Portion
    ) -> Decimal | None:
        how, amount = portion
        if how == "any":
            return amount
        held = self.held(item, location, lot)
        qty = (held * amount).quantize(QUANTUM, rounding=ROUND_DOWN)
        return qty if qty > 0 else None

    def apply(self, movement: LedgerMovement) -> None:
        """Apply and post a movement, or check that the ledger refused it rightly, unchanged."""
        before = copy.deepcopy(self.book)
        issuing = movement.kind in (*ISSUING_KINDS, MovementKind.TRANSFER) or (
            movement.kind is MovementKind.COUNT_ADJUSTMENT and movement.quantity < 0
        )
        qty = abs(movement.quantity)
        held = self.held(movement.item, movement.location, movement.lot) if issuing else None
        try:
            valued = self.book.apply(movement)
        except InsufficientStock as error:
            refused: InsufficientStock | None = error
        else:
            refused = None
        if refused is not None:
            event("refused: insufficient stock")
            assert movement.kind not in FACTS, "a fact from the floor was refused"
            assert held is not None
            assert held < qty, f"refused although {held} >= {qty}"
            assert (refused.wanted, refused.held) == (qty, held)
            assert self.book == before, "a refused movement changed the book"
            return
        if movement.kind in FACTS and held is not None and held < qty:
            event("applied and flagged: a fact beyond the stock")
            self.check_discrepancy(valued, held)
        else:
            assert held is None or held >= qty, f"issued {qty} with only {held} on hand"
            assert valued.discrepancy is None
        event(f"applied: {movement.kind.value}")
        if issuing and self.book.valuation(movement.item, movement.location).quantity == 0:
            event("emptied an item@location")
        if valued.revaluation:
            event("filled a negative balance at another cost")

        self.check_valued(before, valued, issuing)
        self.track_quantity(movement)
        self.post(valued)
        self.applied += 1

    def check_discrepancy(self, valued: ValuedMovement, held: Decimal) -> None:
        m, flagged = valued.movement, valued.discrepancy
        assert flagged is not None, "a fact beyond the stock was not flagged"
        assert (flagged.item, flagged.location, flagged.lot) == (m.item, m.location, m.lot)
        assert (flagged.wanted, flagged.held) == (m.quantity, held)
        assert flagged.shortfall_lot == (m.lot if m.lot is not None else NO_LOT)
        assert flagged.shortfall > 0
        self.owing.add((m.item, m.location, flagged.shortfall_lot))

    def check_valued(self, before: StockBook, valued: ValuedMovement, issuing: bool) -> None:
        m = valued.movement
        qty = abs(m.quantity)
        assert valued.amount >= 0
        assert valued.amount == valued.amount.quantize(CENT)
        # the value moved is the exact moving-average share, rounded once to the cent
        source = before.valuation(m.item, m.location)
        # the exact cost per unit, as a fraction (no 28-digit unit cost): the average of what
        # is held, the cost a negative balance is carried at, else the last known cost
        if source.quantity:
            current = Fraction(source.value) / Fraction(source.quantity)
        else:
            current = Fraction(before.last_costs.get((m.item, m.location), ZERO))
        if issuing:
            exact = Fraction(qty) * current
        else:
            cost = Fraction(m.unit_cost) if m.unit_cost is not None else current
            exact = Fraction(qty) * cost
        assert abs(Fraction(valued.amount) - exact) <= Fraction(HALF_CENT)
        if not issuing:
            self.check_arrival(before.valuation(m.item, m.location), valued, m.location)
            return
        if qty == source.quantity:
            assert valued.amount == source.value, "emptying must take the whole value"
        drawn = [c for c in valued.lot_changes if c.location == m.location]
        assert all(c.quantity < 0 for c in drawn)
        assert sum(c.quantity for c in drawn) == -qty
        if m.lot is not None:
            assert [c.lot for c in drawn] == [m.lot]
        else:
            candidates = sorted(
                (k for k in before.lots(m.item, m.location) if before.on_hand[k] > 0),
                key=lambda k: fefo_key(before, k),
            )
            lots_drawn = [k[2] for k in candidates[: len(drawn)]]
            if valued.discrepancy is not None:  # all emptied, the shortfall lot-less
                lots_drawn = [k[2] for k in candidates]
                lots_drawn += [] if NO_LOT in lots_drawn else [NO_LOT]
                for change in drawn:
                    held = max(before.on_hand.get((m.item, m.location, change.lot), ZERO), ZERO)
                    short = valued.discrepancy.shortfall if change.lot == NO_LOT else ZERO
                    assert -change.quantity == held + short
            else:
                for change in drawn[:-1]:  # every lot but the last is emptied
                    assert -change.quantity == before.on_hand[(m.item, m.location, change.lot)]
            assert [c.lot for c in drawn] == lots_drawn, "not FEFO"
        if m.kind is MovementKind.TRANSFER:
            assert m.to_location is not None
            self.check_arrival(before.valuation(m.item, m.to_location), valued, m.to_location)
            assert m.to_location is not None
            arrived = [c for c in valued.lot_changes if c.location == m.to_location]
            assert [(c.lot, c.quantity) for c in arrived] == [(c.lot, -c.quantity) for c in drawn]
            for change in arrived:
                source_expiry = before.expiries.get((m.item, m.location, change.lot))
                assert change.expiry == source_expiry
                if before.on_hand.get((m.item, m.to_location, change.lot)) is None:
                    assert self.book.expiries[(m.item, m.to_location, change.lot)] == source_expiry
        else:
            assert len(drawn) == len(valued.lot_changes)

    def check_arrival(self, was: Valuation, valued: ValuedMovement, location: str) -> None:
        """An arrival fills a negative balance first, at its own cost."""
        m = valued.movement
        qty = abs(m.quantity)
        now = self.book.valuation(m.item, location)
        assert now.value - was.value == valued.amount - valued.revaluation
        if was.quantity >= 0:
            assert valued.revaluation == 0
        elif now.quantity < 0:  # partly filled: the rest of the hole keeps its cost
            kept = Fraction(now.quantity) * Fraction(was.value) / Fraction(was.quantity)
            assert abs(Fraction(now.value) - kept) <= Fraction(HALF_CENT)
        else:  # filled: what is left carries the arrival's own cost
            own = Fraction(now.quantity) * Fraction(valued.amount) / Fraction(qty)
            assert abs(Fraction(now.value) - own) <= Fraction(HALF_CENT)

    def track_quantity(self, m: LedgerMovement) -> None:
        if m.kind is MovementKind.TRANSFER:
            assert m.to_location is not None
            self.expected_quantity[(m.item, m.location)] -= m.quantity
            self.expected_quantity[(m.item, m.to_location)] += m.quantity
        elif m.kind in ISSUING_KINDS:
            self.expected_quantity[(m.item, m.location)] -= m.quantity
        else:  # receipt, or a signed count adjustment
            self.expected_quantity[(m.item, m.location)] += m.quantity

    def post(self, valued: ValuedMovement) -> None:
        m = valued.movement
        self.sequence += 1
        ctx = PostingContext(
            entry_id=f"je-{self.sequence}",
            source_event_id=f"evt-{self.sequence}",
            correlation_id=f"corr-{self.sequence}",
            posting_date=date(2025, 3, 14),
            category=ITEMS[m.item],
            facility=FACILITY_OF[m.location],
            cost_center=COST_CENTER_OF[m.location],
            to_facility=FACILITY_OF[m.to_location] if m.to_location else None,
        )
        entry = journal_entry_for(valued, ctx, ACCOUNTS)
        if valued.amount == 0 and valued.revaluation == 0:
            assert entry is None
            return
        assert entry is not None
        debits = sum((line.debit for line in entry.lines), ZERO)
        credits = sum((line.credit for line in entry.lines), ZERO)
        assert debits == credits == valued.amount + abs(valued.revaluation)
        self.entries.append(entry)

    # --- rules --------------------------------------------------------------------------------

    @rule(item=items, location=locations, lot=lots, qty=quantities, unit_cost=unit_costs)
    def receive(
        self, item: str, location: str, lot: str | None, qty: Decimal, unit_cost: Decimal
    ) -> None:
        expiry = EXPIRY_OF_LOT[lot] if lot else None
        self.apply(
            LedgerMovement(
                MovementKind.RECEIPT, item, location, qty, lot, expiry, unit_cost=unit_cost
            )
        )

    @rule(kind=st.sampled_from(ISSUING_KINDS), portion=portions, data=st.data())
    def issue(self, kind: MovementKind, portion: Portion, data: st.DataObject) -> None:
        item, location, lot = self.source(data)
        qty = self.issue_quantity(item, location, lot, portion)
        if qty is None:
            return
        self.apply(LedgerMovement(kind, item, location, qty, lot))

    @rule(unit_cost=unit_costs, extra=st.sampled_from([ZERO, QUANTUM, D(1), D(7)]), data=st.data())
    def restock(self, unit_cost: Decimal, extra: Decimal, data: st.DataObject) -> None:
        """A receipt into an item@location that owes stock: it comes back to what was received
        beyond the hole, at the receipt's cost."""
        owing = sorted(key for key, v in self.book.valuations.items() if v.quantity < 0)
        if not owing:
            return
        item, location = data.draw(st.sampled_from(owing), label="owing")
        hole = -self.book.valuation(item, location).quantity
        self.apply(
            LedgerMovement(MovementKind.RECEIPT, item, location, hole + extra, unit_cost=unit_cost)
        )
        event("restocked a negative balance")
        back = self.book.valuation(item, location)
        assert back.quantity == extra
        exact = Fraction(extra) * Fraction(unit_cost)
        assert abs(Fraction(back.value) - exact) <= Fraction(CENT), "not at the receipt's cost"

    @rule(portion=portions, data=st.data())
    def transfer(self, portion: Portion, data: st.DataObject) -> None:
        item, source, lot = self.source(data)
        destination = data.draw(locations.filter(lambda to: to != source), label="to")
        qty = self.issue_quantity(item, source, lot, portion)
        if qty is None:
            return
        self.apply(
            LedgerMovement(MovementKind.TRANSFER, item, source, qty, lot, to_location=destination)
        )

    @rule(
        item=items,
        location=locations,
        lot=lots,
        qty=quantities,
        unit_cost=st.none() | unit_costs,
    )
    def count_gain(
        self, item: str, location: str, lot: str | None, qty: Decimal, unit_cost: Decimal | None
    ) -> None:
        expiry = EXPIRY_OF_LOT[lot] if lot else None
        self.apply(
            LedgerMovement(
                MovementKind.COUNT_ADJUSTMENT, item, location, qty, lot, expiry, unit_cost
            )
        )

    @rule(portion=portions, data=st.data())
    def count_loss(self, portion: Portion, data: st.DataObject) -> None:
        item, location, lot = self.source(data)
        qty = self.issue_quantity(item, location, lot, portion)
        if qty is None:
            return
        self.apply(LedgerMovement(MovementKind.COUNT_ADJUSTMENT, item, location, -qty, lot))

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def only_a_facts_shortfall_leaves_a_lot_negative(self) -> None:
        negative = {key for key, held in self.book.on_hand.items() if held < 0}
        assert negative <= self.owing, negative - self.owing

    @invariant()
    def lots_add_up_to_the_valuation_quantity(self) -> None:
        by_item_location: dict[ValueKey, Decimal] = defaultdict(Decimal)
        for (item, location, _), held in self.book.on_hand.items():
            by_item_location[(item, location)] += held
        keys = set(by_item_location) | set(self.book.valuations) | set(self.expected_quantity)
        for key in keys:
            valuation = self.book.valuation(*key)
            assert by_item_location[key] == valuation.quantity, key
            assert valuation.quantity == self.expected_quantity[key], key

    @invariant()
    def value_has_the_sign_of_the_quantity_kept_to_the_cent_and_zero_without_stock(self) -> None:
        for key, valuation in self.book.valuations.items():
            if valuation.quantity > 0:
                assert valuation.value >= 0, key
            elif valuation.quantity < 0:
                assert valuation.value <= 0, key
            else:
                assert valuation.value == 0, f"residue {valuation.value} at {key}"
            assert valuation.value == valuation.value.quantize(CENT), key

    @invariant()
    def the_moving_average_stays_sane(self) -> None:
        """No value beyond quantity x the dearest unit cost, give or take a cent of rounding
        per movement applied (a hole filled by a barely larger receipt must not leave a few
        units worth the difference)."""
        slack = CENT * self.applied
        for key, valuation in self.book.valuations.items():
            assert abs(valuation.value) <= abs(valuation.quantity) * MAX_UNIT_COST + slack, key

    @invariant()
    def expiries_are_those_of_the_lots(self) -> None:
        for (_, _, lot), expiry in self.book.expiries.items():
            assert expiry == (EXPIRY_OF_LOT[lot] if lot != NO_LOT else None)

    @invariant()
    def gl_inventory_equals_the_ledger_value_per_facility(self) -> None:
        for facility, stores in STORES.items():
            account = INVENTORY_ACCOUNT[facility]
            gl_balance = sum(
                (
                    line.debit - line.credit
                    for entry in self.entries
                    for line in entry.lines
                    if line.account == account
                ),
                ZERO,
            )
            ledger_value = sum(
                (
                    valuation.value
                    for (_, location), valuation in self.book.valuations.items()
                    if location in stores
                ),
                ZERO,
            )
            assert gl_balance == ledger_value, facility

    @invariant()
    def the_whole_journal_balances(self) -> None:
        debits = sum((line.debit for e in self.entries for line in e.lines), ZERO)
        credits = sum((line.credit for e in self.entries for line in e.lines), ZERO)
        assert debits == credits


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
