"""Exports: standalone PyTorch source (`emit_python`, `.py`), `.pt2`, `.onnx`, `.safetensors`.

The source test runs the written file in a separate interpreter where `import archdsl` fails,
loads the compiled model's weights into it strictly, and compares the outputs.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import archdsl
from archdsl import ArchError
from archdsl.export import SUPPORTED_SUFFIXES, ExportNote, emit_python, export, export_all
from archdsl.testing.strategies import spec_cases

SCALE = max(1, int(os.environ.get("ARCHDSL_TEST_SCALE", "1")))

# a block class with a parameter, a buffer and two outputs; a network with two named outputs
MULTI = """
block Two(planes: int) {
  in x: [B, C, H, W]
  param scale: [planes] = 0.5
  buffer offset: [1, planes, 1, 1] = 2.0
  y = x -> conv: conv(planes, 3, bias=false) -> bn
  out a = y * reshape(scale, [planes, 1, 1])
  out b = y + offset
}
network Multi(width: int = 8) {
  in x: [B = 2, 3, H = 16, W = 16]
  param pos: [1, width, 16, 16] = 0.1
  y = x -> stem: [conv(width, 3), bn, relu]
  y = y + pos
  r = y -> two: Two(width)
  s = r.b -> wide: Two(width * 2)
  out feats = r.a
  out logits = s.a + s[1] -> mean(dims=[2, 3]) -> head: linear(10)
}
"""

# instances of one block type with different channel counts: the channel shuffle's sizes
# become constructor arguments the forward reads back
SHUFFLE = """
block Shuf(planes: int) {
  in x: [B, C, H, W]
  out x -> conv1: conv(planes, 1) -> channel_shuffle(2) -> conv2: conv(planes, 1)
}
network N() {
  in x: [B = 2, 4, H = 8, W = 8]
  y = x -> stem: [conv(8, 3), relu, conv(8, 3)]
  out y -> s: [Shuf(8), Shuf(16), Shuf(32)] -> mean(dims=[2, 3])
}
"""

CASES = {
    "resnet18": dict(spec="resnet18", input_shape=(2, 3, 64, 64)),
    "convnext_tiny": dict(spec="convnext_tiny", input_shape=(2, 3, 64, 64)),
    "mobilenetv2_100": dict(spec="mobilenetv2_100", input_shape=(2, 3, 64, 64)),
    "multi": dict(source=MULTI),
}


def compiled(case: str) -> torch.nn.Module:
    kw = dict(CASES[case])
    model = archdsl.load_spec(kw.pop("spec", None), seed=0, **kw)
    with torch.no_grad():  # non-trivial batch norm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def example(model) -> tuple:
    """Random inputs of the declared shapes and dtypes (integer inputs: 0 or 1, valid as class
    labels or token ids)."""
    g = model.arch_graph
    gen = torch.Generator().manual_seed(1)
    out = []
    for i in g.inputs:
        node = g.node(i)
        dtype = getattr(torch, node.dtype)
        out.append(torch.randn(node.shape, generator=gen, dtype=dtype) if dtype.is_floating_point
                   else torch.randint(0, 2, node.shape, generator=gen, dtype=dtype))
    return tuple(out)


def root_class(source: str) -> str:
    return re.search(r"^    model = (\w+)\(\)\.eval\(\)$", source, re.M).group(1)


def assert_same(a, b, atol=1e-6):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=atol)
    else:
        torch.testing.assert_close(b, a, rtol=1e-5, atol=atol)


def run_isolated(cases: dict, work: Path) -> dict:
    """Import each case's source in ONE fresh interpreter that cannot import archdsl, load the
    weights strictly, run the example input; return the outputs by case."""
    for name, (source, state_dict, args) in cases.items():
        (work / f"{name}.py").write_text(source)
        torch.save({"state_dict": state_dict, "args": args, "keys": list(state_dict),
                    "cls": root_class(source)}, work / f"{name}.pt")
    script = textwrap.dedent(f"""
        import importlib.util, sys
        sys.modules["archdsl"] = None          # archdsl is installed (editable) in CI: block it
        try:
            import archdsl
        except ImportError:
            pass
        else:
            raise SystemExit("archdsl is importable")
        import torch
        outs = {{}}
        for name in {sorted(cases)!r}:
            spec = importlib.util.spec_from_file_location(name, name + ".py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            data = torch.load(name + ".pt")
            model = getattr(mod, data["cls"])()
            model.load_state_dict(data["state_dict"], strict=True)
            assert list(model.state_dict()) == data["keys"], name + ": state_dict order differs"
            model.eval()
            with torch.no_grad():
                outs[name] = model(*data["args"])
        torch.save(outs, "outputs.pt")
        print("imported:", sorted(m for m in sys.modules if m.startswith("archdsl")))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported: ['archdsl']" in proc.stdout  # only the blocked entry, nothing loaded
    return torch.load(work / "outputs.pt")


@pytest.fixture(scope="module")
def isolated_runs(tmp_path_factory):
    """case → (the compiled model's outputs, the source's outputs in the isolated interpreter)."""
    cases, want = {}, {}
    for case in CASES:
        model = compiled(case)
        source = emit_python(model)
        args = example(model)
        with torch.no_grad():
            want[case] = model(*args)
        cases[case] = (source, model.state_dict(), args)
    got = run_isolated(cases, tmp_path_factory.mktemp("isolated"))
    return {case: (want[case], got[case], cases[case][0]) for case in CASES}


# ---------------------------------------------------------------------------------------------
# standalone source

@pytest.mark.parametrize("case", list(CASES))
def test_emitted_source_runs_without_archdsl_and_matches(case, isolated_runs):
    want, got, source = isolated_runs[case]
    imports = re.findall(r"^(?:import|from)\s+(\S+)", source, re.M)
    assert imports and all(m == "torch" or m.startswith("torch.") for m in imports)
    assert not re.search(r"\barchdsl\.\w|\bfx\b|GraphModule", source)
    assert_same(want, got)


def test_resnet18_source_reads_like_hand_written_pytorch():
    source = emit_python(archdsl.load_graph("resnet18"))
    assert "class BasicBlock(nn.Module):" in source
    assert "class Downsample(nn.Sequential):" in source       # a chain of its own children
    assert "class Resnet18(nn.Module):" in source
    assert "self.layer1 = nn.Sequential(*[BasicBlock(channels=64) for _ in range(2)])" in source
    assert "self.downsample = Downsample(in_channels=in_channels, out_channels=out_channels)" \
        in source
    forward = source[source.index("    def forward(self, x):\n        x = self.conv1(x)"):]
    for line in ["x = F.max_pool2d(x, 3, stride=2, padding=1)", "x = self.layer4(x)",
                 "x = x.mean((2, 3))", "x = self.fc(x)", "return x"]:
        assert f"        {line}\n" in forward
    body = source[source.index("class BasicBlock("):source.index("class Downsample(")]
    assert "out = out + x" in body and "return out" in body
    compile(source, "resnet18.py", "exec")


def test_source_from_a_graph_equals_source_from_the_model():
    graph = archdsl.load_graph("mobilenetv2_100", input_shape=(1, 3, 64, 64))
    model = archdsl.load_spec("mobilenetv2_100", input_shape=(1, 3, 64, 64))
    assert emit_python(graph) == emit_python(model)
    assert "class Custom(nn.Module):" in emit_python(graph, class_name="Custom")
    with pytest.raises(ArchError, match="not a Python identifier"):
        emit_python(graph, class_name="not valid")
    with pytest.raises(ArchError, match="needs an IR graph"):
        emit_python(torch.nn.Linear(2, 2))


def exec_source(source: str, fresh: bool = False) -> torch.nn.Module:
    """An instance of the source's network class; unless `fresh`, its init rules are skipped
    (the caller loads weights: BigGAN's orthogonal inits alone take minutes)."""
    ns: dict = {"__name__": "emitted"}
    exec(compile(source, "<emitted>", "exec"), ns)
    cls = ns[root_class(source)]
    if not fresh and hasattr(cls, "init_weights"):
        cls.init_weights = lambda self: None
    return cls()


def test_instances_differing_in_constants_share_a_class():
    model = archdsl.load_spec(source=SHUFFLE, seed=0).eval()
    source = emit_python(model)
    assert source.count("class Shuf") == 1
    assert re.search(r"Shuf\(in_channels=8, out_channels=16\b", source)
    # a constant of the forward that differs between instances is kept on the instance
    assert re.search(r"^        self\.(\w+) = \1$", source, re.M)
    emitted = exec_source(source).eval()
    emitted.load_state_dict(model.state_dict(), strict=True)
    x = example(model)
    with torch.no_grad():
        assert_same(model(*x), emitted(*x), atol=0)
    # non-contiguous numbered children (stem.0, stem.2) stay addressable
    assert 'self.stem["2"](x)' in source


def test_training_mode_forward_matches_too():
    model = archdsl.load_spec("resnet18", input_shape=(2, 3, 32, 32), seed=0).train()
    emitted = exec_source(emit_python(model)).train()
    emitted.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    assert_same(model(x), emitted(x), atol=1e-5)
    for k, v in model.state_dict().items():  # batch-norm statistics were updated alike
        torch.testing.assert_close(emitted.state_dict()[k], v)


def _networks() -> list[str]:
    """The first variant of every stdlib network family (the others differ in sizes only)."""
    return [e.variants[0].name for e in archdsl.catalog() if e.kind == "network" and e.variants]


@pytest.mark.parametrize("variant", _networks())
def test_every_stdlib_network_round_trips_through_source(variant):
    try:
        model = archdsl.load_spec(variant, input_shape=(2, 3, 64, 64), seed=0)
    except ArchError:  # a network that needs its own input size
        model = archdsl.load_spec(variant, seed=0)
    model.eval()
    source = emit_python(model)
    emitted = exec_source(source).eval()
    emitted.load_state_dict(model.state_dict(), strict=True)
    x = example(model)
    with torch.no_grad():
        torch.manual_seed(0)  # networks that draw (MAE's masking) draw the same in both
        expected = model(*x)
        torch.manual_seed(0)
        assert_same(expected, emitted(*x), atol=0)


def test_holders_with_parameters_and_names_that_are_not_attributes():
    """A container holding both modules and a parameter, under a numeric name and a name that
    nn.ModuleDict reserves (`keys`), written with the `_holder` helper."""
    from archdsl.ir.graph import Graph, Node
    from archdsl.lower.build import build
    from archdsl.ops import REGISTRY
    g = Graph("Hand")
    g.add(Node("x", None, {}, [], (1, 4, 8, 8), kind="input"))
    g.add(Node("seq.0", "conv", REGISTRY["conv"].Attrs(out=4, kernel=3), ["x"], (1, 4, 8, 8),
               block="seq"))
    g.add(Node("seq.gamma", None, {"init": 0.5}, [], (1, 4, 1, 1), block="seq", kind="param"))
    g.add(Node("seq.keys", "conv", REGISTRY["conv"].Attrs(out=4, kernel=1), ["seq.0"],
               (1, 4, 8, 8), block="seq"))
    g.add(Node("mul", "mul", REGISTRY["mul"].Attrs(), ["seq.keys", "seq.gamma"], (1, 4, 8, 8)))
    g.inputs, g.outputs = ["x"], {"out": "mul"}
    model = build(g, seed=0)
    model.arch_graph = g
    source = emit_python(model)
    assert "def _holder(" in source and 'getattr(self.seq, "0")(x)' in source
    emitted = exec_source(source)
    emitted.load_state_dict(model.state_dict(), strict=True)
    assert list(emitted.state_dict()) == list(model.state_dict())
    x = torch.randn(1, 4, 8, 8)
    assert_same(model(x), emitted(x), atol=0)


def test_parametrized_modules_are_written_with_their_parametrization():
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm
    model = archdsl.load_spec(source="""
network P() {
  in x: [B = 2, 3, H = 8, W = 8]
  out x -> conv: conv(4, 3) -> mean(dims=[2, 3]) -> head: linear(5)
}""", seed=0)
    spectral_norm(model.conv, n_power_iterations=2, eps=1e-6)
    weight_norm(model.head)
    source = emit_python(model)
    assert "torch.nn.utils.parametrizations.spectral_norm(" in source
    assert "torch.nn.utils.parametrizations.weight_norm(nn.Linear(4, 5)" in source
    emitted = exec_source(source)
    emitted.load_state_dict(model.state_dict(), strict=True)
    assert list(emitted.state_dict()) == list(model.state_dict())
    x = example(model)
    model.eval(), emitted.eval()
    with torch.no_grad():
        assert_same(model(*x), emitted(*x), atol=0)


@settings(max_examples=25 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(spec_cases())
def test_generated_specs_round_trip_through_source(case):
    model = archdsl.load_spec(source=case.text, seed=0).eval()
    emitted = exec_source(emit_python(model)).eval()
    emitted.load_state_dict(model.state_dict(), strict=True)
    assert list(emitted.state_dict()) == list(model.state_dict())
    x = torch.randn(case.input_shape)
    with torch.no_grad():
        assert_same(model(x), emitted(x), atol=0)


# ---------------------------------------------------------------------------------------------
# export()

def test_export_py_writes_the_emitted_source(tmp_path):
    model = compiled("resnet18")
    out = export(model, tmp_path / "resnet18.py")
    assert out == tmp_path / "resnet18.py"
    assert out.read_text() == emit_python(model)
    with pytest.raises(ArchError, match="needs a model compiled by archdsl"):
        export(torch.nn.Linear(2, 2), tmp_path / "linear.py")


def at_size(case: str, model, shape) -> torch.nn.Module:
    """The case's network elaborated at another input shape, with `model`'s weights."""
    kw = dict(CASES[case])
    kw.pop("input_shape", None)
    other = archdsl.load_spec(kw.pop("spec", None), input_shape=shape, **kw)
    other.load_state_dict(model.state_dict(), strict=True)
    return other.eval()


def random_input(shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("case", ["resnet18", "multi"])
def test_export_pt2_runs_at_two_batch_sizes_and_equals_the_model(case, tmp_path):
    """resnet18 may vary in batch and image size; Multi's `pos` parameter [1, 8, 16, 16] fixes
    its image size (a note says so), not its batch."""
    model = compiled(case).train()
    written = export_all(model, [tmp_path / "model.pt2"])[0]
    assert model.training and all(m.training for m in model.modules())  # mode restored
    program = torch.export.load(str(written.path)).module()
    if case == "resnet18":
        assert written.dynamic == ["batch", "height", "width"] and written.notes == []
        shapes = [(1, 3, 64, 64), (3, 3, 96, 80)]
    else:
        assert written.dynamic == ["batch"]
        assert written.notes == ["height, width fixed at 16x16: the spec does not elaborate at "
                                 "another size (add: shapes [2, 8, 32, 16] and [1, 8, 16, 16] "
                                 "do not broadcast)"]
        shapes = [(1, 3, 16, 16), (5, 3, 16, 16)]
    for shape in shapes:
        x = random_input(shape)
        with torch.no_grad():
            assert_same(at_size(case, model, shape)(x), program(x), atol=1e-5)
    if case == "multi":
        with pytest.raises(Exception, match="16"):  # the fixed size is guarded
            program(random_input((2, 3, 32, 32)))


FIXED_BATCH = """
network N() {
  in x: [B = 2, 4, H = 4, W = 4]
  out x -> reshape([2, 4, 16]) -> mean(dims=[2])
}"""


def test_a_spec_that_fixes_the_batch_exports_with_a_note(tmp_path):
    fixed = archdsl.load_spec(source=FIXED_BATCH)
    with pytest.warns(ExportNote) as notes:
        program = torch.export.load(str(export(fixed, tmp_path / "fixed.pt2"))).module()
    assert [str(n.message).split(":")[1] for n in notes] == [" batch fixed at 2",
                                                             " height, width fixed at 4x4"]
    assert "cannot reshape [3, 4, 4, 4] (192 elements) to [2, 4, 16]" in str(notes[0].message)
    x = random_input((2, 4, 4, 4))
    assert_same(fixed(x), program(x))
    flat = archdsl.load_spec(source=FIXED_BATCH.replace("[2, 4, 16]", "[B, 4, H * W]"))
    written = export_all(flat, [tmp_path / "flat.pt2"])[0]
    assert written.dynamic == [] and written.notes == [  # reshape writes out every size
        f"{axes}: the generated code holds a size computed from it "
        "(`reshape = x.reshape(2, 4, 16)`)" for axes in ("batch fixed at 2",
                                                       "height, width fixed at 4x4")]
    with pytest.raises(ArchError, match="cannot export with a dynamic batch size"):
        export(fixed, tmp_path / "fixed.pt2", dynamic="batch")
    with pytest.raises(ArchError, match="unknown dynamic mode"):
        export(fixed, tmp_path / "fixed.pt2", dynamic="yes")


def test_same_padding_exports_with_a_dynamic_batch_and_fixed_spatial_sizes(tmp_path):
    """same_pad follows the size at run time (the module takes any size), but torch.export's
    solver takes minutes on its remainders through a network: the export keeps H, W, says so."""
    spec = "network N() {\n  in x: [B = 2, 3, H = 9, W = 9]\n  out x -> same_pad(3, 2) -> conv(4, 3, stride=2, pad=0)\n}\n"
    model = archdsl.load_spec(source=spec, seed=0).eval()
    written = export_all(model, [tmp_path / "s.pt2"])[0]
    assert written.dynamic == ["batch"]
    assert written.notes == ["spatial sizes fixed: SAME padding (`same_pad`) follows the size by a "
                             "remainder that makes torch.export's symbolic sizes minutes to solve"]
    program = torch.export.load(str(written.path)).module()
    x = random_input((3, 3, 9, 9))
    with torch.no_grad():
        assert_same(model(x), program(x))
        assert model(random_input((1, 3, 10, 10))).shape == (1, 4, 5, 5)


def test_export_pt2_of_a_graph_and_of_any_module(tmp_path):
    graph = archdsl.load_graph(source=MULTI)
    with pytest.warns(ExportNote, match="height, width fixed at 16x16"):
        program = torch.export.load(str(export(graph, tmp_path / "g.pt2", seed=3)))
    model = archdsl.load_spec(source=MULTI, seed=3).eval()
    x = example(model)
    with torch.no_grad():
        assert_same(model(*x), program.module()(*x))
    lin = torch.nn.Linear(3, 2)
    with pytest.raises(ArchError, match="needs an example input"):
        export(lin, tmp_path / "lin.pt2")
    export(lin, tmp_path / "lin.pt2", example_input=torch.randn(4, 3))
    with pytest.raises(ArchError, match="tensor or a tuple of tensors"):
        export(lin, tmp_path / "lin.pt2", example_input=[1, 2])


def test_export_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open
    model = compiled("multi")
    path = export(model, tmp_path / "w.safetensors")
    loaded = st.load_file(str(path))
    want = model.state_dict()
    assert loaded.keys() == want.keys()
    for k in want:
        assert torch.equal(loaded[k], want[k])
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["archdsl.network"] == "Multi"
    # the weights load into the emitted source strictly
    emitted = exec_source(emit_python(model))
    emitted.load_state_dict(loaded, strict=True)
    # a graph is built (with the seed) first
    export(archdsl.load_graph(source=MULTI), tmp_path / "g.safetensors", seed=0)
    ref = archdsl.load_spec(source=MULTI, seed=0).state_dict()
    assert all(torch.equal(st.load_file(str(tmp_path / "g.safetensors"))[k], v)
               for k, v in ref.items())


def test_missing_optional_packages_name_the_extra(tmp_path, monkeypatch):
    model = compiled("multi")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ArchError, match=r"archdsl\[safetensors\]"):
        export(model, tmp_path / "w.safetensors")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(ArchError, match=r"archdsl\[onnx\]"):
        export(model, tmp_path / "m.onnx")


def test_unknown_suffix_lists_the_supported_ones(tmp_path):
    with pytest.raises(ArchError) as err:
        export(compiled("multi"), tmp_path / "model.tflite")
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in str(err.value)
    with pytest.raises(ArchError, match="does not exist"):
        export(compiled("multi"), tmp_path / "no" / "such" / "model.pt2")


ONNX = importlib.util.find_spec("onnx") is not None and \
    importlib.util.find_spec("onnxruntime") is not None
NO_ONNX = "onnx / onnxruntime not installed (pip install 'archdsl[onnx]')"


# a small network whose every input size may vary (and a deployed form of it: BN folded)
SMALL = """
network Small(width: int = 8) {
  in x: [B, 3, H = 32, W = 32]
  y = x -> stem: [conv(width, 3, stride=2, bias=false), bn, relu]
  y = y + (y -> body: [conv(width, 3, bias=false), bn, relu])
  out y -> mean(dims=[2, 3]) -> head: linear(10)
}"""


@pytest.mark.skipif(not ONNX, reason=NO_ONNX)
@pytest.mark.parametrize("deploy", [False, True], ids=["trained", "deployed"])
def test_export_onnx_runs_at_two_batch_and_image_sizes(deploy, tmp_path):
    import onnxruntime as ort
    model = archdsl.load_spec(source=SMALL, seed=0, deploy=deploy).eval()
    written = export_all(model, [tmp_path / "small.onnx"])[0]
    assert written.dynamic == ["batch", "height", "width"]
    session = ort.InferenceSession(str(written.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    for shape in [(1, 3, 32, 32), (4, 3, 48, 40)]:
        x = random_input(shape)
        other = archdsl.load_spec(source=SMALL, input_shape=shape, deploy=deploy).eval()
        other.load_state_dict(model.state_dict(), strict=True)
        got = session.run(None, {"x": x.numpy()})[0]
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), other(x), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not ONNX, reason=NO_ONNX)
@pytest.mark.parametrize("case", [pytest.param("resnet18", marks=pytest.mark.slow), "multi"])
def test_export_onnx_runs_in_onnxruntime(case, tmp_path):
    """Named inputs and outputs; Multi's batch varies (its image size is fixed by `pos`)."""
    import onnxruntime as ort
    model = compiled(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportNote)
        path = export(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph = model.arch_graph
    assert [i.name for i in session.get_inputs()] == list(graph.inputs)
    assert [o.name for o in session.get_outputs()] == list(graph.outputs)
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (2, 5):
        args = (random_input((batch, *graph.node("x").shape[1:])),)
        outs = session.run(None, {i: a.numpy() for i, a in zip(graph.inputs, args)})
        with torch.no_grad():
            want = model(*args)
        want = want if isinstance(want, dict) else {"out": want}
        for name, got in zip(graph.outputs, outs):
            torch.testing.assert_close(torch.from_numpy(got), want[name], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# compile -o: one model, several files, reproducible with --seed

def run_cli(*args):
    from click.testing import CliRunner

    from archdsl.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])


def compile_to(tmp_path: Path, folder: str, *args: str) -> list[Path]:
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    out = tmp_path / folder
    out.mkdir()
    files = [out / f"small{suffix}" for suffix in (".py", ".pt2", ".onnx", ".safetensors")]
    argv = ["compile", spec, *args]
    for f in files:
        argv += ["-o", f]
    result = run_cli(*argv)
    assert result.exit_code == 0, result.output
    for f in files:
        assert f"wrote {f}" in result.output
    assert f"wrote {files[1]} (dynamic: batch, height, width)" in result.output
    return files


@pytest.mark.skipif(not ONNX, reason=NO_ONNX)
def test_compile_writes_every_output_from_one_model_byte_identical_for_a_seed(tmp_path):
    from safetensors.torch import load_file
    first = compile_to(tmp_path, "a", "--seed", "7")
    again = compile_to(tmp_path, "b", "--seed", "7")
    for a, b in zip(first, again):
        assert a.read_bytes() == b.read_bytes(), a.name
    import zipfile
    assert zipfile.ZipFile(first[1]).testzip() is None  # the .pt2 archive's CRCs hold
    # all four files come from one model: the seed's weights
    want = archdsl.load_spec(source=SMALL, seed=7).state_dict()
    weights = load_file(str(first[3]))
    assert weights.keys() == want.keys()
    assert all(torch.equal(weights[k], want[k]) for k in want)
    program = torch.export.load(str(first[1]))
    assert all(torch.equal(program.state_dict[k], want[k]) for k in program.state_dict)
    import onnx
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(first[2])).graph.initializer}
    assert torch.equal(torch.from_numpy(stored["head.weight"].copy()), want["head.weight"])
    emitted = exec_source(first[0].read_text())
    emitted.load_state_dict(weights, strict=True)
    other = tmp_path / "seed8.safetensors"
    assert run_cli("compile", tmp_path / "small.arch", "--seed", "8", "-o", other).exit_code == 0
    assert other.read_bytes() != first[3].read_bytes()


