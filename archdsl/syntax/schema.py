"""A JSON schema of the AST (`archdsl.syntax.ast`), generated from the pydantic models.

Fields typed with a base class (`Expr`, `Stmt`) become unions of every concrete subclass, so
the schema describes a whole `Module` as `parse(text).model_dump(mode="json")` writes it. Every
node object lists exactly its fields (`additionalProperties: false`): a node dump carries no type
tag, so the field names are what tells the alternatives apart. A union is written as a chain of
`if`/`then`/`else` on those names rather than a plain `anyOf`: a validator then descends into the
kinds an object's keys allow instead of validating every child under every alternative (which
made checking one stdlib file take over ten seconds); an object no kind's keys allow falls to the
`anyOf` of all kinds at the end of the chain, for the error message.

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
    for d in defs.values():
        if d.get("type") == "object":
            d["additionalProperties"] = False
    for base in ABSTRACT:
        defs[base.__name__] = {
            "description": f"Any {base.__name__.lower()} node: one of its concrete kinds "
                           "(told apart by its field names).",
            **_union([c.__name__ for c in concrete(base)], defs),
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "archdsl AST (Module)",
        "description": "The syntax tree of a .arch file: parse(text).model_dump(mode='json').",
        "$ref": "#/$defs/Module",
        "$defs": dict(sorted(defs.items())),
    }


def _keys_allow(kind: dict) -> dict:
    """The shallow test an object passes when its field names could be `kind`'s."""
    return {"type": "object", "required": kind.get("required", []),
            "propertyNames": {"enum": list(kind["properties"])}}


def _may_share_keys(a: dict, b: dict) -> bool:
    """Whether one set of field names can pass both kinds' shallow tests."""
    return set(a.get("required", [])) | set(b.get("required", [])) <= set(a["properties"]) & set(b["properties"])


def _union(kinds: list[str], defs: dict) -> dict:
    """`kinds` as a chain: if the keys allow kind K, validate as K (or as any kind whose keys
    may be the same, so the chain accepts exactly what `anyOf` would); else try the next."""
    def ref(kind: str) -> dict:
        return {"$ref": f"#/$defs/{kind}"}
    chain: dict = {"anyOf": [ref(k) for k in kinds]}
    for k in reversed(kinds):
        peers = [o for o in kinds if o == k or _may_share_keys(defs[k], defs[o])]
        then = ref(k) if peers == [k] else {"anyOf": [ref(o) for o in peers]}
        chain = {"if": _keys_allow(defs[k]), "then": then, "else": chain}
    return chain


def union_kinds(union: dict) -> list[str]:
    """The kinds a union written by `_union` accepts (the `anyOf` at the end of its chain)."""
    while "if" in union:
        union = union["else"]
    return [r["$ref"].rsplit("/", 1)[1] for r in union["anyOf"]]


def dump(module: A.Module) -> dict:
    """`module` as JSON data that the schema describes.

    `serialize_as_any=True` matters: by default pydantic dumps a field by its declared type,
    so an `Expr`-typed field holding a `Call` would lose everything but its `span`.
    """
    return module.model_dump(mode="json", serialize_as_any=True)


def render() -> str:
    return json.dumps(ast_schema(), indent=2, sort_keys=False) + "\n"
