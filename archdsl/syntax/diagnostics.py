"""The messages of syntax errors: what was found, what the parser expected (in words), the bracket
left open, and a hint for the usual slips."""
from __future__ import annotations

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from archdsl.errors import ArchError, Span
from archdsl.syntax.grammar import CLOSERS, PARSER, tok_span, tokens

_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "LABEL": "a label (`name:`)", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "LBRACE": "'{'", "RBRACE": "'}'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='",
    "KIND": "'block' or 'network'", "COMP_OP": "a comparison", "IN_DECL": "'in'",
    "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/', '//' or '%'", "DOT": "'.'", "QMARK": "'?'",
    "$END": "end of file",
}
_ARROW = next(t.name for t in PARSER.terminals if t.pattern.type == "str" and t.pattern.value == "->")
_KEYWORDS = {t.name for t in PARSER.terminals if t.pattern.type == "str" and t.pattern.value.isalpha()}


def syntax_error(e: UnexpectedInput, text: str, filename: str) -> ArchError:
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
        span = tok_span(filename, tok)
        prev = _previous_token(text, tok)
        if prev is not None and prev.type == _ARROW:
            return ArchError("missing a stage after '->'", span,
                             expected="an op, a block, a [sequence] or a repeat after '->'", found=found,
                             notes=[("this '->' has nothing after it", tok_span(filename, prev))],
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
    close = _describe(CLOSERS[opener.type])
    return ArchError(f"unexpected end of file: {_describe(opener.type)} is never closed", span,
                     expected=close, found="end of file",
                     notes=[(f"this {_describe(opener.type)} has no matching {close}",
                             tok_span(filename, opener))],
                     hint=f"add the missing {close}")


def _unclosed(text: str) -> Token | None:
    """The innermost bracket left open at the end of the text, if any."""
    stack: list[Token] = []
    for tok in tokens(text):
        if tok.type in CLOSERS:
            stack.append(tok)
        elif stack and tok.type == CLOSERS[stack[-1].type]:
            stack.pop()
    return stack[-1] if stack else None


def _open_bracket(text: str, tok: Token, expected, filename: str) -> list:
    """A note at the bracket still open where the parser wanted its closer (an unclosed `(` is
    found only at the next line's first token)."""
    opener = _unclosed(text[:tok.start_pos])
    if opener is None or CLOSERS[opener.type] not in expected or opener.line == tok.line:
        return []
    return [(f"this {_describe(opener.type)} is not closed", tok_span(filename, opener))]



def _previous_token(text: str, tok: Token) -> Token | None:
    prev = None
    for t in tokens(text):
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
    pattern = PARSER.get_terminal(terminal).pattern if terminal in PARSER._terminals_dict else None
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