def test_compile_dtype_applies_to_safetensors(tmp_path):
    from safetensors import safe_open
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    out = tmp_path / "w.safetensors"
    result = run_cli("compile", spec, "--dtype", "float16", "-o", out)
    assert result.exit_code == 0, result.output
    want = archdsl.load_spec(source=SMALL, seed=0).state_dict()
    with safe_open(str(out), "pt") as f:
        for k, v in want.items():
            stored = f.get_tensor(k)
            assert stored.dtype == (torch.float16 if v.is_floating_point() else v.dtype), k
            assert torch.equal(stored, v.to(stored.dtype))
    assert "num_batches_tracked" in " ".join(want)  # an integer buffer kept its dtype


# ---------------------------------------------------------------------------------------------
# model.py starts where load_spec starts

def _stats(state: dict) -> dict:
    """Per floating tensor [n, mean, std] (as tests/fixtures/init), leaving out single elements
    (random or constant cannot be told from one value)."""
    return {k: [t.numel(), t.double().mean().item(), t.double().std().item()]
            for k, t in state.items() if t.is_floating_point() and t.numel() > 1}


INIT_SAMPLE = ["resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "mobilenetv3_small_050",
               "regnetx_002"]


def _init_variants():
    from test_init_stats import FIXTURES, _variant_of
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        variant = _variant_of(json.loads(path.read_text())["reference"])
        marks = [] if variant in INIT_SAMPLE else [pytest.mark.slow]
        out.append(pytest.param(variant, path, marks=marks, id=variant))
    return out


