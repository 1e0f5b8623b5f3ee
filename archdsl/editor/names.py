"""The editor support's name lists, generated from the grammar and the registries: KEYWORDS, OPS,
BUILTINS and TOPOLOGY_BUILTINS of pygments_lexer.py, and the keyword and builtin patterns of
editors/textmate/archdsl.tmLanguage.json. `python -m archdsl.docs --write` rewrites both."""
from __future__ import annotations

import json
import re
from pathlib import Path

LEXER = Path(__file__).with_name("pygments_lexer.py")
TEXTMATE = Path(__file__).resolve().parents[2] / "editors" / "textmate" / "archdsl.tmLanguage.json"
GRAMMAR = Path(__file__).resolve().parents[1] / "syntax" / "grammar.lark"

# keyword → TextMate scope (new keywords default to keyword.other)
STORAGE = {"topology", "network", "variant", "buffer", "block", "param", "phase", "state", "let", "net",
           "checkpoint"}
IMPORT = {"import", "from", "as"}
CONTROL = {"repeat", "elif", "else", "for", "if", "assert"}
CONSTANT = {"false", "none", "true"}
LOGICAL = {"and", "not", "or"}


def keywords() -> list[str]:
    """The grammar's reserved words: the block kinds, then the words NAME may not be."""
    text = GRAMMAR.read_text(encoding="utf-8")
    words = re.search(r"^NAME: /\(\?!\(([^)]*)\)\\b\)", text, re.M).group(1).split("|")
    kind = re.search(r"^KIND[.\d]*:(.*)$", text, re.M).group(1)
    return list(dict.fromkeys(re.findall(r'"([a-z]+)"', kind) + words))


def names() -> tuple[list[str], list[str], list[str]]:
    """(ops, builtins, topology builtins and actions), sorted."""
    from archdsl.ops import REGISTRY
    from archdsl.semantics.builtins import BUILTINS
    from archdsl.semantics.topology import TOPOLOGY_BUILTINS
    from archdsl.ir.updates import ACTIONS
    return sorted(REGISTRY), sorted(BUILTINS), sorted(set(TOPOLOGY_BUILTINS) | set(ACTIONS))


def _tuple(items: list[str], quote: str = "'") -> str:
    lines, line = [], "   "
    for item in items:
        word = f" {quote}{item}{quote},"
        if len(line) + len(word) > 96:
            lines.append(line)
            line = "   "
        line += word
    return "(\n" + "\n".join(lines + [line]) + "\n)"


def lexer_source(text: str) -> str:
    """pygments_lexer.py's `text` with its name tuples regenerated."""
    ops, builtins, topo = names()
    for name, items, quote in (("KEYWORDS", keywords(), '"'), ("OPS", ops, "'"),
                               ("BUILTINS", builtins, "'"), ("TOPOLOGY_BUILTINS", topo, "'")):
        text = re.sub(rf"^{name} = \(\n.*?\n\)", lambda m: f"{name} = {_tuple(items, quote)}", text,
                      count=1, flags=re.M | re.S)
    return text


def _alternation(words) -> str:
    return r"(?<![\w.])(?:" + "|".join(sorted(words, key=lambda w: (-len(w), w))) + r")\b"


def textmate_source(text: str) -> str:
    """The TextMate grammar's JSON `text` with its keyword and builtin patterns regenerated."""
    grammar = json.loads(text)
    kws = set(keywords())
    other = kws - STORAGE - IMPORT - CONTROL - CONSTANT - LOGICAL
    scopes = {"storage.type.archdsl": STORAGE & kws, "keyword.control.import.archdsl": IMPORT & kws,
              "keyword.control.archdsl": CONTROL & kws, "keyword.other.archdsl": other,
              "constant.language.archdsl": CONSTANT & kws, "keyword.operator.logical.archdsl": LOGICAL & kws}
    for pattern in grammar["repository"]["keywords"]["patterns"]:
        pattern["match"] = _alternation(scopes[pattern["name"]])
    ops, builtins, topo = names()
    op_rule, builtin_rule = grammar["repository"]["builtins"]["patterns"]
    op_rule["match"] = _alternation(ops)
    builtin_rule["match"] = _alternation(builtins + topo)
    return json.dumps(grammar, indent=2, ensure_ascii=False) + "\n"
