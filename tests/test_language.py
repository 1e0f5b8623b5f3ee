"""The language's semantics, each feature checked through the graph it elaborates to."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import archdsl
from archdsl.semantics.loader import stdlib_dir
from archdsl.syntax import fmt, parse


def graph(text: str, **kw):
    return archdsl.load_graph(source=text, **kw)


def ids(text: str, **kw) -> list[str]:
    return [n.id for n in graph(text, **kw).nodes()]


NET = "network N() {{\n  in x: [B, 4, H = 8, W = 8]\n{body}\n}}\n"


def net(body: str) -> str:
    return NET.format(body=body)


def test_label_templates_repeat_index_and_nested_sequences():
    g = graph(net("""
  y = x
  for i in range(2) {
    y = y -> stage{i + 1}: repeat(2) j { [conv(4 * (i + 1), 1), bn] }
  }
  out y"""))
    convs = [n for n in g.nodes() if n.op == "conv"]
    assert [n.id for n in convs] == ["stage1.0.0", "stage1.1.0", "stage2.0.0", "stage2.1.0"]
    assert [n.shape[1] for n in convs] == [4, 4, 8, 8]


def test_global_counter_is_shared_by_repeats_that_name_it():
    g = graph(net("""
  y = x -> a: repeat(2) j, k { conv(k + 1, 1) } -> b: repeat(3) j, k { conv(k + 1, 1) }
  out y -> c: repeat(2) j, other { conv(other + 1, 1) }"""))
    out_channels = [n.shape[1] for n in g.nodes() if n.op == "conv"]
    assert out_channels == [1, 2, 3, 4, 5, 1, 2]


def test_repeat_body_with_several_stages_numbers_them():
    assert ids(net("  out x -> r: repeat(2) { conv(4, 1) -> relu }")) == [
        "x", "r.0.0", "r.0.1", "r.1.0", "r.1.1"]


def test_if_elif_else_for_let_ternary_and_comprehensions():
    text = """
let widths = [w * 2 for w in [1, 2, 3, 4] if w % 2 == 0]
network N(mode: str = "b") {
  in x: [B, 4, H = 8, W = 8]
  if mode == "a" {
    y = x -> pick: conv(widths[0], 1)
  } elif mode == "b" {
    y = x -> pick: conv(widths[1], 1)
  } else {
    y = x -> pick: conv(1, 1)
  }
  n = 0
  for w in widths {
    n = n + w
  }
  out y -> conv(n > 10 ? n : -1, 1)
}
"""
    g = graph(text)
    assert g.node("pick").shape[1] == 8
    assert g.node("conv").shape[1] == 12
    assert graph(text, mode="a").node("pick").shape[1] == 4
    assert graph(text, mode="zzz").node("pick").shape[1] == 1


def test_shape_variables_bind_from_inputs_and_shape_attribute():
    text = net("""
  in z: [B, C, H2, W2]
  y = x -> conv(C * 2, 1)
  out y -> conv(z.shape[2] + H, 1)""")
    g = graph(text, input_shape=[(1, 4, 8, 8), (1, 3, 5, 5)])
    assert [n.shape[1] for n in g.nodes() if n.op == "conv"] == [6, 13]


def test_rest_dims_make_blocks_rank_polymorphic():
    text = """
block Proj(k: int) {
  in x: [..., C]
  out x -> fc: linear(C * k)
}
network N() {
  in x: [B, 4, 6]
  y = x -> a: Proj(2)
  out y -> flatten -> b: Proj(3)
}
"""
    g = graph(text)
    assert g.node("a.fc").shape == (1, 4, 12)
    assert g.node("b.fc").shape == (1, 144)


def test_blocks_are_parameters_and_partials_merge():
    text = """
block Gate(scale: int = 1) {
  in x: [B, C, H, W]
  out x -> g: conv(C * scale, 1)
}
block Unit(attn: block? = none, width: int = 4) {
  in x: [B, C, H, W]
  y = x -> body: conv(width, 1)
  if attn {
    y = y -> attn: attn()
  }
  out y
}
network N(unit = Unit) {
  in x: [B, 4, H = 8, W = 8]
  out x -> u: unit(width=6)
}
"""
    assert graph(text).node("u.body").shape[1] == 6
    assert "u.attn.g" not in ids(text)
    g = graph(text, unit=archdsl.SpecText("Unit(attn=Gate(scale=2), width=3)"))
    assert g.node("u.body").shape[1] == 6  # the call site's width=6 overrides the partial's 3
    assert g.node("u.attn.g").shape[1] == 12


def test_params_buffers_and_multiple_named_outputs():
    text = """