@pytest.mark.parametrize("variant, fixture", _init_variants())
def test_emitted_class_starts_from_the_spec_init(variant, fixture, one_thread):
    """The written class's fresh tensors have load_spec's statistics (constants exactly: ResNet's
    zero-initialised last BN, zero biases), and so the reference library's."""
    from test_init_stats import mismatches
    model = archdsl.load_spec(variant, seed=0)
    source = emit_python(model)
    assert ("self.init_weights()" in source) == bool(model.arch_graph.inits)
    torch.manual_seed(1)
    fresh = exec_source(source, fresh=True).state_dict()
    want = model.state_dict()
    del model
    assert list(fresh) == list(want)
    bad = mismatches(fresh, _stats(want))
    assert not bad, "\n".join(bad[:12])
    reference = json.loads(fixture.read_text())["stats"]
    bad = mismatches(fresh, {k: v for k, v in reference.items() if v[0] > 1})
    assert not bad, "\n".join(bad[:12])


def test_init_rules_are_written_as_readable_loops():
    source = emit_python(archdsl.load_graph("resnet50"))
    method = source[source.index("    def init_weights(self):"):source.index('if __name__')]
    assert "        for m in self.modules():\n            if isinstance(m, nn.Conv2d):\n" \
           '                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")' \
        in method
    assert 'if name.endswith(".bn3.weight"):\n                nn.init.zeros_(t)' in method
    grouped = emit_python(archdsl.load_graph("efficientnet_b0"))
    assert "fan_out = m.weight.shape[0] // m.groups * m.weight[0][0].numel()" in grouped
    plain = emit_python(archdsl.load_spec(source=SMALL))
    assert "init_weights" not in plain  # no rules: torch's defaults, as load_spec


