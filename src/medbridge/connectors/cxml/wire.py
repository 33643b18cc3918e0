"""Shared reading and writing of cXML elements: paths, text, dates, money, items, parties.

Reading helpers raise the typed errors of ``errors`` with the XPath-like location of the
fault; writing helpers build lxml elements. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias, TypeVar

from lxml import etree
from pydantic import BaseModel, ValidationError

from medbridge.canonical.trade import PartnerItem, Party, PartyRole
from medbridge.connectors.cxml.errors import (
    InvalidAmount,
    InvalidDate,
    InvalidValue,
    MissingData,
)

Element: TypeAlias = etree._Element
M = TypeVar("M", bound=BaseModel)

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
TEXT_MAX = 80
"""Canonical free text (``TradeText``) is kept to 80 characters: longer names and
descriptions are cut (they are informational; identifiers are never cut)."""

_WHITESPACE = re.compile(r"\s+")
r"""One run of whitespace per match, and the match cannot fail once started: linear (the
former ``\s*[\t\r\n]+\s*`` backtracked through every run of spaces: quadratic)."""
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DATE_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


# --- reading ----------------------------------------------------------------------------------


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def show(value: str) -> str:
    """A partner's value quoted in an error reason: repr, cut to 60 characters."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


def xml_safe(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot carry replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def path_of(el: Element) -> str:
    return str(el.getroottree().getpath(el))


def clean(value: str | None) -> str | None:
    """Text as the canonical model wants it: line breaks and tabs folded, stripped, None if
    empty."""
    if value is None:
        return None
    if "\n" in value or "\t" in value or "\r" in value:
        value = _WHITESPACE.sub(_fold, value)
    return value.strip() or None


def _fold(run: re.Match[str]) -> str:
    """A run of whitespace holding a tab or line break -> one space (others are kept)."""
    text = run.group()
    return " " if "\n" in text or "\t" in text or "\r" in text else text


def own_text(el: Element | None) -> str | None:
    """The element's own character data (not its children's, e.g. a ShortName)."""
    if el is None:
        return None
    return clean("".join([el.text or "", *(child.tail or "" for child in el)]))


def short_text(el: Element | None) -> str | None:
    value = own_text(el)
    return value[:TEXT_MAX].rstrip() if value else None


def required(el: Element, tag: str) -> Element:
    found = el.find(tag)
    if found is None:
        raise MissingData(f"<{tag}> is required", path=f"{path_of(el)}/{tag}")
    return found


def required_text(el: Element, tag: str) -> str:
    value = own_text(required(el, tag))
    if value is None:
        raise MissingData(f"<{tag}> is empty", path=f"{path_of(el)}/{tag}")
    return value


def attr(el: Element, name: str) -> str | None:
    return clean(el.get(name))


def required_attr(el: Element, name: str) -> str:
    value = attr(el, name)
    if value is None:
        raise MissingData(f"attribute {name} is required", path=f"{path_of(el)}/@{name}")
    return value


def to_date(value: str, el: Element, suffix: str = "") -> date:
    """A cXML date: an ISO 8601 datetime (the calendar date as written) or a plain date.
    ``el`` + ``suffix`` locate it in an error (the path is only computed on error)."""
    try:
        if _DATE_ONLY.match(value):
            return date.fromisoformat(value)
        return datetime.fromisoformat(value).date()
    except ValueError:
        raise InvalidDate(
            f"{show(value)} is not an ISO 8601 date", path=path_of(el) + suffix
        ) from None


def date_attr(el: Element, name: str, *, needed: bool = False) -> date | None:
    value = required_attr(el, name) if needed else attr(el, name)
    return None if value is None else to_date(value, el, f"/@{name}")


def to_decimal(value: str, el: Element, suffix: str = "") -> Decimal:
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise InvalidAmount(
            f"{show(value)} is not a decimal number", path=path_of(el) + suffix
        ) from None
    if not number.is_finite():
        raise InvalidAmount(f"{show(value)} is not a finite number", path=path_of(el) + suffix)
    return number


def decimal_attr(el: Element, name: str) -> Decimal:
    return to_decimal(required_attr(el, name), el, f"/@{name}")


def int_attr(el: Element, name: str, default: int | None = None) -> int:
    value = attr(el, name)
    if value is None:
        if default is None:
            raise MissingData(f"attribute {name} is required", path=f"{path_of(el)}/@{name}")
        return default
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise InvalidValue(f"{show(value)} is not a line number", path=f"{path_of(el)}/@{name}")
    return int(value)


def money(holder: Element) -> tuple[Decimal | None, str | None]:
    """``holder/Money``: its amount (None when empty) and currency."""
    el = required(holder, "Money")
    currency = el.get("currency")
    if currency is not None and not _CURRENCY.match(currency):
        raise InvalidValue(
            f"currency {show(currency)} is not an ISO 4217 code", path=f"{path_of(el)}/@currency"
        )
    text = own_text(el)
    return (None if text is None else to_decimal(text, el)), currency


def required_money(holder: Element, currency: str) -> Decimal:
    amount, found = money(holder)
    if amount is None:
        raise MissingData("<Money> is empty", path=f"{path_of(holder)}/Money")
    same_currency(found, currency, holder)
    return amount


def same_currency(found: str | None, expected: str, holder: Element) -> None:
    """``holder/Money/@currency`` is the document's currency (when given)."""
    if found is not None and found != expected:
        raise InvalidValue(
            f"currency {found} differs from the document's {expected}",
            path=f"{path_of(holder)}/Money/@currency",
        )


def extrinsics(el: Element | None) -> dict[str, Element]:
    """``Extrinsic`` children by name (the first of each name)."""
    found: dict[str, Element] = {}
    if el is not None:
        for ex in el.findall("Extrinsic"):
            name = ex.get("name")
            if name and name not in found:
                found[name] = ex
    return found


def build(model: type[M], at: Element, **fields: Any) -> M:
    """The canonical model, or an ``InvalidValue`` located at ``at`` naming the field."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or model.__name__
        raise InvalidValue(f"{model.__name__}.{where}: {first['msg']}", path=path_of(at)) from None


def _digits(value: str) -> bool:
    """ASCII digits: ``str.isdigit`` is also true for "²" and any script's digits."""
    return value.isascii() and value.isdigit()


def _gtin(value: str, path: str) -> str:
    if not _digits(value) or len(value) not in (8, 12, 13, 14):
        raise InvalidValue(f"GTIN {show(value)} is not 8, 12, 13 or 14 digits", path=path)
    return value.zfill(14)


def _ndc(value: str, path: str) -> str:
    """An 11-digit NDC; a dashed 10-digit NDC (4-4-2, 5-3-2, 5-4-1) is padded to 5-4-2."""
    parts = value.split("-")
    if len(parts) == 3 and all(_digits(p) for p in parts):
        widths = tuple(len(p) for p in parts)
        if widths in ((4, 4, 2), (5, 3, 2), (5, 4, 1), (5, 4, 2)):
            return parts[0].zfill(5) + parts[1].zfill(4) + parts[2].zfill(2)
    if _digits(value) and len(value) == 11:
        return value
    raise InvalidValue(f"NDC {show(value)} is not 11 digits or a dashed 10-digit NDC", path=path)


def read_item(
    at: Element,
    *,
    item_id: Element | None,
    description: Element | None,
    extr: Mapping[str, Element],
) -> PartnerItem:
    """A ``PartnerItem`` from ``ItemID`` (SupplierPartID, BuyerPartID), a Description and the
    Extrinsics SupplierPartID, BuyerPartID, GTIN, NDC, Description."""
    supplier = buyer = None
    if item_id is not None:
        supplier = own_text(item_id.find("SupplierPartID"))
        buyer = own_text(item_id.find("BuyerPartID"))
    supplier = supplier or own_text(extr.get("SupplierPartID"))
    buyer = buyer or own_text(extr.get("BuyerPartID"))
    gtin_el, ndc_el = extr.get("GTIN"), extr.get("NDC")
    gtin = own_text(gtin_el)
    ndc = own_text(ndc_el)
    desc = short_text(description) if description is not None else None
    desc = desc or short_text(extr.get("Description"))
    if not (supplier or buyer or gtin or ndc or desc):
        raise MissingData(
            "no item identifier (SupplierPartID, BuyerPartID, GTIN or NDC) nor a Description",
            path=f"{path_of(at)}/ItemID",
        )
    return build(
        PartnerItem,
        at,
        supplier_part=supplier,
        buyer_part=buyer,
        gtin=None if gtin is None or gtin_el is None else _gtin(gtin, path_of(gtin_el)),
        ndc=None if ndc is None or ndc_el is None else _ndc(ndc, path_of(ndc_el)),
        description=desc,
    )


# --- parties ----------------------------------------------------------------------------------

CONTACT_ROLE: dict[PartyRole, str] = {
    PartyRole.SHIP_TO: "shipTo",
    PartyRole.BILL_TO: "billTo",
    PartyRole.BUYER: "soldTo",
    PartyRole.SUPPLIER: "supplierCorporate",
    PartyRole.MANUFACTURER: "manufacturer",
    PartyRole.GROUP: "buyingGroup",
}
PARTY_ROLE: dict[str, PartyRole] = {
    **{contact: role for role, contact in CONTACT_ROLE.items()},
    "buyer": PartyRole.BUYER,
    "buyerCorporate": PartyRole.BUYER,
    "invoiceFrom": PartyRole.SUPPLIER,
}
"""Contact/@role -> party role; other roles (endUser, remitTo, shipFrom ...) are not parties."""


def contact_parties(contacts: Iterable[Element]) -> list[tuple[PartyRole, Element]]:
    return [(PARTY_ROLE[role], c) for c in contacts if (role := c.get("role") or "") in PARTY_ROLE]


def read_parties(found: Iterable[tuple[PartyRole, Element]]) -> tuple[Party, ...]:
    """Parties from Address/Contact elements: ``addressID`` is the id, ``Name`` the name.
    One without an addressID is no canonical party (the id is mandatory); the first of a
    role wins."""
    parties: dict[PartyRole, Party] = {}
    for role, el in found:
        party_id = attr(el, "addressID")
        if party_id is None or role in parties:
            continue
        parties[role] = build(Party, el, role=role, id=party_id, name=short_text(el.find("Name")))
    return tuple(parties.values())


# --- writing ----------------------------------------------------------------------------------


def sub(parent: Element, tag: str, text: str | None = None, /, **attrs: str | None) -> Element:
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def lang_text(parent: Element, tag: str, text: str | None, /, **attrs: str | None) -> Element:
    el = sub(parent, tag, text, **attrs)
    el.set(XML_LANG, "en")
    return el


def fmt_date(value: date) -> str:
    return f"{value.isoformat()}T00:00:00+00:00"


def fmt_decimal(value: Decimal) -> str:
    return format(value, "f")


def write_money(parent: Element, tag: str, amount: Decimal, currency: str) -> Element:
    holder = sub(parent, tag)
    sub(holder, "Money", fmt_decimal(amount), currency=currency)
    return holder


def write_extrinsic(parent: Element, name: str, value: str) -> None:
    sub(parent, "Extrinsic", value, name=name)


def write_item_id(parent: Element, item: PartnerItem) -> None:
    item_id = sub(parent, "ItemID")
    sub(item_id, "SupplierPartID", item.supplier_part or "")
    if item.buyer_part:
        sub(item_id, "BuyerPartID", item.buyer_part)


def write_codes(parent: Element, item: PartnerItem) -> None:
    """GTIN and NDC as Extrinsics (cXML 1.2 has no dedicated element for either)."""
    if item.gtin:
        write_extrinsic(parent, "GTIN", item.gtin)
    if item.ndc:
        write_extrinsic(parent, "NDC", item.ndc)


def write_contact(parent: Element, party: Party) -> None:
    contact = sub(parent, "Contact", role=CONTACT_ROLE[party.role], addressID=party.id)
    lang_text(contact, "Name", party.name or "")


def write_item_detail(
    parent: Element, item: PartnerItem, unit: str, unit_price: Decimal, currency: str
) -> Element:
    """``ItemDetail``: UnitPrice, Description, UnitOfMeasure and the GTIN/NDC Extrinsics."""
    detail = sub(parent, "ItemDetail")
    write_money(detail, "UnitPrice", unit_price, currency)
    lang_text(detail, "Description", item.description or "")
    sub(detail, "UnitOfMeasure", unit)
    write_codes(detail, item)
    return detail
