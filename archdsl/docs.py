"""Everything generated from the code, so nothing checked in can drift from it: the README's
reference tables (ops, builtins, the catalog), the editor support's name lists
(archdsl/editor/names.py) and the AST's JSON schema (archdsl/syntax/schema.py).

    python -m archdsl.docs            # print the README's generated sections
    python -m archdsl.docs --write    # regenerate all of them in place (README between its markers)
    python -m archdsl.docs --check    # exit 1 if any is out of date, naming it

tests/test_cli.py checks the README, tests/test_editor.py the editor files and the schema.
"""
from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path
from typing import Callable

README = Path(__file__).resolve().parent.parent / "README.md"

_BEGIN = "<!-- BEGIN GENERATED: {name} (python -m archdsl.docs --write) -->"
_END = "<!-- END GENERATED: {name} -->"


def op_table() -> str:
    """Markdown: one row per op in the registry (name, aliases, attributes, inputs, doc)."""
    from archdsl.ops import REGISTRY
    seen: dict[int, list[str]] = {}
    ops = {}
    for key, op in REGISTRY.items():
        seen.setdefault(id(op), []).append(key)
        ops[id(op)] = op
    rows = ["| op | attributes (positional first) | inputs | what it does: shape rule, costs |",
            "|---|---|---|---|"]
    for ident, names in sorted(seen.items(), key=lambda kv: ops[kv[0]].name):
        op = ops[ident]
        name = f"`{op.name}`" + "".join(f" / `{a}`" for a in names if a != op.name)
        inputs = "1 or more" if op.n_inputs is None else str(op.n_inputs)
        rows.append(f"| {name} | {_attrs(op)} | {inputs} | {_cell(op.doc or type(op).__doc__ or '')} |")
    return "\n".join(rows) + "\n"


def builtins_list() -> str:
    """Markdown: the builtin functions a spec may call."""
    from archdsl.semantics.builtins import BUILTINS
    return ", ".join(f"`{name}`" for name in sorted(BUILTINS)) + "\n"


def catalog_tables() -> str:
    """Markdown: every stdlib family — its variants with their params and MACs (computed from the
    specs), and how each is proven (the reference it matches, or the paper's table) — then the
    training topologies."""
    from archdsl.api import catalog, check_tree
    facts = {(r.file, r.variant): r for r in check_tree(jobs=1)}
    nets = ["| spec | paper | variants: params / MACs at the default input | proven by |",
            "|---|---|---|---|"]
    topologies = ["| spec | paper | topology: variants |", "|---|---|---|"]
    for e in catalog():
        if e.kind == "topology":
            topologies.append(f"| `{e.file}` | {_cell(e.paper)} | {e.name}: "
                              f"{', '.join(f'`{v.name}`' for v in e.variants)} |")
            continue
        cells = []
        for v in e.variants:
            r = facts.get((e.file, v.name))
            cost = "error" if r is None or r.error else f"{_si(r.params)} / {_si(r.macs)}"
            cells.append(f"`{v.name}` {cost}")
        refs = sorted({ref.split("/")[0] for v in e.variants for ref in v.references})
        unreferenced = sum(not v.references for v in e.variants)
        proof = ", ".join(f"{lib} reference" for lib in refs)
        if unreferenced:
            proof += (", " if proof else "") + f"paper figures ({unreferenced})"
        nets.append(f"| `{e.file}` | {_cell(e.paper)} | {'<br>'.join(cells)} | {proof} |")
    return "\n".join(nets) + "\n\n" + "\n".join(topologies) + "\n"


def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


SECTIONS = {"ops": op_table, "builtins": builtins_list, "catalog": catalog_tables}


def _attrs(op) -> str:
    fields = op.Attrs.model_fields
    order = [n for n in op.positional if n in fields] + [n for n in fields if n not in op.positional]
    parts = []
    for n in order:
        f = fields[n]
        text = f"`{n}`: {_type(f.annotation)}"
        if not f.is_required():
            text += f" = `{_value(f.default)}`"
        parts.append(text)
    if not parts:
        return "–"
    k = len([n for n in op.positional if n in fields])
    if 0 < k < len(parts):
        return ", ".join(parts[:k]) + "; keyword: " + ", ".join(parts[k:])
    if k == 0:
        return "keyword: " + ", ".join(parts)
    return ", ".join(parts)


def _type(t) -> str:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Literal:
        return " or ".join(_value(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        opts = [a for a in args if a is not type(None)]
        text = " or ".join(_type(a) for a in opts)
        return text + (" or none" if len(opts) < len(args) else "")
    if origin in (tuple, list):
        if origin is tuple and len(args) == 2 and args[0] == args[1] == int:
            return "(int, int)"
        inner = ", ".join(_type(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    return getattr(t, "__name__", str(t))


def _value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


def _cell(doc: str) -> str:
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", doc.strip())]
    return "<br>".join(p for p in paragraphs if p).replace("|", "\\|")


def render(name: str) -> str:
    return SECTIONS[name]()


def extract(text: str, name: str) -> str | None:
    """The generated section `name` as it stands in `text` (None when the markers are missing)."""
    begin, end = _BEGIN.format(name=name), _END.format(name=name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return None
    return text[i + len(begin):j].strip("\n") + "\n"


def update(text: str) -> str:
    """`text` with every generated section replaced by what the code says now."""
    for name, fn in SECTIONS.items():
        begin, end = _BEGIN.format(name=name), _END.format(name=name)
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            raise ValueError(f"README has no '{begin}' … '{end}' markers")
        text = text[:i + len(begin)] + "\n" + fn() + text[j:]
    return text


def _targets() -> list[tuple[Path, Callable[[str], str]]]:
    """Each generated file with the function that regenerates it from its current text."""
    from archdsl.editor import names
    from archdsl.syntax import schema
    return [(README, update), (names.LEXER, names.lexer_source), (names.TEXTMATE, names.textmate_source),
            (schema.SCHEMA_PATH, lambda text: schema.render())]


def stale() -> list[tuple[Path, str]]:
    """(file, what it should hold) for every generated file that is out of date."""
    out = []
    for path, regenerate in _targets():
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = regenerate(old)
        if new != old:
            out.append((path, new))
    return out


def main(argv: list[str]) -> int:
    if "--check" in argv or "--write" in argv:
        out_of_date = stale()
        for path, new in out_of_date:
            if "--check" in argv:
                print(f"{path} is out of date: run `python -m archdsl.docs --write`", file=sys.stderr)
            else:
                path.write_text(new, encoding="utf-8")
                print(f"updated {path}")
        return 1 if out_of_date and "--check" in argv else 0
    for name in SECTIONS:
        print(f"## {name}\n\n{render(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
