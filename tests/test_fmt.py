"""`archdsl fmt` on the repository's own specs: the canonical form keeps the meaning (the same AST,
spans aside, and the same costs for every variant), is a fixed point, keeps every comment and the
author's parentheses, and fits 100 columns."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from archdsl.api import check_tree
from archdsl.cli import main
from archdsl.syntax import fmt, parse
from archdsl.syntax import ast as A
from archdsl.syntax.fmt import MAX_LINE

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "stdlib").rglob("*.arch")) + sorted((ROOT / "specs").rglob("*.arch"))


def dump(x):
    """An AST without source positions (what fmt may change)."""
    if isinstance(x, A.BaseModel):
        return (type(x).__name__,
                tuple((k, dump(getattr(x, k))) for k in type(x).model_fields if not k.endswith("span")))
    if isinstance(x, (list, tuple)):
        return tuple(dump(i) for i in x)
    return x


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_fmt_keeps_the_ast_and_comments_and_is_a_fixed_point(path):
    text = path.read_text(encoding="utf-8")
    before = parse(text, str(path))
    once = fmt(before)
    after = parse(once, str(path))
    assert dump(after.items) == dump(before.items)
    assert [c.text for c in after.comments] == [c.text for c in before.comments]
    assert fmt(after) == once
    # longer lines hold what fmt cannot break: a comment, one string (a checkpoint key template)
    long = [line for line in once.splitlines() if len(line) > MAX_LINE]
    assert all(ln.lstrip().startswith(("#", '-> "')) or "  # " in ln for ln in long), long


def _formatted_copy(tmp_path: Path, folders=("stdlib", "specs")) -> Path:
    """The folders copied under tmp_path and run through `archdsl fmt` (as the lead will run
    `archdsl fmt stdlib specs`), then `fmt --check` passes on them."""
    for folder in folders:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    paths = [str(tmp_path / f) for f in folders]
    result = CliRunner().invoke(main, ["fmt", *paths])
    assert result.exit_code == 0, result.output
    check = CliRunner().invoke(main, ["fmt", "--check", *paths])
    assert check.exit_code == 0 and "would reformat" not in check.output
    return tmp_path


def test_fmt_check_passes_after_fmt(tmp_path):
    _formatted_copy(tmp_path, ("specs",))   # the stdlib's files: the fixed-point test above


@pytest.mark.slow   # two checks of every stdlib variant; the same AST (above) already implies it
def test_formatted_stdlib_has_the_same_variants_and_costs(tmp_path):
    _formatted_copy(tmp_path)
    facts = lambda root: {(r.file, r.variant): (r.kind, r.params, r.flops, r.error is None)  # noqa: E731
                          for r in check_tree(root)}
    assert facts(tmp_path / "stdlib") == facts(ROOT / "stdlib")


@pytest.mark.parametrize("source", [
    "let a = (1 + 2) * 3\n",
    "let a = 1 + (2 * 3)\n",
    "let a = (x and y) or z\n",
    "let a = -(2 ** 2)\n",
    "let a = (c ? 1 : 2)\n",
    "let a = [(i) for i in range(3)]\n",
])
def test_parentheses_the_author_wrote_survive(source):
    assert fmt(parse(source)) == source
    stripped = source.replace("(1 + 2) * 3", "1 + 2 * 3")
    assert fmt(parse(stripped)) == stripped


def test_long_lines_break_in_the_projects_hanging_layout():
    source = ("network N(depths: list[int] = [3, 3, 9, 3], dims: list[int] = [96, 192, 384, 768], "
              "drop_path_rate: float = 0.0) {\n  in x: [B, 3, H = 32, W = 32]\n"
              "  y = x -> stem: conv(dims[0], 4, stride=4, pad=0) -> norm: ln2d(1e-6) -> relu "
              "-> blocks: repeat(depths[0]) j, k { Block(dims[0], drop_path_rate * k / max(sum(depths) - 1, 1)) }\n"
              "  out y\n}\n"
              "variant n = N(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536], drop_path_rate=0.5) "
              "reference \"timm/n\"\n")
    assert fmt(parse(source)) == (
        "network N(depths: list[int] = [3, 3, 9, 3], dims: list[int] = [96, 192, 384, 768],\n"
        "          drop_path_rate: float = 0.0) {\n"
        "  in x: [B, 3, H = 32, W = 32]\n"
        "  y = x -> stem: conv(dims[0], 4, stride=4, pad=0) -> norm: ln2d(1e-6) -> relu\n"
        "        -> blocks: repeat(depths[0]) j, k {\n"
        "          Block(dims[0], drop_path_rate * k / max(sum(depths) - 1, 1))\n"
        "        }\n"
        "  out y\n"
        "}\n\n"
        "variant n = N(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536], drop_path_rate=0.5)\n"
        "  reference \"timm/n\"\n")


def test_the_repository_is_in_canonical_form():
    """CI's `archdsl fmt --check`: every spec in the repository, and the README's example spec, are
    what fmt writes (`python -m archdsl fmt stdlib specs` fixes the files)."""
    result = CliRunner().invoke(main, ["fmt", "--check", str(ROOT / "stdlib"), str(ROOT / "specs")])
    assert result.exit_code == 0, result.output
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```arch\n", 1)[1].split("```", 1)[0]
    assert fmt(parse(example, "mini.arch")) == example
