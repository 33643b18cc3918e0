"""The schema registry: JSON Schemas generated from the canonical models, published per version
as ``governance/schemas/<name>/v<N>.json`` (checked in), and a backward-compatibility check.

Compatible means both sides keep working on the same version: a producer whose documents were
valid under the old schema is still valid under the new one, AND a consumer written against the
old schema can read documents valid under the new one. Hence:

- incompatible: a property removed; a type changed, narrowed or widened (a field that becomes
  nullable surprises consumers); a new required property; an enum value removed or added
  (consumers switch exhaustively over enums, so an unknown value is a crash, not a default); an
  enum added or dropped; a const changed; a default changed (an omitted field would change
  meaning); a constraint tightened (maxLength/maximum/maxItems lowered, minLength/minimum/
  minItems raised, pattern/format/multipleOf changed or added, uniqueItems added);
  additionalProperties changed from allowed to forbidden or constrained.
- compatible: an optional property added (consumers ignore fields they do not know); a
  constraint loosened or dropped; a required property made optional (our serializer writes every
  field, defaults included); titles and descriptions.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic import BaseModel

from medbridge.canonical import (
    Contract,
    CostCenter,
    EventEnvelope,
    GLAccount,
    Item,
    JournalEntry,
    Location,
    StockMovement,
    Supplier,
    UnitOfMeasure,
)
from medbridge.canonical.demand import PharmacyOrder
from medbridge.canonical.inbound import InboundMovement
from medbridge.canonical.procurement import GoodsReceipt, PurchaseOrder, SupplierInvoice
from medbridge.canonical.trade import (
    AcknowledgementDocument,
    CatalogDocument,
    InvoiceDocument,
    OrderDocument,
    ShipNoticeDocument,
)

Schema = dict[str, Any]

DEFAULT_DIRECTORY: Final = Path(__file__).parent / "schemas"

SCHEMA_MODE: Final[Literal["validation"]] = "validation"
"""We publish validation-mode schemas: the registry is the contract of what we accept, and the
costly breakage is a producer (connector, API client) whose documents suddenly fail. Validation
mode is what we accept (a Decimal as number or string); serialization mode is only what we emit
(a Decimal as string), which is narrower and would tell a producer sending a JSON number that it
is wrong. Consumers stay protected: what we serialize always validates against this schema
(pydantic round-trips its own output), and the check rejects changes that widen what a consumer
may receive (new enum values, new types)."""


@dataclass(frozen=True)
class CatalogEntry:
    """A published schema: its current version and the model that generates it."""

    version: int
    model: type[BaseModel]


CATALOG: Final = MappingProxyType(
    {
        "inventory.stock_movement": CatalogEntry(1, StockMovement),
        "finance.journal_entry": CatalogEntry(1, JournalEntry),
        "masterdata.item": CatalogEntry(1, Item),
        "masterdata.location": CatalogEntry(1, Location),
        "masterdata.cost_center": CatalogEntry(1, CostCenter),
        "masterdata.gl_account": CatalogEntry(1, GLAccount),
        "masterdata.supplier": CatalogEntry(1, Supplier),
        "masterdata.contract": CatalogEntry(1, Contract),
        "masterdata.unit_of_measure": CatalogEntry(1, UnitOfMeasure),
        "envelope.stock_movement_event": CatalogEntry(2, EventEnvelope[StockMovement]),
        "inbound.movement": CatalogEntry(2, InboundMovement),
        "pharmacy.order": CatalogEntry(1, PharmacyOrder),
        "procurement.purchase_order": CatalogEntry(1, PurchaseOrder),
        "procurement.goods_receipt": CatalogEntry(1, GoodsReceipt),
        "procurement.supplier_invoice": CatalogEntry(1, SupplierInvoice),
        "trade.order": CatalogEntry(1, OrderDocument),
        "trade.acknowledgement": CatalogEntry(1, AcknowledgementDocument),
        "trade.ship_notice": CatalogEntry(1, ShipNoticeDocument),
        "trade.invoice": CatalogEntry(1, InvoiceDocument),
        "trade.catalog": CatalogEntry(1, CatalogDocument),
    }
)
"""Published names are frozen. An incompatible model change bumps the version here; the files
of earlier versions stay in the registry, unchanged, for consumers still on them."""


@dataclass(frozen=True)
class Incompatibility:
    """One backward-incompatible difference; ``path`` points into the old schema's document
    shape (``$ref`` followed), e.g. ``/properties/quantity/type``."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.reason}"


