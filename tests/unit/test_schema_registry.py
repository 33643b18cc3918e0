"""The schema registry: the published schemas match the canonical models, publishing refuses to
overwrite a version incompatibly, and each backward-compatibility rule holds both ways."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, StringConstraints, create_model

from medbridge.canonical import CanonicalModel, Money, StockMovement
from medbridge.governance.schema_registry import (
    CATALOG,
    DEFAULT_DIRECTORY,
    Incompatibility,
    IncompatibleSchemaError,
    SchemaNotPublishedError,
    SchemaRegistryError,
    UnknownSchemaError,
    UnresolvableReferenceError,
    check_compatibility,
    generate,
    generate_one,
    load_published,
    publish,
    render,
    schema_path,
)

REPUBLISH = "run `medbridge schemas publish` and commit the file"

# -- the checked-in registry matches the models ------------------------------------------------


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_published_schema_matches_the_model(name: str) -> None:
    version = CATALOG[name].version
    generated = generate_one(CATALOG[name].model)
    try:
        published = load_published(name)
    except SchemaNotPublishedError:
        pytest.fail(f"{name} v{version} is not published: {REPUBLISH}")
    if published == generated:
        return
    problems = check_compatibility(published, generated)
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        pytest.fail(
            f"{name} v{version}: the model changed INCOMPATIBLY with its published schema:\n"
            f"{listed}\nbump the version of {name!r} in CATALOG to v{version + 1}, then "
            f"{REPUBLISH} (v{version} stays published for its consumers)"
        )
    pytest.fail(f"{name} v{version}: the model changed compatibly; {REPUBLISH}")


def test_the_catalog_publishes_the_canonical_models() -> None:
    expected = {
        "inventory.stock_movement",
        "finance.journal_entry",
        "masterdata.item",
        "masterdata.location",
        "masterdata.cost_center",
        "masterdata.gl_account",
        "masterdata.supplier",
        "masterdata.contract",
        "masterdata.unit_of_measure",
        "envelope.stock_movement_event",
    }
    assert expected <= set(CATALOG)


def test_the_registry_holds_every_version_of_catalog_schemas_only() -> None:
    for folder in DEFAULT_DIRECTORY.iterdir():
        assert folder.name in CATALOG, f"{folder} is not in CATALOG (published names are frozen)"
    for name, entry in CATALOG.items():
        for version in range(1, entry.version + 1):
            path = schema_path(name, version)
            assert path.is_file(), f"{path} is missing: published versions are never deleted"


@pytest.mark.parametrize("path", sorted(DEFAULT_DIRECTORY.glob("*/v*.json")), ids=str)
def test_published_files_are_in_their_diffable_form(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text == render(json.loads(text)), f"{path}: not rendered by the registry"


def test_the_envelope_schema_carries_the_movement() -> None:
    envelope = generate()["envelope.stock_movement_event"]
    assert envelope["properties"]["data"] == {"$ref": "#/$defs/StockMovement"}
    assert "quantity" in envelope["$defs"]["StockMovement"]["required"]


# -- publish and load ---------------------------------------------------------------------------


def test_publish_writes_every_schema_once(tmp_path: Path) -> None:
    written = publish(tmp_path)
    assert sorted(written) == sorted(
        schema_path(n, e.version, tmp_path) for n, e in CATALOG.items()
    )
    assert load_published("masterdata.item", directory=tmp_path) == generate()["masterdata.item"]
    assert publish(tmp_path) == []


def test_publish_rewrites_a_compatible_change(tmp_path: Path) -> None:
    publish(tmp_path)
    path = schema_path("masterdata.supplier", 1, tmp_path)
    stale = json.loads(path.read_text(encoding="utf-8"))
    stale["properties"]["name"]["maxLength"] = 100  # the model has since loosened it to 200
    path.write_text(render(stale), encoding="utf-8")
    assert publish(tmp_path) == [path]
    assert (
        load_published("masterdata.supplier", directory=tmp_path)["properties"]["name"]["maxLength"]
        == 200
    )


def test_publish_refuses_an_incompatible_change_and_writes_nothing(tmp_path: Path) -> None:
    publish(tmp_path)
    path = schema_path("inventory.stock_movement", 1, tmp_path)
    published = json.loads(path.read_text(encoding="utf-8"))
    published["properties"]["legacy_code"] = {"type": "string"}  # since removed from the model
    path.write_text(render(published), encoding="utf-8")
    other = schema_path("masterdata.item", 1, tmp_path)
    other.unlink()
    with pytest.raises(IncompatibleSchemaError) as caught:
        publish(tmp_path)
    assert caught.value.name == "inventory.stock_movement"
    assert caught.value.problems == (
        Incompatibility("/properties/legacy_code", "property removed"),
    )
    assert "bump the version" in str(caught.value)
    assert json.loads(path.read_text(encoding="utf-8")) == published
    assert not other.exists()


def test_load_published_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(UnknownSchemaError):
        load_published("inventory.no_such_thing")
    with pytest.raises(SchemaNotPublishedError) as caught:
        load_published("masterdata.item", directory=tmp_path)
    assert caught.value.path == tmp_path / "masterdata.item" / "v1.json"
    assert isinstance(caught.value, SchemaRegistryError)


# -- the compatibility rules on small schemas ----------------------------------------------------

STRING: dict[str, Any] = {"type": "string"}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def prop(**schema: Any) -> dict[str, Any]:
    return obj({"p": schema})


def optional(**schema: Any) -> dict[str, Any]:
    return obj({"p": {"anyOf": [schema, {"type": "null"}], "default": None}})


def money(**currency: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"cost": {"anyOf": [{"$ref": "#/$defs/Money"}, {"type": "null"}]}},
        "$defs": {"Money": obj({"amount": {"type": "number"}, "currency": currency}, ("amount",))},
    }


RULES = [
    # (id, old, new, the paths reported; [] means compatible)
    ("property removed", obj({"a": STRING, "b": STRING}), obj({"a": STRING}), ["/properties/b"]),
    ("optional property added", obj({"a": STRING}), obj({"a": STRING, "b": STRING}), []),
    ("type changed", prop(type="string"), prop(type="integer"), ["/properties/p/type"]),
    ("title and description changed", prop(type="string"), prop(type="string", title="P"), []),
    (
        "type narrowed in a union",
        prop(anyOf=[{"type": "number"}, STRING]),
        prop(type="number"),
        ["/properties/p/anyOf/1"],
    ),
    ("field became nullable", prop(type="string"), optional(type="string"), ["/properties/p"]),
    ("optional unchanged", optional(type="string"), optional(type="string"), []),
    (
        "optional: constraint tightened inside anyOf",
        optional(type="string", maxLength=20),
        optional(type="string", maxLength=10),
        ["/properties/p/anyOf/0/maxLength"],
    ),
    (
        "optional: constraint loosened inside anyOf",
        optional(type="string", maxLength=10),
        optional(type="string", maxLength=20),
        [],
    ),
    (
        "new required property",
        obj({"a": STRING}),
        obj({"a": STRING, "b": STRING}, ("b",)),
        ["/properties/b"],
    ),
    ("optional made required", obj({"a": STRING}), obj({"a": STRING}, ("a",)), ["/properties/a"]),
    ("required made optional", obj({"a": STRING}, ("a",)), obj({"a": STRING}), []),
    ("enum value removed", prop(enum=["x", "y"]), prop(enum=["x"]), ["/properties/p/enum"]),
    ("enum value added", prop(enum=["x"]), prop(enum=["x", "y"]), ["/properties/p/enum"]),
    ("enum reordered", prop(enum=["x", "y"]), prop(enum=["y", "x"]), []),
    ("const changed", prop(const="1.0"), prop(const="2.0"), ["/properties/p/const"]),
    ("const kept", prop(const="1.0"), prop(const="1.0", default="1.0"), []),
    (
        "default changed",
        prop(type="integer", default=2),
        prop(type="integer", default=3),
        ["/properties/p/default"],
    ),
    ("maxLength lowered", prop(maxLength=64), prop(maxLength=32), ["/properties/p/maxLength"]),
    ("maxLength raised", prop(maxLength=32), prop(maxLength=64), []),
    (
        "maxLength added",
        prop(type="string"),
        prop(type="string", maxLength=64),
        ["/properties/p/maxLength"],
    ),
    ("maxLength dropped", prop(type="string", maxLength=64), prop(type="string"), []),
    ("maximum lowered", prop(maximum=10), prop(maximum=5), ["/properties/p/maximum"]),
    ("maximum raised", prop(maximum=5), prop(maximum=10), []),
    ("minLength raised", prop(minLength=1), prop(minLength=2), ["/properties/p/minLength"]),
    ("minLength lowered", prop(minLength=2), prop(minLength=1), []),
    ("minimum raised", prop(minimum=0), prop(minimum=1), ["/properties/p/minimum"]),
    ("minimum lowered", prop(minimum=1), prop(minimum=0), []),
    (
        "minItems raised",
        prop(type="array", minItems=1),
        prop(type="array", minItems=2),
        ["/properties/p/minItems"],
    ),
    (
        "pattern changed",
        prop(pattern="^[A-Z]{3}$"),
        prop(pattern="^[A-Z]{2}$"),
        ["/properties/p/pattern"],
    ),
    (
        "pattern added",
        prop(type="string"),
        prop(type="string", pattern="^x"),
        ["/properties/p/pattern"],
    ),
    ("pattern dropped", prop(type="string", pattern="^x"), prop(type="string"), []),
    ("format changed", prop(format="date"), prop(format="date-time"), ["/properties/p/format"]),
    (
        "additional properties forbidden",
        obj({"a": STRING}),
        obj({"a": STRING}, additionalProperties=False),
        ["/additionalProperties"],
    ),
    (
        "additional properties allowed",
        obj({"a": STRING}, additionalProperties=False),
        obj({"a": STRING}, additionalProperties=True),
        [],
    ),
    (
        "additional properties constrained",
        obj({}),
        obj({}, additionalProperties={"type": "integer"}),
        ["/additionalProperties/type"],
    ),
    (
        "array items type changed",
        prop(type="array", items=STRING),
        prop(type="array", items={"type": "integer"}),
        ["/properties/p/items/type"],
    ),
    (
        "$ref: nested constraint tightened",
        money(type="string", pattern="^[A-Z]{3}$"),
        money(type="string", pattern="^(USD|EUR)$"),
        ["/properties/cost/anyOf/0/properties/currency/pattern"],
    ),
    (
        "$ref: nested constraint dropped",
        money(type="string", pattern="^[A-Z]{3}$"),
        money(type="string"),
        [],
    ),
]


@pytest.mark.parametrize(("old", "new", "paths"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_compatibility_rule(old: dict[str, Any], new: dict[str, Any], paths: list[str]) -> None:
    assert [problem.path for problem in check_compatibility(old, new)] == paths


def test_the_reason_says_what_changed() -> None:
    [removed] = check_compatibility(prop(enum=["x", "y"]), prop(enum=["x"]))
    [added] = check_compatibility(prop(enum=["x"]), prop(enum=["x", "y"]))
    [narrowed] = check_compatibility(prop(maxLength=64), prop(maxLength=32))
    assert removed.reason == "values removed: ['y']"
    assert added.reason.startswith("values added: ['y']")
    assert narrowed.reason == "tightened from 64 to 32"
    assert str(narrowed) == "/properties/p/maxLength: tightened from 64 to 32"


def test_refs_are_followed_and_their_names_do_not_matter() -> None:
    def with_status(definition: str, values: list[str]) -> dict[str, Any]:
        status = {"$ref": f"#/$defs/{definition}", "default": "active"}
        return {
            **obj({"status": status}),
            "$defs": {definition: {"type": "string", "enum": values}},
        }

    old = with_status("SupplierStatus", ["active", "on_hold"])
    assert check_compatibility(old, with_status("Status", ["active", "on_hold"])) == []
    problems = check_compatibility(old, with_status("Status", ["active"]))
    assert [p.path for p in problems] == ["/properties/status/enum"]


def test_recursive_schemas_terminate() -> None:
    def tree(max_length: int) -> dict[str, Any]:
        node = obj(
            {
                "name": {"type": "string", "maxLength": max_length},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            }
        )
        return {"$ref": "#/$defs/Node", "$defs": {"Node": node}}

    assert check_compatibility(tree(10), tree(20)) == []
    assert [p.path for p in check_compatibility(tree(10), tree(5))] == [
        "/properties/name/maxLength"
    ]


def test_an_unresolvable_ref_is_a_registry_error() -> None:
    with pytest.raises(UnresolvableReferenceError):
        check_compatibility(obj({"a": {"$ref": "#/$defs/Nowhere"}}), obj({"a": STRING}))


# -- the check catches real model changes against the published schema ---------------------------


def published_movement() -> dict[str, Any]:
    return load_published("inventory.stock_movement")


def test_a_new_required_field_breaks_the_published_movement() -> None:
    class StockMovementWithBatch(StockMovement):
        batch: str

    problems = check_compatibility(published_movement(), generate_one(StockMovementWithBatch))
    assert problems == [Incompatibility("/properties/batch", "new required property")]


def test_a_removed_field_breaks_the_published_movement() -> None:
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in StockMovement.model_fields.items()
        if name != "lot"
    }
    without_lot: type[BaseModel] = create_model("StockMovement", __base__=CanonicalModel, **fields)
    problems = check_compatibility(published_movement(), generate_one(without_lot))
    assert problems == [Incompatibility("/properties/lot", "property removed")]


def test_a_new_optional_field_keeps_the_published_movement() -> None:
    class StockMovementWithNote(StockMovement):
        note: str | None = None

    assert check_compatibility(published_movement(), generate_one(StockMovementWithNote)) == []


def test_a_new_movement_kind_breaks_consumers_of_the_published_movement() -> None:
    class MovementKindWithLoan(StrEnum):
        DISPENSE = "dispense"
        CLINICAL_CONSUMPTION = "clinical_consumption"
        RECEIPT = "receipt"
        TRANSFER = "transfer"
        WASTAGE = "wastage"
        RETURN_TO_SUPPLIER = "return_to_supplier"
        COUNT_ADJUSTMENT = "count_adjustment"
        LOAN = "loan"

    class StockMovementWithLoans(StockMovement):
        kind: MovementKindWithLoan  # type: ignore[assignment]

    problems = check_compatibility(published_movement(), generate_one(StockMovementWithLoans))
    assert [p.path for p in problems] == ["/properties/kind/enum"]
    assert "'loan'" in problems[0].reason


def test_a_tighter_nested_money_breaks_the_published_movement() -> None:
    class DollarsOrEuros(Money):
        currency: Annotated[str, StringConstraints(pattern=r"^(USD|EUR)$")] = "USD"

    class StockMovementInDollarsOrEuros(StockMovement):
        unit_cost: DollarsOrEuros | None = None

    problems = check_compatibility(
        published_movement(), generate_one(StockMovementInDollarsOrEuros)
    )
    assert [p.path for p in problems] == [
        "/properties/unit_cost/anyOf/0/properties/currency/pattern"
    ]


def test_an_integer_quantity_breaks_the_published_movement() -> None:
    class StockMovementInWholeUnits(StockMovement):
        quantity: int  # type: ignore[assignment]

    problems = check_compatibility(published_movement(), generate_one(StockMovementInWholeUnits))
    assert {p.path for p in problems} == {
        "/properties/quantity/anyOf/0",
        "/properties/quantity/anyOf/1",
        "/properties/quantity",
    }
