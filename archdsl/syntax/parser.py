"""Text → AST. The only module that knows about lark."""
from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from archdsl.errors import ArchError, Span, register_source
from archdsl.syntax import ast as A
from archdsl.syntax.cache_dir import cache_dir

_GRAMMAR = (Path(__file__).parent / "grammar.lark").read_text()
_comments: list[Token] = []
_lock = threading.Lock()


def _lark_cache() -> str | bool:
    """Lark's analysis of the grammar, cached beside the parse cache (loading it is ~10x faster
    than building the tables, most of a cold start): the file name carries the grammar's and
    lark's hash, so any change builds anew."""
    root = cache_dir()
    if root is None:
        return False
    key = hashlib.sha256(_GRAMMAR.encode() + lark.__version__.encode()).hexdigest()[:24]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return str(root / f"lark-{key}.tables")


def _build_parser() -> Lark:
    quiet = logging.getLogger("lark")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # a cache another process is writing: lark rebuilds, silently
    try:
        return Lark(_GRAMMAR, parser="lalr", start=["start", "test"], propagate_positions=True,
                    maybe_placeholders=True, lexer_callbacks={"COMMENT": _comments.append},
                    cache=_lark_cache())
    finally:
        quiet.setLevel(level)


_parser = _build_parser()

_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "LABEL": "a label (`name:`)", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "LBRACE": "'{'", "RBRACE": "'}'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='",
    "KIND": "'block' or 'network'", "COMP_OP": "a comparison", "IN_DECL": "'in'",
    "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/', '//' or '%'", "DOT": "'.'", "QMARK": "'?'",
    "$END": "end of file",
}
_CLOSERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_ARROW = next(t.name for t in _parser.terminals if t.pattern.type == "str" and t.pattern.value == "->")
_KEYWORDS = {t.name for t in _parser.terminals if t.pattern.type == "str" and t.pattern.value.isalpha()}
MAX_INT_DIGITS = 1000   # integer literals; arithmetic is bounded separately by the elaborator
MAX_NESTING = 200       # brackets and operators nested in one expression
_NESTING_OPS = {"?", "-", "+", "*", "/", "//", "%", "**", ".", "not"}


def parse(text: str, filename: str = "<string>") -> A.Module:
    """Parse a whole .arch file."""
    with _lock:
        register_source(filename, text)
        _check_nesting(text, filename)
        _comments.clear()  # after the scan: lexing it ran the comment callback too
        tree = _run(lambda: _parser.parse(text, start="start"), text, filename)
        comments = [A.Comment(line=t.line, col=t.column, text=str(t).rstrip()) for t in _comments]
        module = _transform(tree, filename)
    return module.model_copy(update={"comments": comments})


def parse_expr(text: str, filename: str = "<expr>") -> A.Expr:
    """Parse one expression (used for `--set k=v` values)."""
    with _lock:
        register_source(filename, text)
        _check_nesting(text, filename)
        tree = _run(lambda: _parser.parse(text, start="test"), text, filename)
        return _transform(tree, filename)


def _run(thunk, text: str, filename: str):
    try:
        return thunk()
    except UnexpectedInput as e:
        raise _syntax_error(e, text, filename) from None
    except RecursionError:
        raise ArchError("expression nested too deeply", Span(filename, 1, 1, 1, 2),
                        hint="split it into named intermediate values") from None


def _check_nesting(text: str, filename: str) -> None:
    """Refuse an expression nested more than MAX_NESTING deep before parsing it: the parser and
    the tree it builds take time quadratic in the depth (20,000 parentheses: 20 s). Brackets
    nest; so do operators, each adding a level to its operand (`- - - x`, `a ? b : c ? …`,
    `1 + 1 + …`) until a ',' or, outside brackets, a new line ends the operand."""
    levels, line = [0], 1
    for tok in _tokens(text):
        if tok.line != line and len(levels) == 1:
            levels[0] = 0
        line = tok.line
        if tok.type in _CLOSERS:
            levels.append(0)
        elif tok.type in _CLOSERS.values() and len(levels) > 1:
            levels.pop()
        elif tok.type == "COMMA":
            levels[-1] = 0
        elif str(tok) in _NESTING_OPS:
            levels[-1] += 1
        if len(levels) + sum(levels) > MAX_NESTING:
            raise ArchError(f"expression nested more than {MAX_NESTING} deep", _tok_span(filename, tok),
                            hint="split it into named intermediate values")