# ---------------------------------------------------------------------------------------------
# the written file's self-test

SELF_TEST = {  # small variants of several families, token ids among the inputs
    "resnet18": dict(input_shape=(1, 3, 64, 64)),
    "mobilenetv3_small_050": dict(input_shape=(1, 3, 64, 64)),
    "vit_tiny_patch16_224": {},
    "transformer_base": dict(vocab=1000, layers=2),
    "multi": dict(source=MULTI),
}


def test_written_files_pass_their_own_self_test(tmp_path):
    """`python model.py` builds the class, runs it on inputs of the declared dtypes (integer token
    ids for the Transformer) and checks the output shapes."""
    for name, kw in SELF_TEST.items():
        kw = dict(kw)
        graph = archdsl.load_graph(None if "source" in kw else name, **kw)
        (tmp_path / f"{name}.py").write_text(emit_python(graph))
    script = textwrap.dedent(f"""
        import runpy, torch
        torch.set_num_threads(1)
        for name in {sorted(SELF_TEST)!r}:
            runpy.run_path(name + ".py", run_name="__main__")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:len(SELF_TEST)] == [  # in the order of the names
        "(1, 1000)", "{'feats': (2, 8, 16, 16), 'logits': (2, 10)}", "(1, 1000)",
        "(1, 64, 1000)", "(1, 1000)"]
    source = (tmp_path / "transformer_base.py").read_text()
    assert "torch.randint(0, 2, (1, 64), dtype=torch.int64)" in source


def test_init_rules_on_spectral_norm_weights_refresh_its_estimate():
    """An init rule that rewrites a spectral-normalised weight (BigGAN's orthogonal init) leaves
    u, v stale: the written init_weights re-estimates them, as load_spec does, so a fresh
    instance's eval-mode weight has spectral norm 1."""
    model = archdsl.load_spec(source="""
network SN() {
  in x: [B = 2, 3, H = 8, W = 8]
  init "sn_conv:parametrizations.weight.original" = orthogonal(gain=3.0)
  out x -> c: sn_conv(8, 3) -> mean(dims=[2, 3])
}""", seed=0)
    source = emit_python(model)
    assert "p._power_method(matrix, 15)" in source
    torch.manual_seed(0)
    fresh = exec_source(source, fresh=True).eval()
    for m in (model.eval(), fresh):
        with torch.no_grad():
            sigma = torch.linalg.matrix_norm(m.c.weight.flatten(1), ord=2)
        assert abs(sigma.item() - 1.0) < 1e-3
