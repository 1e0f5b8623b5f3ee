"""The lark parser of grammar.lark, built once per process from lark's cached tables, and the
lexer-level helpers the parser, the transformer and the error messages share."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import lark
from lark import Lark, Token, UnexpectedInput

from archdsl.errors import Span
from archdsl.syntax.cache_dir import cache_dir

GRAMMAR = (Path(__file__).parent / "grammar.lark").read_text()
comments: list[Token] = []   # filled by the lexer while parsing; parse() reads and clears it


def _lark_cache() -> str | bool:
    """Lark's analysis of the grammar, cached beside the parse cache (loading it is ~10x faster
    than building the tables, most of a cold start): the file name carries the grammar's and
    lark's hash, so any change builds anew."""
    root = cache_dir()
    if root is None:
        return False
    key = hashlib.sha256(GRAMMAR.encode() + lark.__version__.encode()).hexdigest()[:24]
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
        return Lark(GRAMMAR, parser="lalr", start=["start", "test"], propagate_positions=True,
                    maybe_placeholders=True, lexer_callbacks={"COMMENT": comments.append},
                    cache=_lark_cache())
    finally:
        quiet.setLevel(level)


PARSER = _build_parser()
CLOSERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}


def tokens(text: str):
    """The tokens of `text` up to the first one that does not lex."""
    try:
        yield from PARSER.lex(text)
    except UnexpectedInput:
        return


def meta_span(filename: str, meta) -> Span:
    return Span(filename, meta.line, meta.column, meta.end_line, meta.end_column)


def tok_span(filename: str, tok: Token) -> Span:
    return Span(filename, tok.line, tok.column, tok.end_line, tok.end_column)
