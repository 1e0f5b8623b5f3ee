"""Text → AST: `parse` a file, `parse_expr` one expression. The lark parser is in grammar.py, the
transformer in transform.py, the syntax error messages in diagnostics.py."""
from __future__ import annotations

import threading

from lark import Tree
from lark.exceptions import UnexpectedInput, VisitError

from archdsl.errors import ArchError, Span, register_source
from archdsl.syntax import ast as A
from archdsl.syntax.diagnostics import syntax_error
from archdsl.syntax.grammar import CLOSERS, PARSER, comments, meta_span, tok_span, tokens
from archdsl.syntax.transform import ToAst

_lock = threading.Lock()
MAX_NESTING = 200       # brackets and operators nested in one expression
_NESTING_OPS = {"?", "-", "+", "*", "/", "//", "%", "**", ".", "not"}


def parse(text: str, filename: str = "<string>") -> A.Module:
    """Parse a whole .arch file."""
    with _lock:
        register_source(filename, text)
        _check_nesting(text, filename)
        comments.clear()  # after the scan: lexing it ran the comment callback too
        tree = _run(lambda: PARSER.parse(text, start="start"), text, filename)
        found = [A.Comment(line=t.line, col=t.column, text=str(t).rstrip()) for t in comments]
        module = _transform(tree, filename)
    return module.model_copy(update={"comments": found})


def parse_expr(text: str, filename: str = "<expr>") -> A.Expr:
    """Parse one expression (used for `--set k=v` values)."""
    with _lock:
        register_source(filename, text)
        _check_nesting(text, filename)
        tree = _run(lambda: PARSER.parse(text, start="test"), text, filename)
        return _transform(tree, filename)


def _run(thunk, text: str, filename: str):
    try:
        return thunk()
    except UnexpectedInput as e:
        raise syntax_error(e, text, filename) from None
    except RecursionError:
        raise ArchError("expression nested too deeply", Span(filename, 1, 1, 1, 2),
                        hint="split it into named intermediate values") from None


def _check_nesting(text: str, filename: str) -> None:
    """Refuse an expression nested more than MAX_NESTING deep before parsing it: the parser and
    the tree it builds take time quadratic in the depth (20,000 parentheses: 20 s). Brackets
    nest; so do operators, each adding a level to its operand (`- - - x`, `a ? b : c ? …`,
    `1 + 1 + …`) until a ',' or, outside brackets, a new line ends the operand."""
    levels, line = [0], 1
    for tok in tokens(text):
        if tok.line != line and len(levels) == 1:
            levels[0] = 0
        line = tok.line
        if tok.type in CLOSERS:
            levels.append(0)
        elif tok.type in CLOSERS.values() and len(levels) > 1:
            levels.pop()
        elif tok.type == "COMMA":
            levels[-1] = 0
        elif str(tok) in _NESTING_OPS:
            levels[-1] += 1
        if len(levels) + sum(levels) > MAX_NESTING:
            raise ArchError(f"expression nested more than {MAX_NESTING} deep", tok_span(filename, tok),
                            hint="split it into named intermediate values")


def _transform(tree, filename):
    try:
        return ToAst(filename).transform(tree)
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
            best, where = depth, meta_span(filename, node.meta)
        stack.extend((child, depth + 1) for child in node.children)
    return where


