"""Regenerate the static name lists of the editor support from the registries and the grammar:
archdsl/editor/pygments_lexer.py (KEYWORDS, OPS, BUILTINS, TOPOLOGY_BUILTINS) and
editors/textmate/archdsl.tmLanguage.json (keyword and builtin patterns).

    python tools/sync_editor.py        # rewrite both files in place

tests/test_editor.py fails when they fall behind the code.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEXER = ROOT / "archdsl" / "editor" / "pygments_lexer.py"
TEXTMATE = ROOT / "editors" / "textmate" / "archdsl.tmLanguage.json"
GRAMMAR = ROOT / "archdsl" / "syntax" / "grammar.lark"

# keyword → TextMate scope (new keywords default to keyword.other)
STORAGE = {"topology", "network", "variant", "buffer", "block", "param", "phase", "state", "let", "net",
           "checkpoint"}
IMPORT = {"import", "from", "as"}
CONTROL = {"repeat", "elif", "else", "for", "if", "assert"}
CONSTANT = {"false", "none", "true"}
LOGICAL = {"and", "not", "or"}


def keywords() -> list[str]:
    text = GRAMMAR.read_text(encoding="utf-8")
    words = re.search(r"^NAME: /\(\?!\(([^)]*)\)\\b\)", text, re.M).group(1).split("|")
    kind = re.search(r"^KIND[.\d]*:(.*)$", text, re.M).group(1)
    return list(dict.fromkeys(re.findall(r'"([a-z]+)"', kind) + words))


def names() -> tuple[list[str], list[str], list[str]]:
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


def sync_lexer() -> None:
    text = LEXER.read_text(encoding="utf-8")
    ops, builtins, topo = names()
    for name, items, quote in (("KEYWORDS", keywords(), '"'), ("OPS", ops, "'"),
                               ("BUILTINS", builtins, "'"), ("TOPOLOGY_BUILTINS", topo, "'")):
        text = re.sub(rf"^{name} = \(\n.*?\n\)", lambda m: f"{name} = {_tuple(items, quote)}", text,
                      count=1, flags=re.M | re.S)
    LEXER.write_text(text, encoding="utf-8")


def _alternation(words) -> str:
    return r"(?<![\w.])(?:" + "|".join(sorted(words, key=lambda w: (-len(w), w))) + r")\b"


def sync_textmate() -> None:
    grammar = json.loads(TEXTMATE.read_text(encoding="utf-8"))
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
    TEXTMATE.write_text(json.dumps(grammar, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sync_lexer()
    sync_textmate()
    print("updated", LEXER.relative_to(ROOT), "and", TEXTMATE.relative_to(ROOT))
