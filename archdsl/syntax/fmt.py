"""The canonical printer: `fmt(parse(text))` is a fixed point and keeps every comment."""
from __future__ import annotations

from archdsl.syntax import ast as A

INDENT = "  "
MAX_LINE = 96

# Binding strength of each expression form (higher binds tighter).
_PREC = {"chain": 0, "ternary": 1, "or": 2, "and": 3, "not": 4, "cmp": 5, "+": 6, "-": 6,
         "*": 7, "/": 7, "//": 7, "%": 7, "unary": 8, "**": 9, "postfix": 10, "atom": 11}


def fmt(module: A.Module) -> str:
    return _Printer(module.comments).module(module)


def fmt_expr(e: A.Expr) -> str:
    return _expr(e)


def fmt_type(t: A.TypeExpr) -> str:
    return _type(t)


class _Printer:
    def __init__(self, comments: list[A.Comment]):
        self.pending = sorted(comments, key=lambda c: (c.line, c.col))
        self.out: list[str] = []

    def _comments_before(self, line: int, depth: int) -> None:
        """Comments above `line`, keeping one blank line wherever the source had a gap."""
        last = None
        while self.pending and self.pending[0].line < line:
            c = self.pending.pop(0)
            if last is not None and c.line > last + 1:
                self._blank()
            self.out.append(INDENT * depth + c.text)
            last = c.line
        if last is not None and line < 10**9 and line > last + 1:
            self._blank()

    def _blank(self) -> None:
        if self.out and self.out[-1] != "":
            self.out.append("")

    def _trailing(self, line: int) -> str:
        if self.pending and self.pending[0].line == line:
            return "  " + self.pending.pop(0).text
        return ""

    def _emit(self, node: A.Node, text: str, depth: int) -> None:
        self._comments_before(node.span.line, depth)
        lines = text.split("\n")
        trailing = self._trailing(node.span.end_line)
        while self.pending and self.pending[0].line <= node.span.end_line:
            trailing += "  " + self.pending.pop(0).text  # comments inside a multi-line statement
        lines[-1] += trailing
        self.out.extend(INDENT * depth + ln if ln else ln for ln in lines)

    def module(self, m: A.Module) -> str:
        prev = None
        for item in m.items:
            if prev is not None and (isinstance(item, A.BlockDef) or isinstance(prev, A.BlockDef)
                                     or type(item) is not type(prev)):
                self.out.append("")
            self.item(item)
            prev = item
        self._comments_before(10**9, 0)
        return "\n".join(self.out).strip("\n") + "\n"

    def item(self, it) -> None:
        if isinstance(it, A.Import):
            self._emit(it, "import " + ".".join(it.module) + (f" as {it.alias}" if it.alias else ""), 0)
        elif isinstance(it, A.FromImport):
            self._emit(it, f"from {'.'.join(it.module)} import {', '.join(it.names)}", 0)
        elif isinstance(it, A.Let):
            self._emit(it, f"let {it.name} = {_expr(it.value)}", 0)
        elif isinstance(it, A.Variant):
            refs = ", ".join(_str(r) for r in it.references)
            self._emit(it, f"variant {it.name} = {_expr(it.value)}" + (f" reference {refs}" if refs else ""), 0)
        elif isinstance(it, A.Checkpoint):
            self._comments_before(it.span.line, 0)
            self.out.append(f"checkpoint {_str(it.source)} {{" + self._trailing(it.span.line))
            for rule in it.rules:
                self._emit(rule, _key_rule(rule), 1)
            self._comments_before(it.span.end_line, 1)
            self.out.append("}")
        elif isinstance(it, A.BlockDef):
            self._comments_before(it.span.line, 0)
            header = f"{it.kind} {it.name}({', '.join(_param(p) for p in it.params)}) {{"
            if len(header) > MAX_LINE:
                header = f"{it.kind} {it.name}(\n" + "".join(
                    f"{INDENT * 2}{_param(p)},\n" for p in it.params) + ") {"
            self.out.extend(header.split("\n"))
            self.out[-1] += self._trailing(it.span.line)
            self.stmts(it.body, 1)
            self._comments_before(it.span.end_line, 1)
            self.out.append("}")

    def stmts(self, body: list[A.Stmt], depth: int) -> None:
        for s in body:
            self.stmt(s, depth)

    def stmt(self, s: A.Stmt, depth: int) -> None:
        if isinstance(s, A.If):
            for k, (cond, body) in enumerate(s.branches):
                self._comments_before(cond.span.line, depth)
                self.out.append(INDENT * depth + ("if " if k == 0 else "} elif ") + _expr(cond) + " {")
                self.stmts(body, depth + 1)
            if s.orelse:
                self.out.append(INDENT * depth + "} else {")
                self.stmts(s.orelse, depth + 1)
            self._comments_before(s.span.end_line, depth + 1)
            self.out.append(INDENT * depth + "}")
        elif isinstance(s, A.PhaseStmt):
            self._comments_before(s.span.line, depth)
            args = ", ".join((f"{a.name}=" if a.name else "") + _expr(a.value) for a in s.args)
            self.out.append(INDENT * depth + f"phase {s.name}" + (f"({args})" if s.args else "") + " {")
            self.stmts(s.body, depth + 1)
            self._comments_before(s.span.end_line, depth + 1)
            self.out.append(INDENT * depth + "}")
        elif isinstance(s, A.For):
            self._comments_before(s.span.line, depth)
            self.out.append(INDENT * depth + f"for {s.var} in {_expr(s.iter)} {{")
            self.stmts(s.body, depth + 1)
            self._comments_before(s.span.end_line, depth + 1)
            self.out.append(INDENT * depth + "}")
        else:
            self._emit(s, _simple_stmt(s), depth)


