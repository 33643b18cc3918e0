"""Hardened XML parsing for untrusted cXML: no DTD loading, no entities, no network.

``parse_xml`` refuses, before lxml sees the bytes, a document over the size limit or one whose
prolog declares entities or a DTD internal subset (billion laughs, XXE); lxml then parses with
entity resolution, DTD loading and network access off, comments and processing instructions
dropped, and libxml2's default limits (``huge_tree`` off). The standard external DOCTYPE
(``<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.0xx/cXML.dtd">``) is accepted
and never fetched. Only ASCII-compatible encodings are read (the document must start with
``<`` after an optional UTF-8 BOM), so the byte scan sees the markup as lxml will. A parsed
tree still holding an internal subset or an entity reference (an
encoding the byte scan cannot read, an undeclared ``&name;``) is refused as well.
"""

from __future__ import annotations

import re

from lxml import etree

from medbridge.connectors.cxml.errors import ForbiddenMarkup, NotWellFormed, TooLarge

_ENTITY_DECL = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_INTERNAL_SUBSET = re.compile(rb"<!DOCTYPE[^<>\[]*\[", re.IGNORECASE)
r"""Linear: the scan after ``<!DOCTYPE`` stops at the next ``<``, so scans never overlap
(``[^>\[]*`` ran on through every later ``<!DOCTYPE``: quadratic). A subset hidden behind a
``<`` in a quoted system id is still refused by the check of the parsed tree."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


_PARSER = _parser()


def parse_xml(data: bytes, *, max_bytes: int) -> etree._Element:
    """The root element of ``data``, or a ``TooLarge`` / ``NotWellFormed`` error."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"cXML is parsed from bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise TooLarge(f"document of {len(data):,} bytes is over the {max_bytes:,} byte limit")
    if not data.strip():
        raise NotWellFormed("empty document")
    if not data.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<"):
        # UTF-16/32 or EBCDIC would hide markup from the byte scan below; cXML is UTF-8
        raise NotWellFormed("not XML in UTF-8 (or another ASCII-compatible encoding)", path="/")
    if _ENTITY_DECL.search(data):
        raise ForbiddenMarkup("ENTITY declarations are not accepted", path="/")
    if _INTERNAL_SUBSET.search(data):
        raise ForbiddenMarkup("a DOCTYPE internal subset is not accepted", path="/")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise NotWellFormed(f"not well-formed XML: {exc.msg}", path="/") from None
    except (ValueError, LookupError) as exc:  # unknown encoding, bad bytes
        raise NotWellFormed(f"not readable XML: {exc}", path="/") from None
    if root is None:
        raise NotWellFormed("no root element", path="/")
    tree = root.getroottree()
    dtd = tree.docinfo.internalDTD
    if dtd is not None and (
        any(True for _ in dtd.iterelements()) or any(True for _ in dtd.iterentities())
    ):
        raise ForbiddenMarkup("a DOCTYPE internal subset is not accepted", path="/")
    for entity in root.iter(etree.Entity):
        raise ForbiddenMarkup(
            f"entity reference {entity.text} is not accepted", path=tree.getpath(entity.getparent())
        )
    return root
