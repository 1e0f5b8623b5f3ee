"""A JSON schema of the AST (`archdsl.syntax.ast`), generated from the pydantic models.

Fields typed with a base class (`Expr`, `Stmt`) become unions (`anyOf`) of every concrete
subclass, so the schema describes a whole `Module` as `parse(text).model_dump(mode="json")`
writes it. Every node object lists exactly its fields (`additionalProperties: false`): a node
dump carries no type tag, so the field names are what tells the alternatives apart.

The committed ast.schema.json is `render()`'s text; `python -m archdsl.docs --write` regenerates
it with the other generated files.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from archdsl.syntax import ast as A

SCHEMA_PATH = Path(__file__).with_name("ast.schema.json")
SCHEMA_ID = "https://archdsl.dev/schemas/ast.schema.json"
ABSTRACT = (A.Expr, A.Stmt)


def _subclasses(cls: type) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def concrete(base: type) -> list[type[BaseModel]]:
    """The subclasses of `base` defined in the AST module that have no subclasses themselves."""
    subs = [c for c in _subclasses(base) if c.__module__ == A.__name__]
    return sorted({c for c in subs if not any(issubclass(o, c) and o is not c for o in subs)},
                  key=lambda c: c.__name__)


def ast_schema() -> dict:
    """The JSON schema of a `Module` dump, with `Expr`/`Stmt` as unions of their subclasses."""
    models = [A.Module, A.Comment] + concrete(A.Node)
    _, schema = models_json_schema([(m, "validation") for m in models],
                                   ref_template="#/$defs/{model}")
    defs = schema["$defs"]
    for base in ABSTRACT:
        defs[base.__name__] = {
            "description": f"Any {base.__name__.lower()} node: one of its concrete kinds.",
            "anyOf": [{"$ref": f"#/$defs/{c.__name__}"} for c in concrete(base)],
        }
    abstract = {b.__name__ for b in ABSTRACT}
    for name, d in defs.items():
        if name not in abstract and d.get("type") == "object":
            d["additionalProperties"] = False
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "archdsl AST (Module)",
        "description": "The syntax tree of a .arch file: parse(text).model_dump(mode='json').",
        "$ref": "#/$defs/Module",
        "$defs": dict(sorted(defs.items())),
    }


def dump(module: A.Module) -> dict:
    """`module` as JSON data that the schema describes.

    `serialize_as_any=True` matters: by default pydantic dumps a field by its declared type,
    so an `Expr`-typed field holding a `Call` would lose everything but its `span`.
    """
    return module.model_dump(mode="json", serialize_as_any=True)


def render() -> str:
    return json.dumps(ast_schema(), indent=2, sort_keys=False) + "\n"
