"""The canonical printer: `fmt(parse(text))` is a fixed point and keeps every comment."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from archdsl.syntax import ast as A

INDENT = "  "
MAX_LINE = 100

# Binding strength of each expression form (higher binds tighter).
_PREC = {"chain": 0, "ternary": 1, "or": 2, "and": 3, "not": 4, "cmp": 5, "+": 6, "-": 6,
         "*": 7, "/": 7, "//": 7, "%": 7, "unary": 8, "**": 9, "postfix": 10, "atom": 11}


def fmt(module: A.Module) -> str:
    return _Printer(module.comments).module(module)


def reformat_file(path: str, write: bool) -> bool:
    """Whether the file at `path` is not in the canonical layout; rewritten in place if `write`.
    Never writes text that does not parse back."""
    from pathlib import Path

    from archdsl.syntax.parser import parse
    text = Path(path).read_text(encoding="utf-8")
    new = fmt(parse(text, str(path)))
    parse(new, str(path))
    if new == text:
        return False
    if write:
        Path(path).write_text(new, encoding="utf-8")
    return True


def arch_files(items, on_empty) -> Iterator[str]:
    """Each item, a folder standing for every .arch file under it (`on_empty(folder)` if none)."""
    from pathlib import Path
    for item in items:
        if item != "-" and Path(item).is_dir():
            found = sorted(Path(item).rglob("*.arch"))
            if not found:
                on_empty(item)
            yield from (str(p) for p in found)
        else:
            yield item


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
        # comments inside a statement written over several lines go above it (its lines move)
        while self.pending and self.pending[0].line < node.span.end_line:
            self.out.append(INDENT * depth + self.pending.pop(0).text)
        lines = text.split("\n")
        lines[-1] += self._trailing(node.span.end_line)
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
            self._emit(it, _after(f"let {it.name} = ", it.value, _room(0)), 0)
        elif isinstance(it, A.Variant):
            text = _after(f"variant {it.name} = ", it.value, _room(0))
            if it.references:
                refs = "reference " + ", ".join(_str(r) for r in it.references)
                text += " " + refs if _room(0).fits(f"{text} {refs}") else f"\n{INDENT}{refs}"
            self._emit(it, text, 0)
        elif isinstance(it, A.Checkpoint):
            self._comments_before(it.span.line, 0)
            self.out.append(f"checkpoint {_str(it.source)} {{" + self._trailing(it.span.line))
            for rule in it.rules:
                self._emit(rule, _key_rule(rule), 1)
            self._comments_before(it.span.end_line, 1)
            self.out.append("}")
        elif isinstance(it, A.BlockDef):
            self._comments_before(it.span.line, 0)
            header = _listed(f"{it.kind} {it.name}(", it.params, ") {", _room(0),
                             lambda p, r: _param(p))
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
                head = "if " if k == 0 else "} elif "
                self.out.extend(_indent(_after(head, cond, _room(depth)) + " {", depth))
                self.out[-1] += self._trailing(cond.span.end_line)
                self.stmts(body, depth + 1)
            if s.orelse:
                self.out.append(INDENT * depth + "} else {")
                self.stmts(s.orelse, depth + 1)
            self._comments_before(s.span.end_line, depth + 1)
            self.out.append(INDENT * depth + "}")
        elif isinstance(s, A.PhaseStmt):
            self._comments_before(s.span.line, depth)
            head = (_listed(f"phase {s.name}(", s.args, ") {", _room(depth), _arg) if s.args
                    else f"phase {s.name} {{")
            self.out.extend(_indent(head, depth))
            self.stmts(s.body, depth + 1)
            self._comments_before(s.span.end_line, depth + 1)
            self.out.append(INDENT * depth + "}")
        elif isinstance(s, A.For):
            self._comments_before(s.span.line, depth)
            self.out.extend(_indent(_after(f"for {s.var} in ", s.iter, _room(depth)) + " {", depth))
            self.out[-1] += self._trailing(s.iter.span.end_line)
            self.stmts(s.body, depth + 1)
            self._comments_before(s.span.end_line, depth + 1)
            self.out.append(INDENT * depth + "}")
        else:
            self._emit(s, _simple_stmt(s, _room(depth)), depth)


def _room(depth: int) -> Room:
    """A statement at nesting `depth`: what is left of the line after its indentation."""
    return Room(limit=MAX_LINE - len(INDENT) * depth)


def _indent(text: str, depth: int) -> list[str]:
    return [INDENT * depth + ln if ln else ln for ln in text.split("\n")]


def _after(prefix: str, e: A.Expr, room: Room) -> str:
    """`prefix` then `e`, broken over lines where it does not fit."""
    return prefix + _expr(e, 0, room.after(prefix))


def _shape(prefix: str, dims: list[A.Expr], room: Room, init: A.Expr | None = None) -> str:
    """`param name: [dims] = init`: the dims one per line when the line is too long."""
    then = "" if init is None else " = " + _flat(init)
    text = prefix + _wrapped("[", dims, "]", room.after(prefix), lambda d, r: _expr(d, 0, r), then, "")
    return text if init is None else _after(text + " = ", init, room)


def _simple_stmt(s: A.Stmt, room: Room) -> str:
    if isinstance(s, A.InStmt):
        dtype = f" as {s.dtype}" if s.dtype != "float32" else ""
        return f"in {s.name}: [{', '.join(_dim(d) for d in s.dims)}]{dtype}"
    if isinstance(s, A.OutStmt):
        return _after("out " + (f"{s.name} = " if s.name else ""), s.value, room)
    if isinstance(s, A.Assign):
        return _after(f"{s.name} = ", s.value, room)
    if isinstance(s, A.Unpack):
        return _after(f"{', '.join(s.names)} = ", s.value, room)
    if isinstance(s, A.InitStmt):
        return _after(f"init {_str(s.pattern)} = ", s.value, room)
    if isinstance(s, A.AssertStmt):
        text = _after("assert ", s.cond, room)
        if s.message is None:
            return text
        if room.after(text + ", ").fits(_flat(s.message)):
            return text + ", " + _flat(s.message)
        return text + "," + room.newline(CONT) + _expr(s.message, 0, room.below(CONT))
    if isinstance(s, A.NetStmt):
        return _after(f"net {s.name} = ", s.value, room)
    if isinstance(s, A.StateStmt):
        text = _shape(f"state {s.name}: ", s.shape, room, s.init)
        return text + (f" as {s.dtype}" if s.dtype != "float32" else "")
    if isinstance(s, A.LogStmt):
        return _after(f"log {s.name} = ", s.value, room)
    if isinstance(s, A.AfterStmt):
        return _after("after ", s.call, room)
    if isinstance(s, A.TensorDecl):
        return _shape(f"{s.kind} {s.name}: ", s.shape, room, s.init)
    raise TypeError(type(s))


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
    """`"source" -> "target" as [...] if cond`; the target on its own line when too long."""
    target = "none" if r.target is None else f"\"{_template(r.target)}\""
    sep = " -> " if len(_str(r.source) + target) + 6 <= MAX_LINE - len(INDENT) else f"\n{' ' * CONT}-> "
    text = _str(r.source) + sep + target
    if r.reshape is not None:
        text += " as [" + ", ".join(_expr(e) for e in r.reshape) + "]"
    if r.cond is not None:
        text += " if " + _expr(r.cond)
    return text


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


@dataclass(frozen=True)
class Room:
    """Where text goes: it starts at column `col` of a line indented by `ind`, and no line may
    pass column `limit` (all three relative to the statement's own indentation). Lines after
    the first carry their indentation."""
    col: int = 0
    ind: int = 0
    limit: int = 10**9

    def fits(self, text: str) -> bool:
        first, *rest = text.split("\n")
        return self.col + len(first) <= self.limit and all(len(ln) <= self.limit for ln in rest)

    def after(self, text: str) -> "Room":
        """Right after `text` on the same line (after its last line, if it has several)."""
        if "\n" in text:
            return Room(len(text.rsplit("\n", 1)[1]), self.ind, self.limit)
        return Room(self.col + len(text), self.ind, self.limit)

    def below(self, extra: int) -> "Room":
        """On a new line, `extra` columns further in."""
        return Room(self.ind + extra, self.ind + extra, self.limit)

    def newline(self, extra: int) -> str:
        return "\n" + " " * (self.ind + extra)


FLAT = Room()
CONT = 4   # continuation lines (chain stages, operators) sit this much further in


def _wrapped(open_: str, items: list, close: str, room: Room, item=None, then: str = "",
             comma: str = ",") -> str:
    """`open a, b close` when it fits (with `then`, what follows it on the line), else one item
    per line, indented, each followed by `comma` (shapes take no trailing comma). `item(x,
    room)` prints one item."""
    item = item or (lambda x, r: x)
    flat = open_ + ", ".join(item(x, FLAT) for x in items) + close
    if room.fits(flat + then) or not items:
        return flat
    inner = room.below(len(INDENT))
    inner = Room(inner.col, inner.ind, inner.limit - 1)   # room for the comma after each item
    body = ",".join(inner.newline(0) + item(x, inner) for x in items)
    return f"{open_}{body}{comma}{room.newline(0)}{close}"


def _fill(first: str, pieces: list, room: Room, align: int, glued: bool = True,
          nest: bool = False) -> str | None:
    """`first` then each piece (`piece(room) -> str`) one space apart (the first right after
    `first` when `glued`) while they fit, else on a new line at column `align` (the project's
    hanging layout). A piece that needs several lines anyway starts on the current line when
    that adds no more lines than starting a new one (`-> blocks: repeat(n) {`). None when some
    line stays too long. With `nest`, what a piece breaks onto more lines is indented from
    `align` (an argument list), else from the statement (a chain's `repeat` body)."""
    text = first
    for k, piece in enumerate(pieces):
        stuck = k == 0 and glued
        gap = "" if stuck else " "
        here_room, fresh = room.after(text + gap), Room(align, align, room.limit)
        if nest:
            here_room = Room(here_room.col, align, room.limit)
        here = piece(here_room)
        if not stuck:
            there = piece(fresh)
            worse = "\n" in here and ("\n" not in there or here.count("\n") > there.count("\n") + 1)
            if fresh.fits(there) and (worse or not here_room.fits(here)):
                text += "\n" + " " * align + there
                continue
        if not here_room.fits(here):
            return None
        text += gap + here
    return text


def _listed(open_: str, items: list, close: str, room: Room, item) -> str:
    """A call's arguments or a list's items: hanging after `open_`, else one per line."""
    pieces = [lambda r, x=x, end=("," if k < len(items) - 1 else close):
              item(x, Room(r.col, r.ind, r.limit - len(end))) + end for k, x in enumerate(items)]
    hanging = _fill(open_, pieces, room, room.after(open_).col, nest=True) if items else open_ + close
    return hanging if hanging is not None else _wrapped(open_, items, close, room, item)


def _expr(e: A.Expr, min_prec: int = 0, room: Room = FLAT) -> str:
    if e.paren or _prec(e) < min_prec:
        return "(" + _expr_raw(e, room.after("(")) + ")"
    return _expr_raw(e, room)


def _expr_raw(e: A.Expr, room: Room) -> str:
    flat = _flat(e)
    if room.fits(flat):
        return flat
    return _broken(e, room) or flat


def _flat(e: A.Expr) -> str:
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Const):
        return _str(e.value) if isinstance(e.value, str) else e.text
    if isinstance(e, A.TupleLit):
        inner = ", ".join(_expr(x, 1) for x in e.items)
        return f"({inner},)" if len(e.items) == 1 else f"({inner})"
    if isinstance(e, A.ListLit):
        return "[" + ", ".join(_stage(x) for x in e.items) + "]"
    if isinstance(e, A.ListComp):
        cond = f" if {_expr(e.cond, 1)}" if e.cond is not None else ""
        return f"[{_expr(e.item, 1)} for {e.var} in {_expr(e.iter, 1)}{cond}]"
    if isinstance(e, A.Call):
        return f"{_expr(e.func, _PREC['postfix'])}(" + ", ".join(_arg(a) for a in e.args) + ")"
    if isinstance(e, A.Index):
        return f"{_expr(e.value, _PREC['postfix'])}[{_expr(e.index, 1)}]"
    if isinstance(e, A.Attr):
        return f"{_expr(e.value, _PREC['postfix'])}.{e.name}"
    if isinstance(e, A.BinOp) and e.op == "**":  # right-associative; the exponent is unary-level
        return f"{_expr(e.left, _PREC['**'] + 1)} ** {_expr(e.right, _PREC['unary'])}"
    if isinstance(e, (A.BinOp, A.BoolOp)):
        first, rest = _operands(e)
        return first + "".join(f" {op} {x}" for op, x in rest)
    if isinstance(e, A.Compare):
        p = _PREC["cmp"]
        return _expr(e.first, p + 1) + "".join(f" {op} {_expr(x, p + 1)}" for op, x in e.rest)
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
        return f"{_repeat_head(e)} {{ {_flat(e.body)} }}"
    raise TypeError(type(e))


def _operands(e, room: Room = FLAT, cont: Room = FLAT) -> tuple[str, list[tuple[str, str]]]:
    """A left-associative run of one operator (`a + b - c`, `x and y and z`): the first operand,
    printed in `room`, and (operator, operand) pairs, printed on lines of `cont`."""
    p = _PREC[e.op]
    if isinstance(e, A.BoolOp):
        head, pairs = e.values[0], [(e.op, v) for v in e.values[1:]]
    else:
        pairs = [(e.op, e.right)]
        e = e.left
        while isinstance(e, A.BinOp) and e.op != "**" and _PREC[e.op] == p and not e.paren:
            pairs.insert(0, (e.op, e.right))
            e = e.left
        head = e
    first = _expr(head, p, room)
    return first, [(op, _expr(x, p + 1, cont.after(op + " "))) for op, x in pairs]


def _broken(e: A.Expr, room: Room) -> str | None:
    """`e` over several lines, broken at its outermost construct; None when it has no break."""
    if isinstance(e, A.Call):
        return _listed(_expr(e.func, _PREC["postfix"], room) + "(", e.args, ")", room, _arg)
    if isinstance(e, A.ListLit):
        return _listed("[", e.items, "]", room, _stage)
    if isinstance(e, A.TupleLit) and len(e.items) > 1:
        return _listed("(", e.items, ")", room, lambda x, r: _expr(x, 1, r))
    under = Room(room.col, room.col, room.limit)     # continuation lines under the first
    if isinstance(e, (A.BinOp, A.BoolOp)) and e.op != "**":
        first, rest = _operands(e, room, under)
        return first + "".join(f"{under.newline(0)}{op} {x}" for op, x in rest)
    if isinstance(e, A.Ternary):
        p = _PREC["ternary"]
        return (_expr(e.cond, p + 1, room) + under.newline(0) + "? " + _expr(e.then, p, under.after("? "))
                + under.newline(0) + ": " + _expr(e.orelse, p, under.after(": ")))
    if isinstance(e, A.ListComp):
        inside = room.after("[")
        clauses = [lambda r: f"for {e.var} in " + _expr(e.iter, 1, r.after(f"for {e.var} in "))]
        if e.cond is not None:
            clauses.append(lambda r: "if " + _expr(e.cond, 1, r.after("if ")))
        last = clauses[-1]
        clauses[-1] = lambda r: last(Room(r.col, r.ind, r.limit - 1)) + "]"
        return _fill("[" + _expr(e.item, 1, Room(inside.col, inside.col, room.limit)), clauses,
                     room, inside.col, glued=False)
    if isinstance(e, A.Chain):
        head = _expr(e.head, 1, room)
        pieces = [lambda r, s=s: "-> " + _stage(s, r.after("-> ")) for s in e.stages]
        filled = _fill(head, pieces, room, room.after(head).col + 1, glued=False)
        if filled is not None:
            return filled
        cont = room.below(CONT)
        return head + "".join(cont.newline(0) + "-> " + _stage(s, cont.after("-> ")) for s in e.stages)
    if isinstance(e, A.Repeat):
        inner = room.below(len(INDENT))
        return (f"{_repeat_head(e)} {{" + inner.newline(0) + _expr_raw(e.body, inner)
                + room.newline(0) + "}")
    return None


def _repeat_head(e: A.Repeat) -> str:
    names = ", ".join(n for n in (e.index, e.counter) if n)
    return f"repeat({_expr(e.count, 1)}){' ' + names if names else ''}"


def _arg(a: A.Arg, room: Room = FLAT) -> str:
    name = f"{a.name}=" if a.name else ""
    return name + _expr(a.value, 0, room.after(name))


def _stage(s: A.Stage, room: Room = FLAT) -> str:
    label = f"{_label(s.label)} " if s.label else ""
    return label + _expr(s.value, _PREC["ternary"], room.after(label))
