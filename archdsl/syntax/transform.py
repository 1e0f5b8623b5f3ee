"""The lark parse tree → the pydantic AST (archdsl.syntax.ast), with a span on every node."""
from __future__ import annotations

from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedInput

from archdsl.errors import ArchError, Span
from archdsl.syntax import ast as A
from archdsl.syntax.grammar import PARSER, meta_span, tok_span

MAX_INT_DIGITS = 1000   # integer literals; arithmetic is bounded separately by the elaborator


@v_args(meta=True)
class ToAst(Transformer):
    def __init__(self, filename: str):
        super().__init__()
        self.f = filename

    def _s(self, meta) -> Span:
        return meta_span(self.f, meta)

    # --- top level
    def start(self, meta, items):
        span = self._s(meta) if not meta.empty else Span(self.f, 1, 1, 1, 1)
        return A.Module(span=span, items=items)

    def dotted(self, meta, names):
        return [str(n) for n in names], self._s(meta)

    def import_stmt(self, meta, c):
        (module, span), alias = c
        return A.Import(span=self._s(meta), module=module, alias=str(alias) if alias else None,
                        module_span=span)

    def from_stmt(self, meta, c):
        (module, span), *names = c
        return A.FromImport(span=self._s(meta), module=module, names=[str(n) for n in names],
                            module_span=span, name_spans=[tok_span(self.f, n) for n in names])

    def block_def(self, meta, c):
        kind, name, params, *body = c
        return A.BlockDef(span=self._s(meta), kind=str(kind), name=str(name), params=params or [],
                          body=body)

    def params(self, meta, c):
        return list(c)

    def param(self, meta, c):
        return A.Param(span=self._s(meta), name=str(c[0]), type=c[1], default=c[2])

    def type_expr(self, meta, c):
        name, *rest = c
        optional = bool(rest and isinstance(rest[-1], Token) and rest[-1].type == "OPTIONAL")
        args = [a for a in rest if isinstance(a, A.TypeExpr)]
        return A.TypeExpr(span=self._s(meta), name=str(name), args=args, optional=optional)

    def choice_type(self, meta, c):
        optional = bool(c and c[-1] is not None and c[-1].type == "OPTIONAL")
        choices = [self._unquote(t) for t in c if t is not None and t.type == "STRING"]
        return A.TypeExpr(span=self._s(meta), name="str", choices=choices, optional=optional)

    def variant_def(self, meta, c):
        return A.Variant(span=self._s(meta), name=str(c[0]), value=c[1], references=c[2] or [])

    def references(self, meta, c):
        return [self._unquote(s) for s in c]

    def checkpoint_def(self, meta, c):
        source, *rules = c
        return A.Checkpoint(span=self._s(meta), source=self._unquote(source), rules=rules)

    def key_rule(self, meta, c):
        source, target, reshape, cond = c
        if target.type == "NONE_TARGET":
            template = None
        elif "\\" in str(target) or '"' in str(target)[1:-1]:
            raise ArchError("a checkpoint key template cannot contain escapes", tok_span(self.f, target))
        else:
            template = self._template(str(target)[1:-1], target, 1, "a key template")
        return A.KeyRule(span=self._s(meta), source=self._unquote(source), target=template,
                         reshape=reshape, cond=cond)

    def key_reshape(self, meta, c):
        return list(c)

    def const_def(self, meta, c):
        return A.Let(span=self._s(meta), name=str(c[0]), value=c[1])

    # --- statements
    def in_stmt(self, meta, c):
        _keyword, name, *dims, dtype = c
        return A.InStmt(span=self._s(meta), name=str(name), dims=[d for d in dims if d is not None],
                        dtype=str(dtype) if dtype is not None else "float32",
                        dtype_span=tok_span(self.f, dtype) if dtype is not None else None)

    def dim_name(self, meta, c):
        return A.Dim(span=self._s(meta), name=str(c[0]), value=c[1])

    def dim_int(self, meta, c):
        return A.Dim(span=self._s(meta), value=self.int_lit(meta, c))

    def dim_rest(self, meta, c):
        return A.Dim(span=self._s(meta), rest=True)

    def dim_expr(self, meta, c):
        return A.Dim(span=self._s(meta), value=c[0])

    def out_stmt(self, meta, c):
        return A.OutStmt(span=self._s(meta), name=str(c[0]) if c[0] else None, value=c[1])

    def assign(self, meta, c):
        return A.Assign(span=self._s(meta), name=str(c[0]), value=c[1])

    def unpack(self, meta, c):
        *names, value = c
        return A.Unpack(span=self._s(meta), names=[str(n) for n in names], value=value)

    def param_stmt(self, meta, c):
        return self._tensor_decl("param", meta, c)

    def buffer_stmt(self, meta, c):
        return self._tensor_decl("buffer", meta, c)

    def _tensor_decl(self, kind, meta, c):
        name, *dims, init = c
        return A.TensorDecl(span=self._s(meta), kind=kind, name=str(name),
                            shape=[d for d in dims if d is not None], init=init)

    def if_stmt(self, meta, c):
        cond, body, *rest = c
        branches = [(cond, body)]
        orelse = []
        for r in rest:
            if isinstance(r, tuple):
                branches.append(r)
            elif r is not None:
                orelse = r
        return A.If(span=self._s(meta), branches=branches, orelse=orelse)

    def elif_clause(self, meta, c):
        return (c[0], c[1])

    def else_clause(self, meta, c):
        return c[0]

    def assert_stmt(self, meta, c):
        return A.AssertStmt(span=self._s(meta), cond=c[0], message=c[1])

    def init_stmt(self, meta, c):
        pattern, value = c
        return A.InitStmt(span=self._s(meta), pattern=self._unquote(pattern), value=value)

    def net_stmt(self, meta, c):
        return A.NetStmt(span=self._s(meta), name=str(c[0]), value=c[1])

    def state_stmt(self, meta, c):
        name, *dims, init, dtype = c
        return A.StateStmt(span=self._s(meta), name=str(name), shape=[d for d in dims if d is not None],
                           init=init, dtype=str(dtype) if dtype is not None else "float32")

    def phase_stmt(self, meta, c):
        name, args, body = c
        return A.PhaseStmt(span=self._s(meta), name=str(name), args=args or [], body=body)

    def log_stmt(self, meta, c):
        return A.LogStmt(span=self._s(meta), name=str(c[0]), value=c[1])

    def after_stmt(self, meta, c):
        return A.AfterStmt(span=self._s(meta), call=c[0])

    def for_stmt(self, meta, c):
        return A.For(span=self._s(meta), var=str(c[0]), iter=c[1], body=c[2])

    def body(self, meta, c):
        return list(c)

    # --- expressions
    def chain(self, meta, c):
        head, *stages = c
        if not stages:
            return head
        return A.Chain(span=self._s(meta), head=head, stages=stages)

    def stage(self, meta, c):
        label, value = c
        return A.Stage(span=self._s(meta), label=self._label(label) if label else None, value=value)

    def _label(self, tok: Token) -> A.Label:
        return self._template(str(tok).rstrip()[:-1].rstrip(), tok, 0, "a label")

    def _template(self, text: str, tok: Token, start: int, what: str) -> A.Label:
        """Text with `{expr}` parts; `start` is the text's column offset inside `tok`."""
        parts: list = []
        pos = 0
        while pos < len(text):
            open_ = text.find("{", pos)
            if open_ < 0:
                parts.append(text[pos:])
                break
            if open_ > pos:
                parts.append(text[pos:open_])
            close = text.find("}", open_)
            inner = text[open_ + 1:close] if close >= 0 else ""
            if not inner.strip():
                raise ArchError(f"empty or unclosed `{{}}` in {what}", tok_span(self.f, tok),
                                hint="write an expression inside: `layer{i + 1}`")
            parts.append(self._label_expr(inner, tok, start + open_ + 1, what))
            pos = close + 1
        return A.Label(span=tok_span(self.f, tok), parts=parts)

    def _label_expr(self, inner: str, tok: Token, offset: int, what: str = "a label") -> A.Expr:
        try:
            tree = PARSER.parse(inner, start="test")
        except UnexpectedInput as e:
            col = tok.column + offset + max(0, getattr(e, "column", 1) - 1)
            raise ArchError(f"bad expression in {what}: {inner!r}",
                            Span(self.f, tok.line, col, tok.line, col + 1)) from None
        shifted = _ShiftedAst(self.f, tok.line, tok.column + offset - 1)
        return shifted.transform(tree)

    def ternary(self, meta, c):
        return A.Ternary(span=self._s(meta), cond=c[0], then=c[1], orelse=c[2])

    def or_(self, meta, c):
        if len(c) == 1:
            return c[0]
        return A.BoolOp(span=self._s(meta), op="or", values=c)

    def and_(self, meta, c):
        if len(c) == 1:
            return c[0]
        return A.BoolOp(span=self._s(meta), op="and", values=c)

    def not_(self, meta, c):
        return A.Unary(span=self._s(meta), op="not", operand=c[0])

    def neg(self, meta, c):
        return A.Unary(span=self._s(meta), op="-", operand=c[0])

    def pos(self, meta, c):
        return A.Unary(span=self._s(meta), op="+", operand=c[0])

    def comp_op(self, meta, c):
        return " ".join(str(t) for t in c)    # "not in" arrives as two tokens

    def compare(self, meta, c):
        if len(c) == 1:
            return c[0]
        rest = [(str(c[i]), c[i + 1]) for i in range(1, len(c), 2)]
        return A.Compare(span=self._s(meta), first=c[0], rest=rest)

    def binop(self, meta, c):
        left = c[0]
        for i in range(1, len(c), 2):
            right = c[i + 1]
            left = A.BinOp(span=Span(self.f, left.span.line, left.span.col, right.span.end_line,
                                     right.span.end_col), op=str(c[i]), left=left, right=right)
        return left

    def power(self, meta, c):
        base, exp = c
        if exp is None:
            return base
        return A.BinOp(span=self._s(meta), op="**", left=base, right=exp)

    def call(self, meta, c):
        return A.Call(span=self._s(meta), func=c[0], args=c[1] or [])

    def args(self, meta, c):
        return list(c)

    def pos_arg(self, meta, c):
        return A.Arg(span=self._s(meta), value=c[0])

    def kw_out_arg(self, meta, c):  # `out` is a keyword, but also the name of an op argument
        return A.Arg(span=self._s(meta), name="out", value=c[0])

    def kw_init_arg(self, meta, c):  # `init` is a keyword, but also an op argument (layer_scale)
        return A.Arg(span=self._s(meta), name="init", value=c[0])

    def kw_arg(self, meta, c):
        return A.Arg(span=self._s(meta), name=str(c[0]), value=c[1])

    def index(self, meta, c):
        return A.Index(span=self._s(meta), value=c[0], index=c[1])

    def attr(self, meta, c):
        return A.Attr(span=self._s(meta), value=c[0], name=str(c[1]))

    def name(self, meta, c):
        return A.Name(span=self._s(meta), id=str(c[0]))

    def _tok(self, tok: Token) -> Span:
        return tok_span(self.f, tok)

    def _const(self, tok: Token, value):
        return A.Const(span=self._tok(tok), value=value, text=str(tok))

    def _unquote(self, tok: Token) -> str:
        return _unquote(str(tok), self._tok(tok))

    def int_lit(self, meta, c):
        digits = str(c[0]).replace("_", "")
        if len(digits) > MAX_INT_DIGITS:  # int() would refuse it, or take long
            where = self._const(c[0], None).span
            raise ArchError(f"integer literal with {len(digits)} digits is too large", where,
                            hint=f"integers in a spec have at most {MAX_INT_DIGITS} digits")
        return self._const(c[0], int(digits))

    def float_lit(self, meta, c):
        return self._const(c[0], float(str(c[0])))

    def str_lit(self, meta, c):
        return self._const(c[0], self._unquote(c[0]))

    def true_lit(self, meta, c):
        return A.Const(span=self._s(meta), value=True, text="true")

    def false_lit(self, meta, c):
        return A.Const(span=self._s(meta), value=False, text="false")

    def none_lit(self, meta, c):
        return A.Const(span=self._s(meta), value=None, text="none")

    def paren(self, meta, c):
        return c[0].model_copy(update={"paren": True})

    def tuple_lit(self, meta, c):
        return A.TupleLit(span=self._s(meta), items=[x for x in c if x is not None])

    def list_lit(self, meta, c):
        return A.ListLit(span=self._s(meta), items=[x for x in c if x is not None])

    def list_comp(self, meta, c):
        return A.ListComp(span=self._s(meta), item=c[0], var=str(c[1]), iter=c[2], cond=c[3])

    def repeat(self, meta, c):
        count, index, counter, body = c
        if not isinstance(body, A.Chain):
            body = A.Chain(span=body.span, head=body, stages=[])
        return A.Repeat(span=self._s(meta), count=count, index=str(index) if index else None,
                        counter=str(counter) if counter else None, body=body)


