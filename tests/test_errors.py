"""Every user mistake becomes an `ArchError` that points at the offending source.

Each case is a small spec with one mistake. We check that it raises `ArchError` (never another
exception), that `err.span` is exactly the offending token, that the rendered text quotes the
source line with a caret under that column, that the message says what is wrong, and that
there is a hint where one is obvious (did-you-mean for typos).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import archdsl
from archdsl import ArchError, SpecText


# ---- helpers -------------------------------------------------------------------------------------

def net(body: str, head: str = "") -> str:
    """A network whose body starts on line 3 (after `head`'s lines): `in x` is line 2."""
    return head + "network N() {\n  in x: [B, 3, H = 32, W = 32]\n" + body + "\n}\n"


# A block of 4 lines: a spec built as BLK + net(...) has `network N` on line 5, its body on line 7.
BLK = ("block Blk(planes: int, stride: int = 1) {\n"
       "  in x: [B, C, H, W]\n"
       "  out x -> conv(planes, 3, stride=stride)\n"
       "}\n")


def error_of(source: str | None = None, spec=None, **kwargs) -> ArchError:
    try:
        archdsl.check_spec(spec, source=source, **kwargs)
    except ArchError as err:
        return err
    except Exception as exc:  # pragma: no cover - the point of these tests
        pytest.fail(f"raised {type(exc).__name__} instead of ArchError: {exc}")
    pytest.fail("no error was raised")


def assert_points_at(err: ArchError, text: str, line: int, col: int, token: str | None = None):
    """`err.span` is (line, col); the rendered error quotes that line with a caret under col."""
    assert err.span is not None, str(err)
    assert (err.span.line, err.span.col) == (line, col), str(err)
    rendered = str(err)
    assert "Traceback" not in rendered
    assert f"{err.span.file}:{line}:{col}" in rendered
    source_line = text.splitlines()[line - 1]
    if token is not None:
        assert source_line[col - 1:].startswith(token), (source_line, col, token)
    lines = rendered.splitlines()
    quoted = f"{line} | {source_line}"
    assert quoted in lines, rendered
    caret = lines[lines.index(quoted) + 1]
    gutter = " " * len(str(line)) + " | "
    assert caret.startswith(gutter), rendered
    assert caret[len(gutter):].index("^") == col - 1, rendered


@dataclass
class Case:
    id: str
    source: str
    line: int
    col: int
    token: str | None                 # the text at (line, col); None at end of file
    says: list[str]                   # all of these appear in the rendered error
    hint: str | None = None           # appears in err.hint
    kwargs: dict = field(default_factory=dict)


CASES = [
    # ---- syntax ---------------------------------------------------------------------------------
    Case("missing-closing-brace",
         "network N() {\n  in x: [B, 3, H = 32, W = 32]\n  out x -> relu\n",
         3, 16, None, ["unexpected end of file", "'{' is never closed", "expected: '}'",
                       "1:13"], hint="add the missing '}'"),
    Case("bad-character", net("  y = x -> relu $ 3\n  out y"),
         3, 17, "$", ["unexpected character '$'"], hint="archdsl specs use"),
    Case("unterminated-string", net('  y = x -> conv(64, 3, pad="same)\n  out y'),
         3, 28, '"', ["unterminated string", "closing '\"'"], hint="one line"),
    Case("missing-stage-after-arrow", net("  y = x ->\n  out y"),
         4, 3, "out", ["missing a stage after '->'", "found:    'out'", "this '->' has nothing after it",
                       "3 |   y = x ->\n  |         ^^"], hint="x -> relu"),
    Case("stray-colon", net("  y: x -> relu\n  out y"),
         3, 4, ":", ["unexpected ':'", "expected: ',', '='"], hint="assign with `=`"),
    Case("relative-import-is-a-syntax-error", "import ..secret\n" + net("  out x"),
         1, 8, ".", ["unexpected '.'", "expected: a name"], hint="relative paths"),
    Case("huge-integer-literal", net("  n = 1" + "0" * 2000 + "\n  out x"),
         3, 7, "1000", ["integer literal with 2001 digits is too large"], hint="at most 1000 digits"),
    Case("nesting-too-deep", net("  n = " + "(" * 3000 + "1" + ")" * 3000 + "\n  out x"),
         # refused by a token scan at the bracket that passes the limit, before parsing
         3, 205, "(", ["expression nested more than 200 deep"], hint="named intermediate values"),
    # ---- names ----------------------------------------------------------------------------------
    Case("data-parameter-hides-the-op-its-block-calls",
         "block Blk(drop_path: float = 0.1) {\n  in x: [B, C, H, W]\n  out x -> drop_path(drop_path)\n}\n"
         + net("  out x -> Blk()"),
         1, 11, "drop_path: float", ["parameter 'drop_path' of Blk hides op 'drop_path', which the body calls",
                                     "found:    drop_path: float"], hint="rename the parameter"),
    # ---- a spec's own checks ----------------------------------------------------------------------
    Case("assert-with-message",
         BLK.replace("  in x: [B, C, H, W]\n", "  in x: [B, C, H, W]\n  assert planes % 4 == 0, \"planes must be a multiple of 4, got \" + str(planes)\n")
         + net("  out x -> Blk(6)"),
         8, 16, "6", ["planes must be a multiple of 4, got 6", "note: required by 'Blk' here",
                      "3 |   assert planes % 4 == 0"],
         hint="requires `planes % 4 == 0` (planes = 6)"),
    # the argument is the spec's own default, not the caller's: the assert itself is shown
    Case("assert-on-a-default",
         BLK.replace("  in x: [B, C, H, W]\n", "  in x: [B, C, H, W]\n  assert stride == 2, \"stride 2 only\"\n")
         + net("  out x -> Blk(8)"),
         3, 10, "stride", ["stride 2 only", "note: in Blk, created here", "8 |   out x -> Blk(8)"],
         hint="requires `stride == 2` (stride = 1)"),
    Case("assert-without-message", net("  assert H == 64\n  out x"),
         3, 10, "H", ["assertion failed"], hint="requires `H == 64`"),
    Case("assert-message-not-a-string", net("  assert false, 3\n  out x"),
         3, 17, "3", ["an assert's message must be a string"]),
    # ---- unknown names (did you mean) -----------------------------------------------------------
    Case("block-name-typo",
         "block SEBlock() {\n  in x: [B, C, H, W]\n  out x\n}\n" + net("  out x -> SEBlok()"),
         7, 12, "SEBlok", ["unknown name 'SEBlok'"], hint="did you mean 'SEBlock'?"),
    Case("op-name-typo", net("  out x -> rleu"),
         3, 12, "rleu", ["unknown name 'rleu'"], hint="did you mean 'relu'?"),
    Case("op-argument-typo", net("  out x -> conv(64, strid=2)"),
         3, 21, "strid=2", ["'conv' has no argument 'strid'"], hint="did you mean 'stride'?"),
    Case("block-parameter-typo", BLK + net("  out x -> Blk(plane=16)"),
         7, 16, "plane=16", ["'Blk' has no parameter 'plane'"], hint="did you mean 'planes'?"),
    Case("module-member-typo", "import blocks.se\n" + net("  out x -> se.SEE()"),
         4, 12, "se.SEE", ["module 'blocks.se' has no 'SEE'"], hint="did you mean 'SE'?"),
    Case("type-name-typo",
         "block Blk(n: integer) {\n  in x: [B, C, H, W]\n  out x\n}\n" + net("  out x -> Blk(n=1)"),
         1, 14, "integer", ["unknown type 'integer'"], hint="did you mean 'int'?"),
    # ---- arguments --------------------------------------------------------------------------------
    Case("op-argument-wrong-type", net("  out x -> conv(64.5, 3)"),
         3, 17, "64.5", ["'conv' argument 'out'", "valid integer", "found:    64.5"]),
    Case("block-int-parameter-given-a-list", BLK + net("  out x -> Blk(planes=[1, 2])"),
         7, 16, "planes=[1, 2]", ["argument 'planes' of 'Blk' must be int", "expected: int",
                                  "found:    list", "declared here"]),
    Case("op-missing-required-argument", net("  out x -> conv(kernel=3)"),
         3, 12, "conv(kernel=3)", ["'conv' argument 'out': field required"], hint="'conv' needs: out"),
    Case("block-missing-required-argument", BLK + net("  out x -> Blk()"),
         7, 12, "Blk()", ["missing argument 'planes' for block 'Blk'", "declared here"],
         hint="Blk(planes=…)"),
    Case("op-too-many-positional", net("  out x -> conv(64, 3, 1, 1, 2)"),
         3, 30, "2)", ["'conv' takes at most 4 positional argument(s)", "got 5"],
         hint="name the others: `dilation=…`, `groups=…`, `bias=…`"),
    Case("block-too-many-positional", BLK + net("  out x -> Blk(16, 1, 2)"),
         7, 23, "2)", ["'Blk' takes 2 argument(s), got 3 positional"], hint="planes, stride"),
    Case("argument-given-twice", BLK + net("  out x -> Blk(16, planes=8)"),
         7, 20, "planes=8", ["argument 'planes' given twice to 'Blk'"], hint="by position"),
    Case("positional-after-keyword", net("  out x -> conv(kernel=3, 64)"),
         3, 27, "64", ["positional argument after a keyword argument"]),
    Case("variant-with-bad-argument",
         "block A(n: int = 1) {\n  in x: [B, 3, H = 8, W = 8]\n  out x\n}\nvariant v = A(n=2.5)\n",
         5, 15, "n=2.5", ["argument 'n' of 'A' must be int", "found:    float"]),
    # ---- shapes -----------------------------------------------------------------------------------
    Case("add-shape-mismatch",
         net("  a = x -> conv1: conv(16, 3)\n  b = x -> conv2: conv(32, 3)\n  out a + b"),
         5, 7, "a + b", ["add: shapes [1, 16, 32, 32] and [1, 32, 32, 32] do not broadcast",
                         "'conv1' has shape [1, 16, 32, 32]", "'conv2' has shape [1, 32, 32, 32]"]),
    Case("cat-shape-mismatch",
         net("  a = x -> conv1: conv(16, 3)\n  b = x -> conv2: conv(32, 3, stride=2)\n"
             "  out cat([a, b], dim=1)"),
         5, 7, "cat(", ["cat along dim 1", "[1, 16, 32, 32]", "[1, 32, 16, 16]",
                        "'conv1' has shape [1, 16, 32, 32]", "'conv2' has shape [1, 32, 16, 16]"]),
    Case("kernel-larger-than-input", net("  out x -> conv(16, 64, pad=0)"),
         3, 12, "conv(16, 64", ["kernel 64x64", "larger than the 32x32 input",
                                "'x' has shape [1, 3, 32, 32]"], hint="smaller kernel"),
    Case("zero-stride", net("  out x -> conv(16, 3, stride=0)"),
         3, 12, "conv(", ["stride and dilation must be positive"]),
    Case("groups-do-not-divide-channels", net("  out x -> conv(16, 3, groups=2)"),
         3, 12, "conv(", ["groups=2 must divide input channels (3)", "[1, 3, 32, 32]"]),
    Case("input-shape-pattern-mismatch", net("  out x"),
         2, 13, "3", ["input 'x' expects shape [B, 3, H, W], got [1, 1, 32, 32]", "expected: 3",
                      "found:    1"], kwargs={"input_shape": (1, 1, 32, 32)}),
    Case("input-rank-mismatch", net("  out x"),
         2, 3, "in x", ["input 'x' has 4 dims but the given shape [1, 3, 32] has 3"],
         kwargs={"input_shape": (1, 3, 32)}),
    # ---- structure ---------------------------------------------------------------------------------
    Case("unbounded-recursion",
         "block R() {\n  in x: [B, C, H, W]\n  out x -> R()\n}\n" + net("  out x -> R()"),
         3, 12, "R()", ["block 'R' is nested more than 64 deep"], hint="condition that stops it"),
    Case("missing-out", net("  y = x -> relu"),
         1, 1, "network N", ["network 'N' has no `out` statement"], hint="out <value>"),
    Case("duplicate-node-name",
         net("  y = x -> conv1: conv(16, 3)\n  z = y -> conv1: conv(16, 3)\n  out z"),
         4, 12, "conv1:", ["duplicate node name 'conv1' in 'N'", "first used here", ":3:12"],
         hint="its own name"),
    Case("duplicate-block-definition",
         "block A() {\n  in x: [B, C, H, W]\n  out x\n}\nblock A() {\n  in x: [B, C, H, W]\n  out x\n}\n"
         + net("  out x -> A()"),
         5, 1, "block A", ["'A' is defined twice", "first defined here", ":1:1"]),
    Case("arrow-from-a-number", net("  y = 3 -> relu\n  out x"),
         3, 7, "3 ->", ["'->' needs a tensor on its left, got int"], hint="the left of '->' is a tensor"),
    Case("call-a-number", net("  n = 3\n  y = n(2)\n  out x"),
         4, 7, "n(2)", ["int is not callable"], hint="ops, blocks and builtins"),
    Case("out-of-a-number", "network N() {\n  out 3\n}\n",
         2, 7, "3", ["`out` needs a tensor", "found:    int"]),
    Case("variant-of-a-number", "variant v = 3\n" + net("  out x"),
         1, 13, "3", ["variant 'v' must be a network", "found:    int"]),
    # ---- evaluation ----------------------------------------------------------------------------------
    Case("division-by-zero", net("  n = 3 // 0\n  out x"),
         3, 7, "3 // 0", ["division by zero"]),
    Case("index-out-of-range", net("  l = [1, 2]\n  n = l[5]\n  out x"),
         4, 7, "l[5]", ["index 5 out of range for a list of length 2"]),
    Case("for-over-a-number", net("  for i in 3 {\n    x = x -> relu\n  }\n  out x"),
         3, 12, "3 {", ["`for` needs a list", "found:    int"], hint="range(n)"),
    Case("tensor-as-condition", net("  if x {\n    x = x -> relu\n  }\n  out x"),
         3, 6, "x {", ["a tensor has no truth value"], hint="x.shape[1] == 64"),
    Case("repeat-too-large", net("  out x -> repeat(10**9) { relu }"),
         3, 19, "10**9", ["repeat count 1000000000 must be between 0 and 100000"]),
    Case("huge-power", net("  n = 2 ** 10**9\n  out x"),
         3, 7, "2 ** 10**9", ["power too large"], hint="4096 bits"),
    Case("huge-product", net("  n = prod(range(1, 200000))\n  out x"),
         3, 7, "prod(", ["prod: the product has more than 4096 bits"]),
    Case("list-doubling", net("  a = [0] * 1000000\n  for i in range(40) {\n    a = a + a\n  }\n  out x"),
         5, 9, "a + a", ["sequence too large"], hint="1000000 items"),
    Case("nested-loops-that-never-end",
         net("  for i in range(1000000) {\n    for j in range(1000000) {\n      n = i\n    }\n  }\n"
             "  out x"),
         4, 14, "range(1000000)", ["more than 2000000 steps"], hint="loop bounds"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mistake(case: Case):
    err = error_of(case.source, **case.kwargs)  # the budget cases say how much work they refused
    assert_points_at(err, case.source, case.line, case.col, case.token)
    rendered = str(err)
    for text in case.says:
        assert text in rendered, rendered
    if case.hint is not None:
        assert err.hint is not None and case.hint in err.hint, rendered


def test_at_least_25_distinct_mistakes():
    assert len({c.id for c in CASES}) == len(CASES) >= 25


# ---- variants and overrides (given through the API, not in the file) -----------------------------

VARIANTS = ("network N(width: int = 1) {\n  in x: [B, 3, H = 32, W = 32]\n  out x\n}\n"
            "variant small = N()\n")


def test_variant_typo_suggests_the_variant():
    err = error_of(VARIANTS, variant="smal")
    assert "'smal' is not a variant" in str(err)
    assert err.hint == "did you mean 'small'?"


def test_unknown_variant_lists_the_variants():
    err = error_of(VARIANTS, variant="nope")
    assert "'nope' is not a variant" in str(err)
    assert "small" in err.hint


@pytest.mark.parametrize("value", [3, SpecText("3")], ids=["python", "set-text"])
def test_override_of_unknown_parameter(value):
    err = error_of(VARIANTS, widht=value)
    assert "'N' has no parameter 'widht'" in str(err)
    assert err.hint == "did you mean 'width'?"
    # the override has no place in the file: the error shows where the network is declared
    note_text, note_span = err.notes[0]
    assert (note_span.line, note_span.col) == (1, 1) and "declared here" in note_text
    assert "1 | network N(width: int = 1) {" in str(err)


def test_override_of_wrong_type_points_at_the_parameter():
    err = error_of(VARIANTS, width=SpecText("[1, 2]"))
    assert_points_at(err, VARIANTS, 1, 11, "width: int")
    assert "argument 'width' of 'N' must be int" in str(err) and "found:    list" in str(err)


def test_override_text_with_a_syntax_error():
    err = error_of(VARIANTS, width=SpecText("3 +"))
    assert err.span is not None and err.span.file == "<--set>"
    assert (err.span.line, err.span.col) == (1, 4)
    assert "unexpected end of file" in str(err)


# ---- files: imports, cycles, symlinks, encodings ---------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_import_of_missing_module_suggests_the_stdlib_module(tmp_path):
    main = write(tmp_path / "main.arch", "import blocks.sse\n" + net("  out x"))
    err = error_of(spec=main)
    assert_points_at(err, main.read_text(), 1, 8, "blocks.sse")
    assert "no module 'blocks.sse'" in str(err)
    assert err.hint == "did you mean 'blocks.se'?"


def test_import_of_missing_module_suggests_a_local_module(tmp_path):
    write(tmp_path / "helpers.arch", "block H() {\n  in x: [B, C, H, W]\n  out x\n}\n")
    main = write(tmp_path / "main.arch", "import helper\n" + net("  out x"))
    err = error_of(spec=main)
    assert_points_at(err, main.read_text(), 1, 8, "helper")
    assert err.hint == "did you mean 'helpers'?"


def test_from_import_of_missing_name(tmp_path):
    main = write(tmp_path / "main.arch", "from blocks.se import SEE\n" + net("  out x -> SEE()"))
    err = error_of(spec=main)
    assert_points_at(err, main.read_text(), 1, 23, "SEE")
    assert "module 'blocks.se' has no 'SEE'" in str(err)
    assert err.hint == "did you mean 'SE'?"


def test_import_cycle(tmp_path):
    block = "block {}() {{\n  in x: [B, C, H, W]\n  out x\n}}\n"
    write(tmp_path / "a.arch", "import b\n" + block.format("A"))
    b = write(tmp_path / "b.arch", "import a\n" + block.format("B"))
    main = write(tmp_path / "main.arch", "import a\n" + net("  out x -> a.A()"))
    err = error_of(spec=main)
    assert_points_at(err, b.read_text(), 1, 1, "import a")
    assert Path(err.span.file).name == "b.arch"
    assert "import cycle: main → a → b → a" in str(err)
    assert err.hint


def test_import_through_a_symlink_out_of_the_search_path_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside / "secret.arch", "block S() {\n  in x: [B, C, H, W]\n  out x\n}\n")
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    os.symlink(outside / "secret.arch", spec_dir / "secret.arch")
    os.symlink(outside, spec_dir / "sub")
    for module in ("secret", "sub.secret"):
        main = write(spec_dir / "main.arch", f"import {module}\n" + net("  out x"))
        err = error_of(spec=main)
        assert_points_at(err, main.read_text(), 1, 8, module)
        assert f"module '{module}'" in str(err) and "leads outside" in str(err)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.arch"
    path.write_bytes(net("  # caf\xe9\n  out x").encode("latin-1"))
    err = error_of(spec=path)
    assert err.span is not None and (err.span.line, err.span.col) == (3, 8)
    rendered = str(err)
    assert "is not UTF-8 text" in rendered and "byte 0xe9" in rendered
    assert "3 |   # caf\ufffd" in rendered and "  |        ^" in rendered


def test_non_utf8_imported_file_points_into_that_file(tmp_path):
    (tmp_path / "latin1.arch").write_bytes(b"# \xff\n")
    main = write(tmp_path / "main.arch", "import latin1\n" + net("  out x"))
    err = error_of(spec=main)
    assert Path(err.span.file).name == "latin1.arch" and (err.span.line, err.span.col) == (1, 3)


# ---- no crash on what used to crash -------------------------------------------------------------------

def test_calling_a_bound_op_with_a_tensor():
    """`conv(16)(x)` adds the tensor to the bound arguments (it used to raise AttributeError)."""
    report = archdsl.check_spec(source=net("  f = conv(16, 3)\n  out f(x)"))
    assert report is not None


def test_sum_and_str_refuse_what_would_take_forever():
    err = error_of(net("  n = sum([[0]] * 1000, [])\n  out x"))
    assert "sum takes a list of numbers" in str(err)
    err = error_of(net("  n = str([0] * 1000)\n  out x"))
    assert "str takes a number" in str(err)
    err = error_of(net("  n = str([0] * 1000000)\n  out x"))  # refused before str runs
    assert "more than 2000000 steps to elaborate: 'str' touches 1,000,001+ elements" in str(err)


def test_a_parameter_named_like_an_op_it_does_not_call_is_fine():
    text = ("block Blk(pad: int = 1, sub: block = relu) {\n  in x: [B, C, H, W]\n"
            "  out x -> conv(C, 3, pad=pad) -> sub()\n}\n" + net("  out x -> Blk()"))
    assert archdsl.check_spec(source=text).totals.params == 3 * 3 * 3 * 3 + 3