def _transform(tree, filename):
    try:
        return _ToAst(filename).transform(tree)
    except VisitError as e:
        orig = e.orig_exc
        while isinstance(orig, VisitError):  # raised while transforming a label's expression
            orig = orig.orig_exc
        if isinstance(orig, ArchError):
            raise orig from None
        if isinstance(orig, RecursionError):
            raise ArchError("expression nested too deeply", _deepest(tree, filename),
                            hint="split it into named intermediate values") from None
        raise
    except RecursionError:
        raise ArchError("expression nested too deeply", _deepest(tree, filename),
                        hint="split it into named intermediate values") from None


def _deepest(tree, filename: str) -> Span:
    """The most deeply nested node of a parse tree (walked without recursion)."""
    best, where = -1, Span(filename, 1, 1, 1, 2)
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if depth > best and not node.meta.empty:
            best, where = depth, _span(filename, node.meta)
        stack.extend((child, depth + 1) for child in node.children)
    return where


def _tokens(text: str):
    """The tokens of `text` up to the first one that does not lex."""
    try:
        yield from _parser.lex(text)
    except UnexpectedInput:
        return


def _syntax_error(e: UnexpectedInput, text: str, filename: str) -> ArchError:
    line, col = getattr(e, "line", 1), getattr(e, "column", 1)
    if not isinstance(line, int) or line < 1:  # end of input
        line, col = _end_of(text)
    span = Span(filename, line, col, line, col + 1)
    expected = getattr(e, "expected", None) or getattr(e, "allowed", None) or set()
    expected_text = _expected_text(expected)
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "end of file"
        if ch == '"':
            return ArchError("unterminated string", span, expected='a closing \'"\' on the same line',
                             hint='strings are written on one line: "same"')
        return ArchError(f"unexpected character {ch!r}", span, expected=expected_text,
                         hint="archdsl specs use names, numbers, strings, operators and ( ) [ ] { } only")
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            return _unexpected_end(text, filename, expected_text)
        found = repr(str(tok))
        span = _tok_span(filename, tok)
        prev = _previous_token(text, tok)
        if prev is not None and prev.type == _ARROW:
            return ArchError("missing a stage after '->'", span,
                             expected="an op, a block, a [sequence] or a repeat after '->'", found=found,
                             notes=[("this '->' has nothing after it", _tok_span(filename, prev))],
                             hint="write what the tensor flows into: `x -> relu`")
        return ArchError(f"unexpected {found}", span, expected=expected_text, found=found,
                         hint=_hint_for(tok, prev, expected), notes=_open_bracket(text, tok, expected, filename))
    if isinstance(e, UnexpectedEOF):
        return _unexpected_end(text, filename, expected_text)
    return ArchError("syntax error", span)


def _end_of(text: str) -> tuple[int, int]:
    """The position just after the last non-blank character."""
    lines = text.rstrip().splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _unexpected_end(text: str, filename: str, expected_text: str | None) -> ArchError:
    line, col = _end_of(text)
    span = Span(filename, line, col, line, col + 1)
    opener = _unclosed(text)
    if opener is None:
        return ArchError("unexpected end of file", span, expected=expected_text, found="end of file",
                         hint="the text ends in the middle of a statement or expression")
    close = _describe(_CLOSERS[opener.type])
    return ArchError(f"unexpected end of file: {_describe(opener.type)} is never closed", span,
                     expected=close, found="end of file",
                     notes=[(f"this {_describe(opener.type)} has no matching {close}",
                             _tok_span(filename, opener))],
                     hint=f"add the missing {close}")