block Two() {
  in x: [B, C, H, W]
  param scale: [C] = 0.5
  buffer offset: [1, C, 1, 1] = 2.0
  out a = x * scale.reshape([C, 1, 1]) if false else x
  out b = x + offset
}
network N() {
  in x: [B, 4, H = 8, W = 8]
  r = x -> two: Two()
  out first = r.a
  out second = r[1] -> mean(dims=[2, 3])
}
"""
    with pytest.raises(archdsl.ArchError):
        graph(text)  # Python's `a if c else b` is not the language's ternary
    text = text.replace("x * scale.reshape([C, 1, 1]) if false else x", "x * reshape(scale, [C, 1, 1])")
    report = archdsl.check_spec(source=text)
    assert report.totals.params == 4 and report.totals.buffers == 4
    model = archdsl.load_spec(source=text)
    out = model(torch.ones(1, 4, 8, 8))
    assert set(out) == {"first", "second"}
    assert torch.allclose(out["first"], torch.full((1, 4, 8, 8), 0.5))
    assert torch.allclose(out["second"], torch.full((1, 4), 3.0))
    assert dict(model.named_buffers())["two.offset"].shape == (1, 4, 1, 1)


def test_unpacking_binds_each_part_of_a_split_outputs_and_lists():
    text = """
block Two() {
  in x: [B, C, H, W]
  out a = x * 2
  out b = x + 1
}
network N() {
  in x: [B, 4, H = 8, W = 8]
  lo, hi = x -> chunk(2)
  first, second = x -> two: Two()
  k, n = [3, 2]
  out cat([hi, lo]) * k + first - second * n
}
"""
    model = archdsl.load_spec(source=text)
    x = torch.arange(4.0).reshape(1, 4, 1, 1).expand(1, 4, 8, 8).contiguous()
    swapped = torch.cat([x[:, 2:], x[:, :2]], dim=1)
    torch.testing.assert_close(model(x), swapped * 3 + 2 * x - (x + 1) * 2)


@pytest.mark.parametrize("line, says", [
    ("  a, b, c = x -> chunk(2)", "3 names for 2 parts"),
    ("  a, a = x -> chunk(2)", "'a' appears twice"),
    ("  a, b = x", "cannot unpack tensor [1, 4, 8, 8] into 2 names"),
    ("  a, b = 3", "cannot unpack int"),
])
def test_unpacking_mistakes_are_arch_errors(line: str, says: str):
    with pytest.raises(archdsl.ArchError, match=re.escape(says)):
        graph(net(line + "\n  out x"))


def test_a_repeat_carries_several_tensors_through_a_block_with_several_outputs():
    text = """
block TwoStream() {
  in a: [B, C, H, W]
  in b: [B, C, H, W]
  out a = a -> mix: conv(C, 1, bias=false)
  out b = b + a
}
network N() {
  in x: [B, 2, H = 4, W = 4]
  r = [x, 2 * x] -> blocks: repeat(3) { TwoStream() }
  out r.a - r.b
}
"""
    model = archdsl.load_spec(source=text)
    state = model.state_dict()
    assert sorted(state) == [f"blocks.{i}.mix.weight" for i in range(3)]
    x = torch.randn(1, 2, 4, 4)
    a, b = x, 2 * x
    for i in range(3):
        a, b = torch.nn.functional.conv2d(a, state[f"blocks.{i}.mix.weight"]), b + a
    torch.testing.assert_close(model(x), a - b)


def test_membership_operators_and_a_statement_after_them():
    text = """
network N(kinds: list[str] = ["se", "sk"], k: int = 3) {
  in x: [B, 4, H = 8, W = 8]
  y = x
  if "se" in kinds and k not in [1, 2] {
    y = y -> se: SE()
  }
  z = k in [3]
  in ignored: [B, 2]
  out y -> conv(k, 1)
}
"""
    assert "se.fc1" in ids(text)
    assert "se.fc1" not in ids(text, kinds=["sk"])
    assert "se.fc1" not in ids(text, k=2)
    # `y = x` then `in ignored: [...]` on the next line: a declaration, not `x in ignored`
    assert "ignored" in ids(text)
    with pytest.raises(archdsl.ArchError, match="'in' needs a list, tuple or string on its right"):
        graph(net("  z = 3 in 4\n  out x"))


def test_arguments_may_be_chains_and_fmt_keeps_the_authors_parentheses():
    text = net("  out cat(x -> a: conv(2, 1), x -> b: conv(3, 1) -> relu)")
    assert graph(text).node("cat").shape == (1, 5, 8, 8)
    parenthesised = text.replace("cat(x -> a: conv(2, 1), x -> b: conv(3, 1) -> relu)",
                                 "cat((x -> a: conv(2, 1)), (x -> b: conv(3, 1) -> relu))")
    assert graph(parenthesised).node("cat").shape == (1, 5, 8, 8)
    assert "cat(x -> a: conv(2, 1), x -> b: conv(3, 1) -> relu)" in fmt(parse(text))
    assert "cat((x -> a: conv(2, 1)), (x -> b: conv(3, 1) -> relu))" in fmt(parse(parenthesised))


def test_a_parameter_used_twice_is_one_shared_weight():
    text = """
