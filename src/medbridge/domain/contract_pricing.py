"""Contract prices from a partner's price catalog: pure rules (``flows.contract_catalog``
records and applies what they decide).

- Our price: the catalog's list price (a price without tier), or the tier named ``ours``
  (a buying group tier such as ``C01``), or the catalog's one tier; several tiers and none
  named ours: no price (the reason says to name ours).
- Per contract unit: a price in the contract's unit as it is, else one in another unit
  converted with the item's pack conversions (CA 66.50 with CA = 20 EA: 3.325 per EA);
  prices are kept to six decimal places, like contract prices.
- The change in percent of the contract price; None from a price of 0 (any change from
  nothing is beyond every tolerance).
- A new price keeps the contract's tiers' structure: each tier scaled by new / old.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from medbridge.canonical.masterdata import Contract, Item, PriceTier
from medbridge.canonical.trade import CatalogPrice
from medbridge.domain.errors import UnknownUnit
from medbridge.domain.units import base_factor

SIX = Decimal("0.000001")
TIER_SETTING = "MEDBRIDGE_CONTRACT_CATALOG_TIER"


def our_price(
    item: Item,
    contract: Contract,
    prices: Sequence[CatalogPrice],
    currency: str,
    ours: str | None = None,
) -> Decimal | str:
    """Our price per contract unit in the catalog, or why there is none."""
    if currency != contract.price.currency:
        return f"the catalog is in {currency}, the contract in {contract.price.currency}"
    tiers = sorted({p.tier for p in prices if p.tier is not None})
    if ours is not None:
        chosen = [p for p in prices if p.tier == ours]
    elif any(p.tier is None for p in prices):
        chosen = [p for p in prices if p.tier is None]
    elif len(tiers) == 1:
        chosen = list(prices)
    else:
        return f"the catalog prices tiers {', '.join(tiers)} only: name ours ({TIER_SETTING})"
    if not chosen:
        return f"no price of tier {ours}"
    chosen.sort(key=lambda p: p.unit != contract.unit)  # the contract's own unit first
    for price in chosen:
        try:
            ratio = base_factor(item, contract.unit) / base_factor(item, price.unit)
        except UnknownUnit:
            continue
        return (price.amount * ratio).quantize(SIX)
    units = ", ".join(sorted({p.unit for p in chosen}))
    return f"priced in {units}, which {item.code} does not convert to {contract.unit}"


def change_percent(current: Decimal, proposed: Decimal) -> Decimal | None:
    """(proposed - current) / current in percent; None from a price of 0."""
    if current == 0:
        return None
    return ((proposed - current) / current * 100).quantize(SIX)


def repriced(contract: Contract, price: Decimal) -> Contract:
    """``contract`` at ``price``, its tiers scaled alike (validated again)."""
    current = contract.price.amount
    ratio = price / current if current else Decimal(1)
    tiers = [
        PriceTier(minimum_quantity=t.minimum_quantity, price=(t.price * ratio).quantize(SIX))
        for t in contract.tiers
    ]
    fields = contract.model_dump() | {
        "price": contract.price.model_copy(update={"amount": price}),
        "tiers": tiers,
    }
    return Contract.model_validate(fields)
