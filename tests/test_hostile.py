"""Hostile and careless input (issue 13): each spec here once gave an internal error (a Python
exception or torch failing at build time), ran for minutes, or was silently accepted. Each must
now be an `ArchError` at the exact line and column, with the exact message — or, for `repeat(0)`,
a documented acceptance with a warning."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

import archdsl
from archdsl import ArchError, ArchWarning
from archdsl.cli import main


def net(body: str, head: str = "") -> str:
    """A network whose body starts on line 3 (after `head`'s lines); `in x: [B, 8]` is line 2."""
    return head + "network N() {\n  in x: [B, 8]\n" + body + "\n}\n"


@dataclass
class Case:
    id: str
    source: str
    line: int
    col: int
    token: str                  # the source text the caret starts under
    message: str                # the error's first line, exactly (after "error: ")
    hint: str | None = None     # a part of the hint
    notes: list[tuple[str, int, int]] = field(default_factory=list)   # (text, line, col)


CASES = [
    # ---- string escapes: lark's VisitError before; "\x" silently changed the string -------------
    Case("escape-x", 'let s = "ab\\x"\n' + net("  out x"), 1, 12, "\\x",
         "unknown escape '\\x' in a string", hint="write a backslash as \\\\"),
    Case("escape-N", 'let s = "\\N{x}"\n' + net("  out x"), 1, 10, "\\N", "unknown escape '\\N' in a string"),
    Case("escape-U", 'let s = "\\U0011ffff"\n' + net("  out x"), 1, 10, "\\U",
         "unknown escape '\\U' in a string"),
    Case("escape-windows-path", 'checkpoint "C:\\Users\\me" {\n}\n' + net("  out x"), 1, 15, "\\U",
         "unknown escape '\\U' in a string"),
    Case("escape-in-reference", net("  out x") + 'variant v = N() reference "timm\\xception"\n', 5, 32,
         "\\x", "unknown escape '\\x' in a string"),
    # ---- numbers that do not fit: OverflowError in the elaborator, or torch failing at build -------
    Case("tensor-times-huge-int", net("  out x * 10 ** 400"), 3, 7, "x * 10",
         "'*' with an integer of 1329 bits: a tensor's scalar must fit a float"),
    Case("buffer-filled-with-2-4096", net("  buffer b: [8] = 2 ** 4096\n  out x + b"), 3, 19, "2 ** 4096",
         "initial value is too large for a float", hint="float32"),
    Case("init-huge-constant", net('  init "*.weight" = 10 ** 400\n  out x -> fc: linear(4)'), 3, 21,
         "10 ** 400", "initial value is too large for a float"),
    Case("buffer-filled-with-1e308", net("  buffer b: [8] = 1e308\n  out x + b"), 3, 19, "1e308",
         "initial value 1e+308 does not fit a float32 tensor (at most 3.403e+38)"),
    # ---- initialiser arguments torch refuses at build time -----------------------------------------
    Case("kaiming-gelu", net('  init "*.weight" = kaiming_normal(nonlinearity="gelu")\n  out x -> fc: linear(4)'),
         3, 21, "kaiming_normal(",
         "bad arguments to 'kaiming_normal': nonlinearity 'gelu' has no gain; one of linear, conv1d, "
         "conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, sigmoid, tanh, relu, "
         "leaky_relu, selu"),
    Case("trunc-normal-a-above-b", net('  init "*.weight" = trunc_normal(0.02, 2, -2)\n  out x -> fc: linear(4)'),
         3, 21, "trunc_normal(", "bad arguments to 'trunc_normal': the bounds need a < b, got a = 2, b = -2"),
    Case("uniform-a-above-b", net("  param w: [4] = uniform(1, 0)\n  out x"), 3, 18, "uniform(",
         "bad arguments to 'uniform': the bounds need a <= b, got a = 1, b = 0"),
    # ---- dims given as spec defaults: negative params and FLOPs in check before ------------------
    Case("negative-default-dim", "network N() {\n  in x: [B, C = -4]\n  out x -> linear(4)\n}\n", 2, 13,
         "C = -4", "an input size must be between 0 and 2,147,483,647, got -4"),
    Case("huge-default-dim", "network N() {\n  in x: [B, C = 10 ** 30]\n  out x -> linear(4)\n}\n", 2, 13,
         "C = 10", "an input size must be between 0 and 2,147,483,647, got an integer of 31 digits"),
    Case("huge-op-output", net("  out x -> linear(2 ** 40)"), 3, 12, "linear(",
         "'linear' gives shape [1, 1099511627776]: a dim is larger than 2,147,483,647"),
    Case("op-argument-beyond-int64", net("  out x -> conv(8, 3, stride=2 ** 4000)"), 3, 23, "stride=",
         "'conv' argument 'stride' does not fit a 64-bit integer", hint="int64"),
    Case("zero-param-size", net("  param w: [0]\n  out x"), 3, 13, "0]",
         "a param's size must be between 1 and 2,147,483,647, got 0"),
    # ---- labels: fx KeyError / SyntaxError before -------------------------------------------------
    # (label characters, keywords and lengths: tests/test_security.py)
    Case("label-inside-a-linear", net('  y = x -> fc: linear(4)\n  z = x -> fc{".weight"}: linear(4)\n'
                                      '  out y + z'), 4, 12, "fc{",
         "'fc.weight' would be inside the linear node 'fc'", notes=[("'fc' is created here", 3, 12)]),
    Case("linear-at-a-group-path", net('  z = x -> fc{".weight"}: linear(4)\n  y = x -> fc: linear(4)\n'
                                       '  out y + z'), 4, 12, "fc:",
         "'fc' is already the path of a group of modules", notes=[("'fc.weight' is inside it", 3, 12)]),
    # ---- checkpoint rules: checked only when used before -------------------------------------------
    Case("checkpoint-unknown-placeholder", 'checkpoint "t" {\n  "a.{i}" -> "b.{j}"\n}\n' + net("  out x"),
         2, 18, "j}", "'j' is not a placeholder of this rule's pattern", hint="its placeholders: i"),
    Case("checkpoint-division-by-zero", 'checkpoint "t" {\n  "a.{i}" -> "b.{i // 0}"\n}\n' + net("  out x"),
         2, 18, "i // 0", "division by zero"),
    Case("checkpoint-fractional-reshape", 'checkpoint "t" {\n  "a.{i}" -> "b.{i}" as [1.5]\n}\n' + net("  out x"),
         2, 26, "1.5", "a reshape dim must be a positive integer or -1, got 1.5"),
    Case("checkpoint-true-division-reshape",
         'checkpoint "t" {\n  "a.{i}" -> "b.{i}" as [i / 2]\n}\n' + net("  out x"),
         2, 26, "i / 2", "'/' gives a float: a reshape dim must be an integer", hint="'//'"),
    Case("checkpoint-unbalanced-brace", 'checkpoint "t" {\n  "a.{{i}" -> "b"\n}\n' + net("  out x"),
         2, 3, '"a.{{i}"', "bad key pattern 'a.{{i}': unbalanced '{' or '}'"),
    Case("checkpoint-adjacent-placeholders", 'checkpoint "t" {\n  "a.{i}{j}" -> "b"\n}\n' + net("  out x"),
         2, 3, '"a.{i}{j}"', "bad key pattern 'a.{i}{j}': placeholders {i}{j} are adjacent: nothing says "
                             "where one ends"),
    # ---- misplaced or misleading --------------------------------------------------------------------
    Case("empty-file", "", 1, 1, "", "<source> declares no network and no variant"),
    Case("wrong-rank-notes-the-call",
         "block Img() {\n  in x: [B, C, H, W]\n  out x\n}\n" + net("  out x -> Img()"), 1 + 1, 3, "in x",
         "input 'x' expects 4 dims, got shape [1, 8]", notes=[("'Img' is given this input here", 7, 12)]),
    Case("too-few-inputs-notes-the-call",
         "block Two() {\n  in a: [B, C]\n  in b: [B, C]\n  out a + b\n}\n" + net("  out x -> Two()"), 3, 3,
         "in b", "'Two' needs input 'b' but was given only 1 tensor(s)",
         notes=[("'Two' is given this input here", 8, 12)]),
    Case("unclosed-paren-notes-the-opening", net("  y = relu(x\n  out y"), 4, 3, "out",
         "unexpected 'out'", notes=[("this '(' is not closed", 3, 11)]),
    Case("relu-with-an-argument", net("  out x -> relu(0.1)"), 3, 17, "0.1",
         "'relu' takes no positional arguments, got 1", hint="'relu' takes no arguments"),
    Case("torch-class-name", net("  out x -> ReLU"), 3, 12, "ReLU", "unknown name 'ReLU'",
         hint="did you mean 'relu'?"),
    Case("timm-class-name", "network N() {\n  in x: [B, 8, 4, 4]\n  out x -> SEModule()\n}\n", 3, 12,
         "SEModule", "unknown name 'SEModule'", hint="did you mean 'SE'?"),
    Case("shape-error-names-the-op-once", net("  in y: [B, 3]\n  out matmul(x, y)"), 4, 7, "matmul(",
         "matmul: [1, 8] @ [1, 3]: the inner sizes 8 and 1 differ"),
    Case("two-unnamed-outs", net("  out x\n  out x"), 4, 3, "out x", "a second unnamed `out`",
         notes=[("the first is here", 3, 3)]),
    # ---- long fuzz run (seed 100): an empty batch reached minibatch_std's `b % min(G, b)` --------
    Case("minibatch-std-of-an-empty-batch",
         "network N(batch = 0) {\n  in x: [batch, 8, 4, 4]\n  out x -> minibatch_std(4)\n}\n", 3, 12,
         "minibatch_std", "minibatch_std needs at least one sample: the batch is 0"),
    Case("unpacking-a-huge-chunk-into-two-names",
         "network N() {\n  in x: [B, 100000]\n  a, b = x -> chunk(100000)\n  out a\n}\n", 3, 3, "a, b",
         "2 names for 100000 parts"),
    Case("prod-of-a-string-would-repeat-it", net("  n = prod([\"a\", 2147483648])\n  out x"), 3, 7,
         "prod(", "prod: prod takes a list of numbers"),
    # ---- long fuzz run (seed 101): torch refused these at build / run time ----------------------
    Case("upsample-of-zero-channels",
         "network N() {\n  in x: [B = 2, C = 0, H = 8, W = 8]\n  out x -> interpolate(scale=8)\n}\n", 3, 12,
         "interpolate", "upsample needs channels and pixels, got 0 channels of 8x8"),
    Case("trunc-normal-to-infinity", net('  init "*.weight" = trunc_normal(1.5, 4, 1e309)\n  out x -> fc: linear(4)'),
         3, 21, "trunc_normal", "bad arguments to 'trunc_normal': b must be finite, got inf"),
    # ---- the evaluation budget ---------------------------------------------------------------------
    Case("parentheses-20000-deep", net("  n = " + "(" * 20000 + "1" + ")" * 20000 + "\n  out x"), 3, 205,
         "(", "expression nested more than 200 deep"),
    Case("unary-minus-20000-deep", net("  n = " + "- " * 20000 + "1\n  out x"), 3, 403, "-",
         "expression nested more than 200 deep"),
    Case("compare-nested-lists",
         net("  a = [[0] * 1000] * 1000\n  b = [[0] * 1000] * 1000\n  c = a == b\n  out x"), 5, 7, "a == b",
         "the spec takes more than 2000000 steps to elaborate: '==' touches 1,995,996+ elements",
         hint="archdsl.limits(steps=…)"),
    Case("membership-in-nested-lists", net("  a = [[0] * 1000] * 2000\n  c = [1] in a\n  out x"), 4, 7,
         "[1] in a", "the spec takes more than 2000000 steps to elaborate: 'in' touches 1,996,998+ elements"),
    Case("sorted-nested-lists", net("  a = [[0] * 1000] * 2000\n  c = sorted(a)\n  out x"), 4, 7,
         "sorted(a)", "the spec takes more than 2000000 steps to elaborate: 'sorted' touches "
                      "1,996,996+ elements"),
    Case("list-of-megabyte-lists", net("  a = [[0] * 1000000 for i in range(1000)]\n  out x"), 3, 8,
         "[0] * 1000000", "the spec takes more than 2000000 steps to elaborate: '*' builds 1,000,000 items"),
    Case("repeat-that-would-pass-the-node-limit", net("  out x -> repeat(100000) { linear(8) -> relu }"),
         3, 19, "100000", "repeat(100000) would make about 200,001 nodes, more than the limit of 50,000",
         hint="$ARCHDSL_MAX_NODES"),
    Case("loops-that-would-pass-the-step-limit",
         net("  for i in range(1000) {\n    for j in range(1000) {\n      n = i * j\n    }\n  }\n  out x"),
         3, 12, "range(1000)",
         "this loop over 1,000 items would take about 7,005,008 steps to elaborate, more than the limit "
         "of 2,000,000"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_an_arch_error_at_its_place(case: Case):
    with pytest.raises(ArchError) as info:
        archdsl.check_spec(source=case.source)
    err = info.value
    assert err.message == case.message, str(err)
    assert err.span is not None and (err.span.line, err.span.col) == (case.line, case.col), str(err)
    line = (case.source.splitlines() or [""])[case.line - 1]
    assert line[case.col - 1:].startswith(case.token), (line, case.col)
    if case.hint is not None:
        assert err.hint is not None and case.hint in err.hint, str(err)
    for text, line_no, col in case.notes:
        assert any(t == text and s is not None and (s.line, s.col) == (line_no, col)
                   for t, s in err.notes), str(err)
    assert "Traceback" not in str(err)


def test_a_dotted_label_that_nests_nothing_is_still_a_module_path():
    """timm's ModuleList keys (`convs.0`) are written as dotted label templates: still allowed."""
    model = archdsl.load_spec(source=net('  out x -> convs{".0"}: linear(4) -> convs{".1"}: linear(2)'))
    assert sorted(model.state_dict()) == ["convs.0.bias", "convs.0.weight", "convs.1.bias", "convs.1.weight"]


def test_repeat_zero_is_the_identity_and_warns():
    with pytest.warns(ArchWarning, match=r"repeat\(0\) applies its body no times") as caught:
        report = archdsl.check_spec(source=net("  out x -> r: repeat(0) { linear(16) }"))
    assert report.output_shapes == {"out": [1, 8]} and report.totals.params == 0
    assert ":3:22" in str(caught[0].message)


def test_the_cli_prints_a_warning_like_an_error(tmp_path):
    spec = tmp_path / "r0.arch"
    spec.write_text(net("  out x -> r: repeat(0) { linear(16) }"))
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 0, result.output
    assert "warning: repeat(0) applies its body no times" in result.output
    assert "r0.arch:3:22" in result.output


def test_a_phase_that_updates_no_parameter_is_an_error():
    src = """network Act() {
  in x: [B, 4]
  out x -> relu
}
topology T() {
  in a: [B = 4, 4]
  net f = Act()
  phase p(update=[f]) {
    loss = mean((a -> f), dims=[0, 1])
  }
}
variant t = T()
"""
    with pytest.raises(ArchError) as info:
        archdsl.load_topology(source=src)
    err = info.value
    assert err.message == "phase 'p' updates no parameter" and (err.span.line, err.span.col) == (8, 3)
    assert err.found == "update=[f], networks without parameters"
    with pytest.raises(ArchError, match="phase 'p' updates no parameter") as info:
        archdsl.load_topology(source=src.replace("update=[f]", "update=[]"))
    assert info.value.found == "update=[]"


def test_a_stdlib_variant_named_in_a_loop_is_loaded_once(monkeypatch):
    from archdsl.semantics import catalog
    loads = []
    real = catalog.open_variant
    monkeypatch.setattr(catalog, "open_variant", lambda *a, **k: loads.append(a) or real(*a, **k))
    archdsl.check_spec(source=net("  nets = [resnet18 for i in range(2000)]\n  out x"))
    assert loads == [("resnet18",)]


def test_limits_can_be_raised_for_a_large_real_spec(monkeypatch):
    source = net("  out x -> repeat(2000) { relu }")
    with archdsl.limits(nodes=1000), pytest.raises(ArchError, match="more than the limit of 1,000"):
        archdsl.check_spec(source=source)
    with archdsl.limits(nodes=3000):
        assert archdsl.check_spec(source=source).output_shapes == {"out": [1, 8]}
    monkeypatch.setenv("ARCHDSL_MAX_STEPS", "1000")
    with pytest.raises(ArchError, match="more than 1000 steps") as info:
        archdsl.check_spec(source=net("  n = sum(range(2000))\n  out x"))
    assert "$ARCHDSL_MAX_STEPS" in info.value.hint


def test_key_patterns_match_in_linear_time_with_the_same_meaning():
    from archdsl.semantics.checkpoint import _source_regex
    regnet = _source_regex("trunk_output.block{s}.block{t}-{b}.f.a.{i}.{p}")
    m = regnet.fullmatch("trunk_output.block1.block1-0.f.a.0.weight")
    assert m.groupdict() == {"s": "1", "t": "1", "b": "0", "i": "0", "p": "weight"}
    # twelve placeholders over a 3,000-character component used to backtrack for seconds
    many = _source_regex("a." + "x".join(f"{{p{i}}}" for i in range(12)) + "x.b")
    assert many.fullmatch("a." + "x" * 3000 + ".c") is None
    assert many.fullmatch("a." + "1x" * 12 + ".b").group("p11") == "1"


def test_check_reports_the_bytes_that_building_allocates():
    report = archdsl.check_spec(source=net("  out x -> fc: linear(4) -> bn"))
    model = archdsl.load_spec(source=net("  out x -> fc: linear(4) -> bn"))
    assert report.totals.param_bytes == sum(p.numel() * p.element_size() for p in model.parameters()) == 4 * 44
    assert report.totals.buffer_bytes == 4 * report.totals.buffers


def test_compile_refuses_a_module_that_cannot_fit(monkeypatch):
    big = net("  out x -> fc: linear(1000000) -> head: linear(1000000)")  # 4 TB of float32 weights
    with pytest.raises(ArchError) as info:
        archdsl.load_spec(source=big, max_bytes="64G")
    err = info.value
    assert err.message == ("building this module needs 3.64 TiB for its parameters and buffers (float32), "
                           "more than the limit of 64.00 GiB (max_bytes)")
    assert (err.span.line, err.span.col) == (3, 35) and err.found == "'head' (linear) alone needs 3.64 TiB"
    assert archdsl.check_spec(source=big).totals.param_bytes == 4 * (8 * 10**6 + 10**12 + 2 * 10**6)
    monkeypatch.setenv("ARCHDSL_MAX_BYTES", "100")
    with pytest.raises(ArchError, match=r"more than the limit of 100 B \(\$ARCHDSL_MAX_BYTES\)"):
        archdsl.load_spec(source=net("  out x -> fc: linear(4)"))
    assert archdsl.load_spec(source=net("  out x -> fc: linear(4)"), max_bytes="0") is not None
    result = CliRunner().invoke(main, ["compile", "resnet18", "--max-bytes", "10M"])
    assert result.exit_code == 1 and "more than the limit of 10.00 MiB (max_bytes)" in result.output


def test_given_input_shapes_are_bounded_like_defaults():
    with pytest.raises(ArchError, match="input 'x' size must be between 0 and 2,147,483,647, got -4"):
        archdsl.check_spec(source=net("  out x"), input_shape=(1, -4))


def test_nothing_here_warns_but_repeat_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ArchWarning)
        archdsl.check_spec(source=net("  out x -> repeat(2) { linear(8) }"))


def test_a_gate_on_an_empty_axis_keeps_the_axis_empty():
    # fuzzer seed 102, case 144: broadcasting 0 with 1 gives 0 (as torch), the static rule said 1
    import torch
    source = ("network N() {\n  in x: [B = 2, C = 4, H = 0, W = 8]\n"
              "  out x -> b: SE(rd_ratio=0.5) -> flatten -> head: linear(3)\n}\n")
    report = archdsl.check_spec(source=source)
    assert [list(n.shape) for n in report.nodes if n.path == "flatten"] == [[2, 0]]   # was [2, 64]
    model = archdsl.load_spec(source=source).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 4, 0, 8)).shape == (2, 3)


def test_a_tensor_computed_outside_a_phase_is_an_error_at_its_place():
    # fuzzer seed 102, case 43941: the phase used a tensor of the topology body's graph (KeyError)
    src = """network Lin() {
  in x: [B, 4]
  out x -> fc: linear(4)
}
topology T() {
  in a: [B = 4, 4]
  net f = Lin()
  z = a -> f -> relu
  phase p(update=[f]) {
    loss = mean(z, dims=[0, 1])
  }
}
variant t = T()
"""
    for text in (src, src.replace("a -> f -> relu", "a * 2")):
        with pytest.raises(ArchError) as info:
            archdsl.load_topology(source=text)
        err = info.value
        assert err.message == "a tensor is computed outside any phase" and err.span.line == 8
        assert "compute tensors inside the phase" in err.hint
    moved = src.replace("  z = a -> f -> relu\n", "").replace("loss = mean(z,", "loss = mean(a -> f,")
    assert "p" in archdsl.load_topology(source=moved).phases