def _simple_stmt(s: A.Stmt) -> str:
    if isinstance(s, A.InStmt):
        dtype = f" as {s.dtype}" if s.dtype != "float32" else ""
        return f"in {s.name}: [{', '.join(_dim(d) for d in s.dims)}]{dtype}"
    if isinstance(s, A.OutStmt):
        return "out " + (f"{s.name} = " if s.name else "") + _chain_text(s.value)
    if isinstance(s, A.Assign):
        return f"{s.name} = {_chain_text(s.value)}"
    if isinstance(s, A.Unpack):
        return f"{', '.join(s.names)} = {_chain_text(s.value)}"
    if isinstance(s, A.InitStmt):
        return f"init {_str(s.pattern)} = {_expr(s.value)}"
    if isinstance(s, A.AssertStmt):
        return f"assert {_expr(s.cond)}" + (f", {_expr(s.message)}" if s.message is not None else "")
    if isinstance(s, A.NetStmt):
        return f"net {s.name} = {_expr(s.value)}"
    if isinstance(s, A.StateStmt):
        text = f"state {s.name}: [{', '.join(_expr(d) for d in s.shape)}]"
        text += f" = {_expr(s.init)}" if s.init is not None else ""
        return text + (f" as {s.dtype}" if s.dtype != "float32" else "")
    if isinstance(s, A.LogStmt):
        return f"log {s.name} = {_chain_text(s.value)}"
    if isinstance(s, A.AfterStmt):
        return f"after {_expr(s.call)}"
    if isinstance(s, A.TensorDecl):
        text = f"{s.kind} {s.name}: [{', '.join(_expr(d) for d in s.shape)}]"
        return text + (f" = {_expr(s.init)}" if s.init is not None else "")
    raise TypeError(type(s))


def _chain_text(e: A.Expr) -> str:
    """A chain on one line if it fits, else one stage per line."""
    flat = _expr(e)
    if not isinstance(e, A.Chain) or len(flat) <= MAX_LINE:
        return flat
    parts = [_expr(e.head, _PREC["chain"] + 1)] + [_stage(s) for s in e.stages]
    return parts[0] + "".join(f"\n{INDENT * 2}-> {p}" for p in parts[1:])


def _dim(d: A.Dim) -> str:
    if d.rest:
        return "..."
    if d.name is not None:
        return d.name + (f" = {_expr(d.value)}" if d.value is not None else "")
    if isinstance(d.value, A.Const) and isinstance(d.value.value, int):
        return d.value.text
    return f"({_expr(d.value)})"


def _param(p: A.Param) -> str:
    text = p.name
    if p.type is not None:
        text += ": " + _type(p.type)
    if p.default is not None:
        text += " = " + _expr(p.default)
    return text


def _type(t: A.TypeExpr) -> str:
    if t.choices:
        return " | ".join(_str(c) for c in t.choices) + ("?" if t.optional else "")
    args = f"[{', '.join(_type(a) for a in t.args)}]" if t.args else ""
    return t.name + args + ("?" if t.optional else "")


def _str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(l: A.Label) -> str:
    return _template(l) + ":"


def _template(l: A.Label) -> str:
    return "".join(p if isinstance(p, str) else "{" + _expr(p) + "}" for p in l.parts)


