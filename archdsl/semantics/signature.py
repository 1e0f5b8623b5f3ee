"""A network's or topology's arguments as a user sees them: type, default, the value a variant
gives, and the docs written as comments in the spec (`archdsl args`)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from archdsl.errors import source_text
from archdsl.semantics.values import BlockRef, Partial, spec_text
from archdsl.syntax import ast as A
from archdsl.syntax.fmt import fmt_expr, fmt_type


@dataclass
class Argument:
    name: str
    type: str | None          # as written (`list[int]`, `"" | "deep"`), None when untyped
    default: str | None       # the default expression as written, None when required
    value: str | None = None  # what the variant passes, None when it keeps the default
    doc: str = ""


@dataclass
class Signature:
    name: str
    kind: str                 # "network", "topology" or "block"
    file: str
    line: int
    variant: str | None
    doc: str
    arguments: list[Argument] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def signature(callee, variant: str | None) -> Signature:
    """`callee`: a variant's value (a Partial) or a network/topology (a BlockRef)."""
    block: BlockRef = callee.callee if isinstance(callee, Partial) else callee
    decl = block.decl
    given = _given(decl, callee) if isinstance(callee, Partial) else {}
    comments = {c.line: c for c in block.module.ast.comments}
    lines = (source_text(decl.span.file) or "").splitlines()
    doc, named = _split_doc(_doc_above(decl.span.line, comments, lines))
    args = [Argument(p.name, fmt_type(p.type) if p.type else None,
                     fmt_expr(p.default) if p.default is not None else None,
                     given.get(p.name), _param_doc(p, decl, comments, lines) or named.get(p.name, ""))
            for p in decl.params]
    return Signature(decl.name, decl.kind, decl.span.file, decl.span.line, variant, doc, args)


def _given(decl: A.BlockDef, call: Partial) -> dict[str, str]:
    names = [p.name for p in decl.params]
    out = {names[i]: spec_text(v) for i, v in enumerate(call.args) if i < len(names)}
    out.update((k, spec_text(v)) for k, v in call.kwargs)
    return out


_NAMED = re.compile(r"((?:`\w+`(?:, | and )?)+): ")


def _split_doc(doc: str) -> tuple[str, dict[str, str]]:
    """A declaration's doc is prose, then "`name`: text" (or "`a`, `b`: text") for parameters."""
    parts = _NAMED.split(doc)
    named: dict[str, str] = {}
    for names, text in zip(parts[1::2], parts[2::2]):
        for name in re.findall(r"`(\w+)`", names):
            named[name] = text.strip()
    return parts[0].strip(), named


def _doc_above(line: int, comments: dict[int, A.Comment], lines: list[str]) -> str:
    """The whole-line comments directly above `line`, joined."""
    out = []
    while line - 1 in comments and _whole_line(comments[line - 1], lines):
        line -= 1
        out.append(_text(comments[line]))
    return " ".join(reversed(out))


def _param_doc(p: A.Param, decl: A.BlockDef, comments: dict[int, A.Comment], lines: list[str]) -> str:
    """A comment at the end of the parameter's line when no other parameter follows it there,
    else whole-line comments right above it inside the parameter list."""
    end = p.span.end_line
    trailing = comments.get(end)
    if trailing is not None and not _whole_line(trailing, lines) and \
            not any(q.span.line == end and q.span.col > p.span.col for q in decl.params):
        return _text(trailing)
    first = min(decl.params, key=lambda q: (q.span.line != p.span.line, q.span.col))
    if p.span.line > decl.span.line and first is p:  # the comment above a line is its first one's
        return _doc_above(p.span.line, {k: c for k, c in comments.items() if k > decl.span.line}, lines)
    return ""


def _whole_line(c: A.Comment, lines: list[str]) -> bool:
    return 0 < c.line <= len(lines) and not lines[c.line - 1][:c.col - 1].strip()


def _text(c: A.Comment) -> str:
    return c.text.lstrip("#").strip()