class SchemaRegistryError(Exception):
    """Root of the registry's errors::

    SchemaRegistryError
     +-- UnknownSchemaError          the name is not in CATALOG
     +-- SchemaNotPublishedError     no file for that name and version in the registry
     +-- IncompatibleSchemaError     the model breaks its published version: bump the version
     +-- UnresolvableReferenceError  a $ref that points nowhere in its schema
    """


class UnknownSchemaError(SchemaRegistryError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no schema named {name!r} in the catalog; known: {sorted(CATALOG)}")
        self.name = name


class SchemaNotPublishedError(SchemaRegistryError):
    def __init__(self, name: str, version: int, path: Path) -> None:
        super().__init__(f"{name} v{version} is not published ({path} does not exist)")
        self.name, self.version, self.path = name, version, path


class IncompatibleSchemaError(SchemaRegistryError):
    def __init__(self, name: str, version: int, problems: list[Incompatibility]) -> None:
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(
            f"{name} v{version}: the model no longer matches its published schema compatibly; "
            f"bump the version in CATALOG to v{version + 1} and publish again:\n{listed}"
        )
        self.name, self.version, self.problems = name, version, tuple(problems)


class UnresolvableReferenceError(SchemaRegistryError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"$ref {ref!r} does not resolve within its schema")
        self.ref = ref


def render(schema: Schema) -> str:
    """The file form: pretty, sorted keys, trailing newline, so that diffs are readable."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate_one(model: type[BaseModel]) -> Schema:
    # Round-tripped through JSON so it compares equal to what load_published reads back.
    schema: Schema = json.loads(render(model.model_json_schema(mode=SCHEMA_MODE)))
    return schema


def generate() -> dict[str, Schema]:
    """The schema every catalog entry's model generates now, by name."""
    return {name: generate_one(entry.model) for name, entry in CATALOG.items()}


def schema_path(name: str, version: int, directory: Path = DEFAULT_DIRECTORY) -> Path:
    return directory / name / f"v{version}.json"


def load_published(
    name: str, version: int | None = None, directory: Path = DEFAULT_DIRECTORY
) -> Schema:
    """The published schema of ``name`` at ``version`` (default: the catalog's current one)."""
    if version is None:
        if name not in CATALOG:
            raise UnknownSchemaError(name)
        version = CATALOG[name].version
    path = schema_path(name, version, directory)
    if not path.is_file():
        raise SchemaNotPublishedError(name, version, path)
    schema: Schema = json.loads(path.read_text(encoding="utf-8"))
    return schema


def publish(directory: Path = DEFAULT_DIRECTORY) -> list[Path]:
    """Write the current version of every catalog entry; return the files written.

    An existing file is rewritten only when the model changed compatibly. Every entry is checked
    before anything is written, so an incompatible change leaves the registry untouched.
    """
    pending: list[tuple[Path, Schema]] = []
    for name, schema in generate().items():
        version = CATALOG[name].version
        path = schema_path(name, version, directory)
        if path.is_file():
            published = load_published(name, version, directory)
            if published == schema:
                continue
            problems = check_compatibility(published, schema)
            if problems:
                raise IncompatibleSchemaError(name, version, problems)
        pending.append((path, schema))
    for path, schema in pending:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(schema), encoding="utf-8")
    return [path for path, _ in pending]


def check_compatibility(old: Schema, new: Schema) -> list[Incompatibility]:
    """Every way in which ``new`` is not backward compatible with ``old`` (module docstring)."""
    comparison = _Comparison(old, new)
    comparison.compare(old, new, "")
    return comparison.found