network Siamese() {
  in a: [B, 3, H = 8, W = 8]
  in b: [B, 3, H = 8, W = 8]
  param w: [4, 3, 3, 3] = 0.1
  d = (conv_with(a, w) -> mean(dims=[2, 3])) - (conv_with(b, w) -> mean(dims=[2, 3]))
  out d ** 2
}
"""
    assert archdsl.check_spec(source=text).totals.params == 4 * 3 * 3 * 3
    model = archdsl.load_spec(source=text)
    assert list(model.state_dict()) == ["w"]
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    w = model.state_dict()["w"]
    f = lambda x: torch.nn.functional.conv2d(x, w, padding=1).mean(dim=(2, 3))  # noqa: E731
    torch.testing.assert_close(model(a, b), (f(a) - f(b)) ** 2)
    model(a, b).sum().backward()
    assert model.w.grad is not None and model.w.grad.abs().sum() > 0


def test_scalar_inputs():
    text = """
block Scale() {
  in x: [B, C, H, W]
  in t: []
  out x * t
}
network N() {
  in x: [B, 4, H = 8, W = 8]
  in temperature: []
  out [x, temperature] -> s: Scale()
}
"""
    g = graph(text)
    assert g.node("temperature").shape == ()
    assert fmt(parse(text)).count("in t: []") == 1
    model = archdsl.load_spec(source=text)
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(model(x, torch.tensor(0.5)), x * 0.5)
    with pytest.raises(archdsl.ArchError, match=re.escape("input 't' expects 0 dims, got shape [1, 4, 8, 8]")):
        graph(text.replace("out [x, temperature] -> s: Scale()", "out [x, x] -> s: Scale()"))


def test_natural_log_and_exp_builtins():
    g = graph(net("  out x -> conv(round(log_e(exp(3.0))) + int(log_e(1)), 1)"))
    assert g.node("conv").shape == (1, 3, 8, 8)
    with pytest.raises(archdsl.ArchError, match="bad arguments to 'log_e'"):
        graph(net("  out x -> conv(int(log_e(0)), 1)"))


def test_builtins_never_shadow_an_op():
    from archdsl.ops import REGISTRY
    from archdsl.semantics.builtins import BUILTINS
    assert not set(BUILTINS) & set(REGISTRY)


def test_imports_aliases_and_the_prelude(tmp_path: Path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "units.arch").write_text(
        "block Wide(k: int = 2) {\n  in x: [B, C, H, W]\n  out x -> c: conv(C * k, 1)\n}\n")
    (tmp_path / "main.arch").write_text("""
import lib.units as u
from lib.units import Wide
import blocks.se
network N() {
  in x: [B, 8, H = 8, W = 8]
  out x -> a: u.Wide() -> b: Wide(3) -> s1: se.SE() -> s2: SE(rd_ratio=0.5)
}
""")
    g = archdsl.load_graph(tmp_path / "main.arch")
    assert g.node("a.c").shape[1] == 16 and g.node("b.c").shape[1] == 48
    assert g.node("s1.fc1").shape[1] == 8  # make_divisible(48 / 16, 8) = 8
    assert g.node("s2.fc1").shape[1] == 24


def test_spec_folder_shadows_the_stdlib(tmp_path: Path):
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "se.arch").write_text(
        "block SE() {\n  in x: [B, C, H, W]\n  out x -> mine: conv(1, 1)\n}\n")
    (tmp_path / "main.arch").write_text(
        "from blocks.se import SE\nnetwork N() {\n  in x: [B, 8, H = 8, W = 8]\n  out x -> s: SE()\n}\n")
    assert "s.mine" in [n.id for n in archdsl.load_graph(tmp_path / "main.arch").nodes()]


def test_unlabeled_parametric_nodes_get_unique_names():
    assert ids(net("  out x -> conv(4, 1) -> conv(4, 1) -> relu")) == ["x", "conv", "conv_1", "relu"]


def test_variants_are_selected_by_name_with_overrides():
    g = archdsl.load_graph("resnet18", num_classes=7)
    assert g.node("fc").shape == (1, 7)
    assert g.variant == "resnet18" and g.references == ["timm/resnet18"]
    g = archdsl.load_graph(stdlib_dir() / "nets" / "resnet.arch", variant="resnet34")
    assert sum(1 for n in g.nodes() if n.op == "conv") == 36


@pytest.mark.parametrize("path", sorted(stdlib_dir().rglob("*.arch")), ids=lambda p: p.name)
def test_stdlib_files_are_canonically_formatted_fixed_points(path: Path):
    text = path.read_text()
    once = fmt(parse(text))
    assert fmt(parse(once)) == once
    comments = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("#")]
    assert all(c in once for c in comments)


def test_catalog_lists_families_variants_and_references():
    entries = {e.name: e for e in archdsl.catalog()}
    resnet = entries["ResNet"]
    assert resnet.file == "nets/resnet.arch" and resnet.kind == "network"
    assert {"resnet18", "resnet50d"} <= {v.name for v in resnet.variants}
    assert "Deep Residual Learning" in resnet.paper
    small = next(v for e in entries.values() for v in e.variants if v.name == "convnext_small")
    assert small.references == ["timm/convnext_small"]
    assert archdsl.load_graph("convnext_small").variant == "convnext_small"
