"""Editor support: the Pygments lexer, the TextMate grammar and the AST's JSON schema."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pygments = pytest.importorskip("pygments")
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String  # noqa: E402

from archdsl.editor import names  # noqa: E402
from archdsl.editor.pygments_lexer import (BUILTINS, KEYWORDS, OPS, TOPOLOGY_BUILTINS,  # noqa: E402
                                           ArchLexer)
from archdsl.syntax import parse  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "stdlib").rglob("*.arch")) + sorted((ROOT / "specs").rglob("*.arch"))
TEXTMATE = ROOT / "editors" / "textmate" / "archdsl.tmLanguage.json"
GRAMMAR = ROOT / "archdsl" / "syntax" / "grammar.lark"


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def grammar_keywords() -> set[str]:
    """The keywords of grammar.lark: NAME's exclusion list, the KIND words and every
    alphabetic string literal of the rules."""
    text = GRAMMAR.read_text(encoding="utf-8")
    m = re.search(r"^NAME: /\(\?!\(([^)]*)\)\\b\)", text, re.M)
    assert m, "grammar.lark's NAME no longer has the keyword exclusion this test reads"
    words = set(m.group(1).split("|"))
    kind = re.search(r"^KIND[.\d]*:(.*)$", text, re.M)
    words |= set(re.findall(r'"([a-z]+)"', kind.group(1)))
    rules = "\n".join(line.split("//")[0] for line in text.splitlines())
    words |= set(re.findall(r'"([a-z]+)"', rules))
    return words


def _labels(data, out: list) -> list:
    """(line, col) of every stage label in an AST dump."""
    if isinstance(data, dict):
        if data.get("label"):
            span = data["label"]["span"]
            out.append((span["line"], span["col"]))
        for v in data.values():
            _labels(v, out)
    elif isinstance(data, list):
        for v in data:
            _labels(v, out)
    return out


# ---- the Pygments lexer ------------------------------------------------------------------------

def test_keyword_list_is_the_grammars():
    assert set(KEYWORDS) == grammar_keywords()


def test_builtin_lists_match_the_registries():
    from archdsl.ops import REGISTRY
    from archdsl.semantics.builtins import BUILTINS as REAL_BUILTINS
    from archdsl.semantics.topology import TOPOLOGY_BUILTINS as REAL_TOPOLOGY
    from archdsl.ir.updates import ACTIONS
    assert set(OPS) == set(REGISTRY), "regenerate OPS in archdsl/editor/pygments_lexer.py"
    assert set(BUILTINS) == set(REAL_BUILTINS)
    assert set(TOPOLOGY_BUILTINS) == set(REAL_TOPOLOGY) | set(ACTIONS)


@pytest.mark.parametrize("path, regenerate", [(names.LEXER, names.lexer_source),
                                              (names.TEXTMATE, names.textmate_source)])
def test_editor_name_lists_are_what_the_docs_command_writes(path, regenerate):
    text = path.read_text(encoding="utf-8")
    assert regenerate(text) == text, f"{path.name} is stale: run `python -m archdsl.docs --write`"


def test_the_docs_command_puts_back_a_missing_name():
    text = names.LEXER.read_text(encoding="utf-8")
    assert text.count(" 'conv_transpose',") == 1
    assert names.lexer_source(text.replace(" 'conv_transpose',", "")) == text
    textmate = names.TEXTMATE.read_text(encoding="utf-8")
    grammar = json.loads(textmate)
    ops = grammar["repository"]["builtins"]["patterns"][0]
    assert ops["match"].count("|conv_transpose|") == 1
    ops["match"] = ops["match"].replace("|conv_transpose|", "|")
    assert names.textmate_source(json.dumps(grammar)) == textmate


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_stdlib_lexes_without_errors_and_labels_match_the_parser(path):
    text = path.read_text(encoding="utf-8")
    tokens = list(ArchLexer().get_tokens_unprocessed(text))
    errors = [(text.count("\n", 0, i) + 1, v) for i, t, v in tokens if t in Error]
    assert not errors, errors[:5]
    assert "".join(v for _, _, v in tokens) == text
    # the lexer's labels are exactly the parser's (none missed, no parameter taken for one)
    lexed = sorted((text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i))
                   for i, t, _ in tokens if t is Name.Label)
    module = parse(text, str(path))
    parsed = sorted(_labels(module.model_dump(mode="json", serialize_as_any=True), []))
    assert lexed == parsed


SAMPLE = '''\
# a comment
from blocks.se import SE
let width = 64
block Residual(c: int, attn: block? = none) {
  in x: [B, C, H, W]
  y = x -> conv1: conv(c, 3, stride=2) -> bn1: batch_norm -> relu
  out y -> stem: [conv: conv(c, 7), pool: maxpool(3)] -> layer{i + 1}: identity
}
variant tiny = Residual(c=width, attn=SE) reference "timm/tiny"
'''


def _tokens(text: str) -> list[tuple]:
    return [(t, v) for t, v in ArchLexer().get_tokens(text) if v.strip()]


def test_token_types():
    toks = _tokens(SAMPLE)
    kind = {}
    for t, v in toks:
        kind.setdefault(v, t)
    assert kind["# a comment"] in Comment
    for kw in ("from", "import", "let", "block", "in", "out", "variant", "reference", "none"):
        assert kind[kw] in Keyword, kw
    assert kind["Residual"] is Name.Class and kind["tiny"] is Name.Function
    for label in ("conv1", "bn1", "stem", "conv", "pool", "layer{i + 1}"):
        assert (Name.Label, label) in toks, label
    # parameters and shapes are not labels; ops and builtins are builtins
    assert (Name.Label, "c") not in toks and (Name.Label, "attn") not in toks
    assert kind["x"] is Name and kind["relu"] is Name.Builtin and kind["maxpool"] is Name.Builtin
    assert (Name.Builtin, "conv") in toks          # `conv(c, 3)`, besides the label `conv:`
    assert kind['"timm/tiny"'] in String and kind["64"] in Number and kind["->"] in Operator
    assert (Operator.Word, "and") in _tokens("x = a and not b")
    assert (Number.Float, "1e-6") in _tokens("let eps = 1e-6")


def test_lexer_is_found_by_pygments():
    from pygments.lexers import find_lexer_class_for_filename, get_lexer_by_name
    from pygments.util import ClassNotFound
    try:
        lexer = get_lexer_by_name("archdsl")
    except ClassNotFound:
        # the `pygments.lexers` entry point is active only once the package is installed
        # (`pip install -e .`); a checkout on PYTHONPATH has no entry-point metadata
        pytest.skip("archdsl is not installed: its pygments.lexers entry point is not registered")
    assert type(lexer).__name__ == "ArchLexer"
    assert get_lexer_by_name("arch").name == "archdsl"
    assert find_lexer_class_for_filename("resnet.arch").__name__ == "ArchLexer"


def test_entry_point_is_declared():
    import tomllib
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lexers = meta["project"]["entry-points"]["pygments.lexers"]
    module, _, cls = lexers["archdsl"].partition(":")
    assert (module, cls) == ("archdsl.editor.pygments_lexer", "ArchLexer")
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["archdsl*"]  # archdsl.editor too


# ---- the TextMate grammar ---------------------------------------------------------------------

def _tm_rules(node, out: list) -> list:
    if isinstance(node, dict):
        if any(k in node for k in ("match", "begin")):
            out.append(node)
        for v in node.values():
            _tm_rules(v, out)
    elif isinstance(node, list):
        for v in node:
            _tm_rules(v, out)
    return out


def test_textmate_grammar_is_valid():
    grammar = json.loads(TEXTMATE.read_text(encoding="utf-8"))
    assert grammar["scopeName"] == "source.archdsl" and grammar["fileTypes"] == ["arch"]
    rules = _tm_rules(grammar, [])
    assert rules
    for rule in rules:               # the patterns use nothing Oniguruma has and Python lacks
        for key in ("match", "begin", "end"):
            if key in rule:
                re.compile(rule[key])
    # every `include` names a repository entry
    includes = re.findall(r'"include": "#([\w-]+)"', TEXTMATE.read_text(encoding="utf-8"))
    assert set(includes) <= set(grammar["repository"])


def _scopes_matching(grammar: dict, word: str) -> set[str]:
    return {r.get("name", "") for r in _tm_rules(grammar, [])
            if "match" in r and re.fullmatch(r["match"], word)}


def test_textmate_names_every_keyword_and_builtin():
    grammar = json.loads(TEXTMATE.read_text(encoding="utf-8"))
    for kw in grammar_keywords():
        scopes = _scopes_matching(grammar, kw) - {"variable.other.archdsl"}
        assert scopes and all(s.split(".")[0] in {"keyword", "storage", "constant"} for s in scopes), kw
    for name in OPS + BUILTINS + TOPOLOGY_BUILTINS:
        assert any(s.startswith("support.function") for s in _scopes_matching(grammar, name)), name
    labels = grammar["repository"]["arrow-label"]["match"]
    m = re.search(labels, "x -> layer{i + 1}: conv(8, 3)")
    assert m and m.group(2) == "layer{i + 1}"
    assert not re.search(labels, "x -> a ? b : c")


# ---- the AST's JSON schema ------------------------------------------------------------------------

def test_schema_file_is_current():
    from archdsl.syntax.schema import SCHEMA_PATH, render
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "archdsl/syntax/ast.schema.json is stale: run `python -m archdsl.docs --write`")


def test_schema_is_complete():
    from archdsl.syntax import ast as A
    from archdsl.syntax.schema import ast_schema, concrete, union_kinds
    defs = ast_schema()["$defs"]
    for base in (A.Expr, A.Stmt):
        refs = set(union_kinds(defs[base.__name__]))
        assert refs == {c.__name__ for c in concrete(base)}
        assert {"Call", "Chain", "Name"} <= refs or {"Assign", "If", "OutStmt"} <= refs
        assert refs <= set(defs)
    assert "Repeat" in defs and "PhaseStmt" in defs and "Label" in defs


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    from archdsl.syntax.schema import ast_schema
    schema = ast_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_stdlib_ast_validates(validator, path):
    import jsonschema
    from archdsl.syntax.schema import dump
    data = dump(parse(path.read_text(encoding="utf-8"), str(path)))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    assert error is None, f"{list(error.absolute_path)}: {error.message[:300]}"


def test_schema_unions_accept_exactly_their_kinds(validator):
    # the if/then/else chain must accept what a plain anyOf of the kinds accepts: a list written
    # as a tuple literal (the same field names) and a node with its defaulted fields left out
    import jsonschema
    from archdsl.syntax.schema import ast_schema, dump, union_kinds
    schema = ast_schema()
    plain = jsonschema.validators.validator_for(schema)(
        {**schema, "$defs": {**schema["$defs"], **{u: {"anyOf": [{"$ref": f"#/$defs/{k}"} for k in
                                                                  union_kinds(schema["$defs"][u])]}
                                                  for u in ("Expr", "Stmt")}}})
    data = dump(parse("let a = (1, 2)\nlet b = [x for x in a]\nlet c = f(a)[0].b\n"))
    tuple_as_list = dict(data["items"][0]["value"])
    short_call = {k: v for k, v in data["items"][2]["value"].items() if k != "paren"}
    for variant in (tuple_as_list, short_call, {"span": tuple_as_list["span"]}, {"bogus": 1}):
        doc = {**data, "items": [{**data["items"][0], "value": variant}]}
        assert validator.is_valid(doc) == plain.is_valid(doc)
    assert validator.is_valid(data) and not validator.is_valid(
        {**data, "items": [{**data["items"][0], "value": {"bogus": 1}}]})


def test_schema_rejects_a_broken_tree(validator):
    from archdsl.syntax.schema import dump
    data = dump(parse(SAMPLE))
    data["items"][2]["body"][1]["value"]["stages"][0]["value"] = {"bogus": 1}
    assert not validator.is_valid(data)