_UPPER_BOUNDS: Final = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER_BOUNDS: Final = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_EXACT: Final = ("pattern", "format", "multipleOf")  # any change or addition may reject old data


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root, self.new_root = old_root, new_root
        self.found: list[Incompatibility] = []
        self._seen: set[tuple[str, str]] = set()  # $ref pairs compared: once, and no cycles

    def report(self, path: str, reason: str) -> None:
        self.found.append(Incompatibility(path, reason))

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if refs[0] and refs[1]:
            if refs in self._seen:
                return
            self._seen.add(refs)
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        if "default" in old and "default" in new and old["default"] != new["default"]:
            self.report(f"{path}/default", f"changed from {old['default']!r} to {new['default']!r}")
        old_variants, new_variants = _variants(old, self.old_root), _variants(new, self.new_root)
        if len(old_variants) == 1 and len(new_variants) == 1:
            (old_type, old_node), (new_type, new_node) = old_variants[0], new_variants[0]
            if old_type != new_type:
                self.report(f"{path}/type", f"type changed from {old_type} to {new_type}")
            elif old_node is old and new_node is new:
                self._compare_keywords(old, new, path)
            else:  # a one-option anyOf: compare the option itself
                self.compare(old_node, new_node, path)
            return
        new_by_type = dict(new_variants)
        for index, (type_, option) in enumerate(old_variants):
            where = f"{path}/anyOf/{index}" if len(old_variants) > 1 else path
            if type_ in new_by_type:
                self.compare(option, new_by_type[type_], where)
            else:
                self.report(where, f"type {type_} no longer accepted")
        for type_ in dict(new_variants).keys() - dict(old_variants).keys():
            self.report(path, f"type {type_} added: consumers of the old schema do not expect it")

    def _compare_keywords(self, old: Schema, new: Schema, path: str) -> None:
        if old.get("const", _MISSING) != new.get("const", _MISSING):
            self.report(
                f"{path}/const", f"changed from {old.get('const')!r} to {new.get('const')!r}"
            )
        self._compare_enum(old.get("enum"), new.get("enum"), f"{path}/enum")
        for key in _UPPER_BOUNDS:
            if key in new and (key not in old or new[key] < old[key]):
                self.report(f"{path}/{key}", f"tightened from {old.get(key)} to {new[key]}")
        for key in _LOWER_BOUNDS:
            if key in new and (key not in old or new[key] > old[key]):
                self.report(f"{path}/{key}", f"tightened from {old.get(key)} to {new[key]}")
        for key in _EXACT:
            if key in new and new[key] != old.get(key):
                self.report(f"{path}/{key}", f"changed from {old.get(key)!r} to {new[key]!r}")
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            self.report(f"{path}/uniqueItems", "items must now be unique")
        self._compare_object(old, new, path)
        self._compare_open(old.get("items"), new.get("items"), f"{path}/items")

    def _compare_enum(self, old: list[Any] | None, new: list[Any] | None, path: str) -> None:
        if old is None and new is None:
            return
        if old is None or new is None:
            self.report(path, "enum added" if old is None else "enum dropped: any value possible")
            return
        if removed := [value for value in old if value not in new]:
            self.report(path, f"values removed: {removed}")
        if added := [value for value in new if value not in old]:
            self.report(path, f"values added: {added} (consumers switch over enums exhaustively)")

    def _compare_object(self, old: Schema, new: Schema, path: str) -> None:
        old_properties, new_properties = old.get("properties", {}), new.get("properties", {})
        for name, schema in old_properties.items():
            where = f"{path}/properties/{_escape(name)}"
            if name in new_properties:
                self.compare(schema, new_properties[name], where)
            else:
                self.report(where, "property removed")
        for name in sorted(set(new.get("required", ())) - set(old.get("required", ()))):
            self.report(f"{path}/properties/{_escape(name)}", "new required property")
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if new_extra is False and old_extra is not False:
            self.report(f"{path}/additionalProperties", "additional properties now forbidden")
        elif old_extra is not False:
            self._compare_open(old_extra, new_extra, f"{path}/additionalProperties")

    def _compare_open(self, old: Any, new: Any, path: str) -> None:
        """``items`` or ``additionalProperties``: absent or ``true`` is the schema ``{}``."""
        if isinstance(old, dict) or isinstance(new, dict):
            as_schema = [value if isinstance(value, dict) else {} for value in (old, new)]
            self.compare(as_schema[0], as_schema[1], path)


_MISSING: Final = object()


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")  # JSON pointer (RFC 6901)


def _resolve(node: Schema, root: Schema) -> Schema:
    """Follow ``$ref`` (local pointers such as ``#/$defs/Money``); siblings of the ref win."""
    while "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnresolvableReferenceError(str(ref))
        target: Any = root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise UnresolvableReferenceError(ref)
            target = target[part]
        if not isinstance(target, dict):
            raise UnresolvableReferenceError(ref)
        node = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    return node


def _variants(node: Schema, root: Schema) -> list[tuple[str, Schema]]:
    """A node's alternatives (its anyOf/oneOf, else itself), keyed by JSON type; repeated types
    (a union of two models) are told apart by their order. Options stay unresolved so that the
    cycle guard in ``compare`` sees their ``$ref``."""
    seen: Counter[str] = Counter()
    keyed: list[tuple[str, Schema]] = []
    options: list[Schema] = node.get("anyOf") or node.get("oneOf") or [node]
    for option in options:
        type_ = str(_resolve(option, root).get("type", "any"))
        seen[type_] += 1
        keyed.append((type_ if seen[type_] == 1 else f"{type_}#{seen[type_]}", option))
    return keyed