def _unclosed(text: str) -> Token | None:
    """The innermost bracket left open at the end of the text, if any."""
    stack: list[Token] = []
    for tok in _tokens(text):
        if tok.type in _CLOSERS:
            stack.append(tok)
        elif stack and tok.type == _CLOSERS[stack[-1].type]:
            stack.pop()
    return stack[-1] if stack else None


def _open_bracket(text: str, tok: Token, expected, filename: str) -> list:
    """A note at the bracket still open where the parser wanted its closer (an unclosed `(` is
    found only at the next line's first token)."""
    opener = _unclosed(text[:tok.start_pos])
    if opener is None or _CLOSERS[opener.type] not in expected or opener.line == tok.line:
        return []
    return [(f"this {_describe(opener.type)} is not closed", _tok_span(filename, opener))]


def _previous_token(text: str, tok: Token) -> Token | None:
    prev = None
    for t in _tokens(text):
        if t.start_pos >= tok.start_pos:
            break
        prev = t
    return prev


def _expected_text(expected) -> str | None:
    """What the parser would have accepted: closing brackets and kinds of token first."""
    names = {_TERMINAL_NAMES.get(t, _describe(t)) for t in expected}
    if not names:
        return None

    def order(n: str):
        return (n not in ("'}'", "')'", "']'"), n.startswith("'"), n)

    ranked = sorted(names, key=order)
    return ", ".join(ranked[:10]) + (", …" if len(ranked) > 10 else "")


def _describe(terminal: str) -> str:
    pattern = _parser.get_terminal(terminal).pattern if terminal in _parser._terminals_dict else None
    if pattern is not None and pattern.type == "str":
        return repr(pattern.value)
    return terminal.lower()


def _hint_for(tok: Token, prev: Token | None, expected) -> str | None:
    if tok.type == "DOT" and prev is not None and prev.type in ("IMPORT", "FROM", "DOT"):
        return "a module is a dotted name looked up in the spec's folder and the stdlib " \
               "(`import blocks.se`); relative paths such as `..` are not allowed"
    if "RBRACE" in expected and tok.type == "NAME":
        return "statements are `name = value`, `in`, `out`, `param`, `buffer`, `if` or `for`"
    if str(tok) == ":":
        if "EQUAL" in expected:
            return "assign with `=` (`y = x -> relu`); a label `name:` goes right after `->`"
        return "a label is written `name: op(...)` right after `->`"
    if tok.type in _KEYWORDS and "NAME" in expected:
        return f"'{tok}' is a keyword and cannot be used as a name"
    return None


def _span(filename: str, meta) -> Span:
    return Span(filename, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(filename: str, tok: Token) -> Span:
    return Span(filename, tok.line, tok.column, tok.end_line, tok.end_column)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, filename: str):
        super().__init__()
        self.f = filename

    def _s(self, meta) -> Span:
        return _span(self.f, meta)

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
                            module_span=span, name_spans=[_tok_span(self.f, n) for n in names])

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
            raise ArchError("a checkpoint key template cannot contain escapes", _tok_span(self.f, target))
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
                        dtype_span=_tok_span(self.f, dtype) if dtype is not None else None)

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
                raise ArchError(f"empty or unclosed `{{}}` in {what}", _tok_span(self.f, tok),
                                hint="write an expression inside: `layer{i + 1}`")
            parts.append(self._label_expr(inner, tok, start + open_ + 1, what))
            pos = close + 1
        return A.Label(span=_tok_span(self.f, tok), parts=parts)

    def _label_expr(self, inner: str, tok: Token, offset: int, what: str = "a label") -> A.Expr:
        try:
            tree = _parser.parse(inner, start="test")
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
        return _tok_span(self.f, tok)

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


class _ShiftedAst(_ToAst):
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
