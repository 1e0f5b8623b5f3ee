"""A disk cache of parsed files: `parse_cached(text, name)` equals `parse(text, name)`.

Parsing is most of a cold `archdsl check stdlib`; unpickling a stored AST is ~30x faster. An
entry is keyed by a hash of the text, the name spans carry, archdsl's version and the sources
that define the AST (grammar, parser, transformer, AST classes), so any change to those misses.
Entries live in $ARCHDSL_CACHE_DIR, else $XDG_CACHE_HOME/archdsl/ast, else ~/.cache/archdsl/ast;
set ARCHDSL_CACHE=off to disable it. The cache is the user's own (like __pycache__): a spec can
neither name nor write an entry. Any failure to read or write it falls back to parsing.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from functools import lru_cache
from pathlib import Path

from archdsl.errors import register_source
from archdsl.syntax.cache_dir import cache_dir
from archdsl.syntax import ast as A
from archdsl.syntax.parser import parse

_HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def _salt() -> bytes:
    from archdsl._version import __version__
    h = hashlib.sha256(__version__.encode())
    for name in ("grammar.lark", "grammar.py", "parser.py", "transform.py", "ast.py"):
        h.update((_HERE / name).read_bytes())
    return h.digest()





def parse_cached(text: str, name: str) -> A.Module:
    root = cache_dir()
    if root is None:
        return parse(text, name)
    key = hashlib.sha256(_salt() + name.encode() + b"\0" + text.encode()).hexdigest()
    entry = root / f"{key}.pickle"
    try:
        ast = pickle.loads(entry.read_bytes())
        if isinstance(ast, A.Module):
            register_source(name, text)  # errors quote the source's lines
            return ast
    except Exception:  # a missing, truncated or foreign entry: parse instead
        pass
    ast = parse(text, name)
    _store(entry, ast)
    return ast


def _store(entry: Path, ast: A.Module) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=entry.parent, delete=False, suffix=".tmp") as f:
            f.write(pickle.dumps(ast, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(f.name, entry)  # atomic: concurrent checkers never read half an entry
    except OSError:
        pass