class _ShiftedAst(ToAst):
    """Transforms an expression parsed out of a label, with spans moved to the label's place."""

    def __init__(self, filename: str, line: int, col_offset: int):
        super().__init__(filename)
        self.line, self.off = line, col_offset

    def _s(self, meta) -> Span:
        return Span(self.f, self.line, meta.column + self.off, self.line, meta.end_column + self.off)

    def _tok(self, tok: Token) -> Span:
        return Span(self.f, self.line, tok.column + self.off, self.line, tok.end_column + self.off)


_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}


def _unquote(text: str, span: Span) -> str:
    r"""A string literal's value. Only the escapes of _ESCAPES exist: any other backslash is an
    error, so "timm\xception" or "C:\Users" never turn silently into other characters."""
    body = text[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        if body[i] != "\\":
            out.append(body[i])
            i += 1
            continue
        ch = body[i + 1]  # the grammar puts a character after every backslash
        if ch not in _ESCAPES:
            col = span.col + 1 + i
            raise ArchError(f"unknown escape '\\{ch}' in a string",
                            Span(span.file, span.line, col, span.line, col + 2),
                            hint='the escapes are \\\\ \\" \\n \\t; write a backslash as \\\\ '
                                 '(or a path with /)')
        out.append(_ESCAPES[ch])
        i += 2
    return "".join(out)