def _key_rule(r: A.KeyRule) -> str:
    text = f"{_str(r.source)} -> " + ("none" if r.target is None else f"\"{_template(r.target)}\"")
    if r.reshape is not None:
        text += " as [" + ", ".join(_expr(e) for e in r.reshape) + "]"
    if r.cond is not None:
        text += " if " + _expr(r.cond)
    return text


def _stage(s: A.Stage) -> str:
    body = _expr(s.value, _PREC["ternary"])
    return f"{_label(s.label)} {body}" if s.label else body


def _prec(e: A.Expr) -> int:
    if isinstance(e, A.Chain):
        return _PREC["chain"]
    if isinstance(e, A.Ternary):
        return _PREC["ternary"]
    if isinstance(e, A.BoolOp):
        return _PREC[e.op]
    if isinstance(e, A.Unary):
        return _PREC["not"] if e.op == "not" else _PREC["unary"]
    if isinstance(e, A.Compare):
        return _PREC["cmp"]
    if isinstance(e, A.BinOp):
        return _PREC[e.op]
    if isinstance(e, (A.Call, A.Index, A.Attr)):
        return _PREC["postfix"]
    if isinstance(e, A.Const) and isinstance(e.value, (int, float)) and e.text.startswith("-"):
        return _PREC["unary"]
    return _PREC["atom"]


def _wrapped(open_: str, items: list[str], close: str) -> str:
    """`open a, b close` when it fits on a line, else one item per line, indented."""
    flat = open_ + ", ".join(items) + close
    if len(flat) <= MAX_LINE and "\n" not in flat:
        return flat
    body = ",\n".join("\n".join(INDENT + ln for ln in item.split("\n")) for item in items)
    return f"{open_}\n{body},\n{close}"


def _expr(e: A.Expr, min_prec: int = 0) -> str:
    text = _expr_raw(e)
    return f"({text})" if _prec(e) < min_prec else text


def _expr_raw(e: A.Expr) -> str:
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Const):
        if isinstance(e.value, str):
            return _str(e.value)
        return e.text
    if isinstance(e, A.TupleLit):
        inner = ", ".join(_expr(x, 1) for x in e.items)
        return f"({inner},)" if len(e.items) == 1 else f"({inner})"
    if isinstance(e, A.ListLit):
        return _wrapped("[", [_stage(s) for s in e.items], "]")
    if isinstance(e, A.ListComp):
        cond = f" if {_expr(e.cond, 1)}" if e.cond is not None else ""
        return f"[{_expr(e.item, 1)} for {e.var} in {_expr(e.iter, 1)}{cond}]"
    if isinstance(e, A.Call):
        args = [(f"{a.name}=" if a.name else "") + _expr(a.value) for a in e.args]
        return _wrapped(f"{_expr(e.func, _PREC['postfix'])}(", args, ")")
    if isinstance(e, A.Index):
        return f"{_expr(e.value, _PREC['postfix'])}[{_expr(e.index, 1)}]"
    if isinstance(e, A.Attr):
        return f"{_expr(e.value, _PREC['postfix'])}.{e.name}"
    if isinstance(e, A.BinOp):
        p = _PREC[e.op]
        if e.op == "**":  # right-associative; the exponent is a unary-level expression
            return f"{_expr(e.left, p + 1)} ** {_expr(e.right, _PREC['unary'])}"
        return f"{_expr(e.left, p)} {e.op} {_expr(e.right, p + 1)}"
    if isinstance(e, A.Compare):
        p = _PREC["cmp"]
        return _expr(e.first, p + 1) + "".join(f" {op} {_expr(x, p + 1)}" for op, x in e.rest)
    if isinstance(e, A.BoolOp):
        p = _PREC[e.op]
        return f" {e.op} ".join(_expr(v, p + 1) for v in e.values)
    if isinstance(e, A.Unary):
        if e.op == "not":
            return "not " + _expr(e.operand, _PREC["not"])
        return e.op + _expr(e.operand, _PREC["unary"])
    if isinstance(e, A.Ternary):
        p = _PREC["ternary"]
        return f"{_expr(e.cond, p + 1)} ? {_expr(e.then, p)} : {_expr(e.orelse, p)}"
    if isinstance(e, A.Chain):
        return " -> ".join([_expr(e.head, 1)] + [_stage(s) for s in e.stages])
    if isinstance(e, A.Repeat):
        names = ", ".join(n for n in (e.index, e.counter) if n)
        body = " -> ".join([_expr(e.body.head, 1)] + [_stage(s) for s in e.body.stages])
        return f"repeat({_expr(e.count, 1)}){' ' + names if names else ''} {{ {body} }}"
    raise TypeError(type(e))
