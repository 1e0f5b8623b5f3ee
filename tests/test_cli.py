"""The command line (archdsl/cli.py) and the generated README reference."""
from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import archdsl
from archdsl import docs
from archdsl.cli import main
from archdsl.syntax import fmt, parse

ROOT = Path(__file__).resolve().parent.parent

SMALL = """\
# A small test network: a residual block repeated, then a classifier.
block Res(width: int) {
  in x: [B, C, H, W]
  y = x -> conv1: conv(width, 3, bias=false) -> bn1: bn -> relu -> conv2: conv(C, 3)
  out relu(x + y)
}

network Small(width: int = 4, depth: int = 2, num_classes: int = 5) {
  in x: [B, 3, H = 16, W = 16]
  y = x -> stem: conv(8, 3) -> blocks: repeat(depth) { Res(width) }
  out y -> mean(dims=[2, 3]) -> head: linear(num_classes)
}

variant small = Small()
variant deeper = Small(depth=3)
"""

UNFORMATTED = """\
network   Tiny( n :int=3 ) {
  in x: [B, 3, H = 8, W = 8]
     out x->conv( n, 1 )   # keep me
}
"""


def _runner() -> CliRunner:
    # click >= 8.2 keeps stderr apart by default; 8.1 needs mix_stderr=False
    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


def run(*args: str, input: str | None = None, columns: int | None = None):
    """The CLI as a pipe would see it (no terminal width), or as a terminal `columns` wide."""
    env = {"COLUMNS": str(columns) if columns else None}
    return _runner().invoke(main, [str(a) for a in args], input=input, env=env)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.arch"
    path.write_text(SMALL)
    return path


@pytest.fixture
def bad_syntax(tmp_path: Path) -> Path:
    path = tmp_path / "broken.arch"
    path.write_text("network N() {\n  in x: [B, 3, H = 8, W = 8]\n  out x -> conv(8, 3) $ relu\n}\n")
    return path


@pytest.fixture
def bad_shape(tmp_path: Path) -> Path:
    path = tmp_path / "shapes.arch"
    path.write_text("network N() {\n  in x: [B, 3, H = 8, W = 8]\n"
                    "  out x -> conv(8, 3, groups=2)\n}\n")
    return path


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ---- help and misuse -------------------------------------------------------------------------

def test_help_lists_every_command():
    result = run("--help")
    assert result.exit_code == 0
    for name in ("compile", "check", "cost", "fmt", "list"):
        assert name in result.stdout
    for name in ("compile", "check", "cost", "fmt", "list"):
        sub = run(name, "--help")
        assert sub.exit_code == 0, sub.output
        assert "Usage: archdsl " + name in sub.stdout


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert archdsl.__version__ in result.stdout


@pytest.mark.parametrize("args", [
    ["bogus-command"],
    ["compile"],                                      # SPEC missing
    ["cost", "x.arch", "--input", "1x3xA"],           # not a shape
    ["cost", "x.arch", "--input", "1x0x8x8"],         # not positive
    ["cost", "x.arch", "--set", "width"],             # not NAME=VALUE
    ["cost", "x.arch", "--set", "variant=3"],         # a name the API reserves
    ["cost", "x.arch", "--depth", "0"],
    ["cost", "x.arch", "--dtype", "int7"],
    ["fmt"],                                          # FILES missing
])
def test_misuse_exits_2(args):
    result = run(*args)
    assert result.exit_code == 2, result.output
    _no_traceback(result)


# ---- compile / cost / check --------------------------------------------------------------------

def test_compile_prints_table_and_totals(small):
    result = run("compile", small)
    assert result.exit_code == 0, result.output
    out = result.stdout
    report = archdsl.check_spec(small)
    for row in ("stem ", "blocks  2× Res", "head "):   # by default, a row per top-level part
        assert row in out
    assert "blocks.0.conv1" not in out
    assert "[1, 5]" in out                            # the output shape
    assert f"{report.totals.params:,}" in out
    assert f"{report.totals.macs:,}" in out
    assert "what most papers call FLOPs" in out
    assert "GraphModule" in out
    _no_traceback(result)


def test_compile_json_schema(small):
    result = run("compile", small, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"name", "variant", "references", "batch", "inputs", "outputs", "totals", "nodes",
            "module"} <= set(data)
    assert set(data["totals"]) == {"params", "frozen_params", "buffers", "flops", "macs",
                                   "other_flops", "activation_bytes", "param_bytes", "buffer_bytes"}
    assert data["totals"]["param_bytes"] == 4 * data["module"]["params"]
    node = data["nodes"][1]
    assert {"path", "op", "shape", "params", "buffers", "flops", "macs", "other_flops",
            "activation_bytes", "receptive_field", "stride", "block"} <= set(node)
    assert {"class", "build_seconds", "params", "buffers", "submodules", "fx_nodes"} <= set(data["module"])
    assert data["variant"] == "small"
    assert data["inputs"] == {"x": [1, 3, 16, 16]}
    assert data["outputs"] == {"out": [1, 5]}
    assert data["totals"]["macs"] == data["totals"]["flops"] // 2
    assert data["module"]["params"] == data["totals"]["params"]
    assert data == {**archdsl.check_spec(small).to_dict(), "module": data["module"]}


def test_cost_json_equals_the_api(small):
    result = run("cost", small, "--json", "--variant", "deeper", "--set", "num_classes=7",
                 "--input", "2x3x32x32")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = archdsl.check_spec(small, "deeper", input_shape=(2, 3, 32, 32),
                                  num_classes=archdsl.SpecText("7")).to_dict()
    assert data == expected
    assert data["inputs"] == {"x": [2, 3, 32, 32]} and data["outputs"] == {"out": [2, 7]}
    assert any(n["path"] == "blocks.2.conv1" for n in data["nodes"])


def test_spec_from_stdin(small):
    result = run("cost", "-", "--json", "--variant", "deeper", input=small.read_text())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"] == archdsl.check_spec(small, "deeper").to_dict()["totals"]


def test_set_values_are_spec_expressions(small):
    result = run("cost", small, "--json", "--set", "width=2 * 3", "--set", "depth=len([1, 2, 3])")
    assert result.exit_code == 0, result.output
    nodes = {n["path"]: n for n in json.loads(result.stdout)["nodes"]}
    assert nodes["blocks.0.conv1"]["shape"][1] == 6
    assert "blocks.2.conv1" in nodes


def test_depth_groups_sum_to_totals(small):
    result = run("cost", small, "--json", "--depth", "1")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    groups = {g["path"]: g for g in data["groups"]}
    assert list(groups) == ["x", "stem", "blocks", "mean", "head"]
    for key in ("params", "flops", "other_flops", "activation_bytes"):
        assert sum(g[key] for g in data["groups"]) == data["totals"][key]
    assert groups["blocks"]["op"] == "2× Res"
    assert groups["blocks"]["shape"] == [1, 8, 16, 16]

    result = run("cost", small, "--json", "--depth", "2")
    paths = [g["path"] for g in json.loads(result.stdout)["groups"]]
    assert "blocks.0" in paths and "blocks.1" in paths

    table = run("cost", small, "--depth", "1")
    assert table.exit_code == 0
    assert "2× Res" in table.stdout and "blocks.0.conv1" not in table.stdout
    assert table.stdout == run("cost", small).stdout          # depth 1 is the default
    for full in (run("cost", small, "--depth", "all"), run("cost", small, "--full")):
        assert full.exit_code == 0
        assert "blocks.0.conv1" in full.stdout and "blocks.1.bn1" in full.stdout


def test_check_prints_ok_and_totals(small):
    result = run("check", small)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK")
    assert f"{archdsl.check_spec(small).totals.params:,}" in result.stdout
    data = json.loads(run("check", small, "--json").stdout)
    assert data["ok"] is True and "nodes" not in data and "totals" in data


def test_check_and_cost_do_not_import_torch(small):
    code = ("import sys; from archdsl.cli import main\n"
            "for cmd in ('check', 'cost'):\n"
            "    try:\n"
            f"        main([cmd, {str(small)!r}])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---- errors ------------------------------------------------------------------------------------

def test_syntax_error_points_at_source(bad_syntax):
    for cmd in ("compile", "check", "cost"):
        result = run(cmd, bad_syntax)
        assert result.exit_code == 1, result.output
        err = result.stderr
        assert err.startswith("error: ")
        assert "broken.arch:3:23" in err
        assert "^" in err
        _no_traceback(result)


def test_shape_error_points_at_source(bad_shape):
    result = run("check", bad_shape)
    assert result.exit_code == 1
    assert "shapes.arch:3:" in result.stderr and "^" in result.stderr
    assert "groups" in result.stderr
    _no_traceback(result)


def test_user_errors_exit_1(small, tmp_path):
    cases = [
        (["compile", tmp_path / "missing.arch"], "no such spec file"),
        (["check", "no_such_variant_anywhere"], "no spec file or stdlib variant"),
        (["check", small, "--variant", "smal"], "did you mean 'small'"),
        (["check", small, "--set", "nope=1"], "no parameter 'nope'"),
        (["check", small, "--set", "width=1 +"], "<--set>:1:"),
        (["check", small, "--set", "width=\"wide\""], "must be int"),
        (["check", small, "--input", "1x3x16"], "dims"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        _no_traceback(result)


def test_internal_error_exits_3_without_traceback(small, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")
    monkeypatch.setattr(archdsl, "load_graph", boom)
    monkeypatch.delenv("ARCHDSL_TRACEBACK", raising=False)
    result = run("check", small)
    assert result.exit_code == 3
    assert "internal error: RuntimeError: kaboom" in result.stderr
    assert "ARCHDSL_TRACEBACK=1" in result.stderr
    _no_traceback(result)


# ---- fmt -------------------------------------------------------------------------------------------

def test_fmt_check_then_rewrite(tmp_path):
    path = tmp_path / "ugly.arch"
    path.write_text(UNFORMATTED)
    result = run("fmt", "--check", path)
    assert result.exit_code == 1
    assert f"would reformat {path}" in result.stdout
    assert path.read_text() == UNFORMATTED              # --check changes nothing

    result = run("fmt", path)
    assert result.exit_code == 0, result.output
    new = path.read_text()
    assert new != UNFORMATTED
    assert "# keep me" in new
    assert new == fmt(parse(UNFORMATTED))

    result = run("fmt", "--check", path)
    assert result.exit_code == 0, result.output
    assert "would reformat" not in result.stdout


def test_fmt_folder_and_stdin(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.arch").write_text(UNFORMATTED)
    (tmp_path / "b.arch").write_text(fmt(parse(UNFORMATTED)))
    result = run("fmt", "--check", tmp_path)
    assert result.exit_code == 1
    assert "a.arch" in result.stdout and "b.arch" not in result.stdout

    result = run("fmt", "-", input=UNFORMATTED)
    assert result.exit_code == 0
    assert result.stdout == fmt(parse(UNFORMATTED))


def test_fmt_errors_exit_1(tmp_path, bad_syntax):
    good = tmp_path / "good.arch"
    good.write_text(UNFORMATTED)
    result = run("fmt", bad_syntax, good, tmp_path / "missing.arch")
    assert result.exit_code == 1
    assert "broken.arch:3:23" in result.stderr and "^" in result.stderr
    assert "missing.arch" in result.stderr
    assert good.read_text() != UNFORMATTED               # the good file was still formatted
    _no_traceback(result)


# ---- list and the stdlib -------------------------------------------------------------------------

def test_list_json_matches_the_catalog():
    result = run("list", "--json", "--no-costs")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    families = data["families"]
    assert [f["file"] for f in families] == [e.file for e in archdsl.catalog()]
    for f in families:
        assert {"name", "kind", "file", "paper", "variants"} <= set(f)
        for v in f["variants"]:
            assert {"name", "references"} <= set(v)


def test_list_with_costs():
    result = run("list", "--json", "--costs", "resnet5*", "mobilenetv1_075", "moco_v1")
    assert result.exit_code == 0, result.stderr
    variants = {v["name"]: v for f in json.loads(result.stdout)["families"] for v in f["variants"]}
    assert variants["resnet50"]["references"] == ["timm/resnet50"]
    assert variants["resnet50"]["params"] == 25_557_032
    assert variants["resnet50"]["macs"] == variants["resnet50"]["flops"] // 2
    assert variants["resnet50"]["status"] == "reference"
    assert variants["mobilenetv1_075"]["status"] == "paper figure"
    assert variants["moco_v1"]["status"] == "topology" and "params" not in variants["moco_v1"]
    assert set(variants) == {"resnet50", "resnet50d", "resnet50_dcn", "resnet50_dcnv2",
                             "mobilenetv1_075", "moco_v1"}
    table = run("list", "resnet50", "--costs")
    assert table.exit_code == 0 and "resnet50" in table.stdout and "timm" in table.stdout
    assert "25.6M" in table.stdout and "4.09G" in table.stdout


def test_compile_on_the_meta_device_builds_the_structure_only(small):
    result = run("compile", small, "--json", "--device", "meta")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["module"]["params"] == data["totals"]["params"]   # counted from meta tensors
    bad = run("compile", small, "--device", "gpu0")
    assert bad.exit_code != 0 and "unknown device 'gpu0'" in bad.output + bad.stderr


def test_compile_stdlib_variant_by_name():
    result = run("compile", "resnet18", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["references"] == ["timm/resnet18"]
    assert data["totals"]["params"] == data["module"]["params"] == 11_689_512
    table = run("cost", "resnet50", "--depth", "1")
    assert table.exit_code == 0
    for name in ("layer1", "layer4", "Bottleneck", "25,557,032"):
        assert name in table.stdout


# ---- topologies -------------------------------------------------------------------------------------

ENC = """\
network Enc(dim: int = 8) {
  in x: [B, 3, H, W]
  out x -> conv1: conv(4, 3) -> relu -> mean(dims=[2, 3]) -> fc: linear(dim)
}
"""

TOPOLOGY = ENC + """
topology Tiny(K: int = 16, m: float = 0.9) {
  in x_q: [B = 2, 3, H = 8, W = 8]
  in x_k: [B, 3, H, W]
  net query = Enc()
  net key = ema(query, m)
  state queue: [8, K] = "normal_l2"
  state queue_ptr: [] = 0 as int64
  phase train(update=[query]) {
    q = x_q -> query -> l2_normalize(dim=1)
    k = x_k -> key -> l2_normalize(dim=1)
    loss = info_nce(q, k, queue, 0.07)
    after enqueue(queue, queue_ptr, k)
  }
}

variant tiny_moco = Tiny()
"""


@pytest.fixture
def topology(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_topo.arch"
    path.write_text(TOPOLOGY)
    return path


def test_topology_check_cost_compile(topology):
    enc = archdsl.check_spec(source=ENC, input_shape=(2, 3, 8, 8)).totals
    for cmd in ("check", "cost", "compile"):
        result = run(cmd, topology, "--json", "--set", "K=32")
        assert result.exit_code == 0, (cmd, result.output)
        data = json.loads(result.stdout)
        assert data["kind"] == "topology" and data["variant"] == "tiny_moco"
        assert set(data["nets"]) == {"query", "key"}
        assert data["nets"]["key"]["twin"]["source"] == "query"
        assert data["nets"]["query"]["network"] == "Enc"
        assert data["nets"]["query"]["calls"][0]["totals"]["params"] == enc.params
        assert data["nets"]["query"]["calls"][0]["totals"]["macs"] == enc.macs
        assert data["states"]["queue"]["shape"] == [8, 32]
        assert data["phases"]["train"]["update"] == ["query"]
        assert data["phases"]["train"]["after"] == ["enqueue"]
        if cmd == "compile":
            assert data["module"]["class"] == "TopologyModule"
            assert data["module"]["trainable_params"] == enc.params
            assert data["module"]["params"] == 2 * enc.params        # the twin is frozen
    table = run("check", topology)
    assert table.exit_code == 0
    assert table.stdout.startswith("OK") and "ema of query" in table.stdout and "phase  train" in table.stdout


def test_stdlib_topology_by_name():
    result = run("check", "moco_v2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "topology" and set(data["nets"]) >= {"query", "key"}
    listing = json.loads(run("list", "--json", "--no-costs").stdout)
    kinds = {f["name"]: f["kind"] for f in listing["families"]}
    assert kinds["MoCo"] == "topology"


# ---- a real process ---------------------------------------------------------------------------------

def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("ARCHDSL_TRACEBACK", None)
    return env


def test_python_dash_m_archdsl(small, bad_syntax):
    ok = subprocess.run([sys.executable, "-m", "archdsl", "cost", str(small), "--json"],
                        capture_output=True, text=True, env=_env(), timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["totals"]["params"] == archdsl.check_spec(small).totals.params

    bad = subprocess.run([sys.executable, "-m", "archdsl", "check", str(bad_syntax)],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert bad.returncode == 1
    assert "broken.arch:3:23" in bad.stderr and "^" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout

    usage = subprocess.run([sys.executable, "-m", "archdsl", "frobnicate"],
                           capture_output=True, text=True, env=_env(), timeout=120)
    assert usage.returncode == 2


# ---- the README's generated reference ---------------------------------------------------------------

@pytest.mark.parametrize("section", sorted(docs.SECTIONS))
def test_readme_reference_is_generated(section):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docs.extract(text, section) == docs.render(section), (
        "README.md is out of date: run `python -m archdsl.docs --write`")


def _readme_blocks(fence: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks, inside, current = [], False, []
    for line in text.splitlines():
        if not inside and line.strip() == "```" + fence:
            inside, current = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append("\n".join(current) + "\n")
        elif inside:
            current.append(line)
    return blocks


def test_readme_example_compiles_and_its_output_is_current(tmp_path):
    specs = [b for b in _readme_blocks("arch") if "variant " in b]
    assert specs, "the README lost its example spec"
    path = tmp_path / "mini.arch"
    path.write_text(specs[0])
    for variant in ("mini", "mini_se"):
        assert run("check", path, "--variant", variant).exit_code == 0
    shown = next(b for b in _readme_blocks("") if b.startswith("$ archdsl cost mini.arch"))
    command, expected = shown.split("\n", 1)
    args = command.split()[2:]
    result = run(*[str(path) if a == "mini.arch" else a for a in args])
    assert result.exit_code == 0, result.output
    assert result.stdout == expected, "README's example output is stale; paste the new output"


# ---- viz and train ----------------------------------------------------------------------------------

def test_viz_writes_a_picture_or_dot_with_install_hint(tmp_path, monkeypatch):
    out = tmp_path / "r.svg"
    result = CliRunner().invoke(main, ["viz", "resnet18", "--depth", "2", "-o", str(out)])
    if shutil.which("dot"):
        assert result.exit_code == 0, result.output
        assert out.read_text().lstrip().startswith(("<?xml", "<svg"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = CliRunner().invoke(main, ["viz", "moco_v2", "-o", str(tmp_path / "m.png")])
    assert result.exit_code == 1                      # no picture: not a success
    assert (tmp_path / "m.dot").read_text().startswith("digraph")
    assert "graphviz" in result.output and not (tmp_path / "m.png").exists()


def test_train_runs_a_topology_and_refuses_a_network():
    result = CliRunner().invoke(main, ["train", "gan_mnist", "--synthetic", "--steps", "3", "--json",
                                       "--input", "8x1x28x28"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [entry["step"] for entry in lines] == [0, 1, 2]
    assert set(lines[0]["losses"]) == {"d_step", "g_step"}
    result = CliRunner().invoke(main, ["train", "resnet18", "--synthetic"])
    assert result.exit_code == 1 and "is a network" in result.output


def test_compile_deploy_and_output(tmp_path):
    result = CliRunner().invoke(main, ["compile", "repvgg_a0", "--deploy", "--json",
                                       "-o", str(tmp_path / "a0.py")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["totals"]["params"] == data["module"]["params"] == 8_309_384  # RepVGG Table 4: 8.30M
    source = (tmp_path / "a0.py").read_text()
    assert "import archdsl" not in source and "class RepVGGBlock(nn.Module)" in source
    result = CliRunner().invoke(main, ["compile", "resnet18", "-o", str(tmp_path / "r.unknown")])
    assert result.exit_code == 1 and ".safetensors" in result.output


def test_check_a_folder_checks_every_file_and_variant_and_lists_every_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.arch").write_text(
        "network N(w: int = 4) {\n  in x: [B, 3]\n  out x -> fc: linear(w)\n}\n"
        "variant n4 = N()\nvariant n8 = N(w=8)\n")
    (tmp_path / "sub" / "bad.arch").write_text(
        "network M() {\n  in x: [B, 3]\n  out x -> fc: linear(0)\n}\nvariant m = M()\n")
    (tmp_path / "sub" / "broken.arch").write_text("network {\n")
    result = run("check", tmp_path, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    by_name = {(v["file"], v["variant"]): v for v in data["variants"]}
    assert by_name["good.arch", "n4"]["params"] == 3 * 4 + 4
    assert by_name["good.arch", "n8"]["params"] == 3 * 8 + 8
    assert "error" in by_name["sub/bad.arch", "m"] and "error" in by_name["sub/broken.arch", ""]
    text = run("check", tmp_path)
    assert text.exit_code == 1
    assert "2 failed 3 files, 3 variants" in text.stdout
    assert "sub/broken.arch" in text.stderr and "bad.arch:3" in text.stderr


def test_compile_loads_weights_before_exporting_and_names_the_keys_that_do_not_fit(small, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file
    state = archdsl.load_spec(small).state_dict()
    state = {k: torch.full_like(v, 0.25) if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"epoch": 7, "state_dict": state}, tmp_path / "ckpt.pth")  # as training scripts save
    result = run("compile", small, "--weights", tmp_path / "ckpt.pth", "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 0, result.output
    out = load_file(tmp_path / "out.safetensors")
    assert torch.equal(out["head.bias"], torch.full((5,), 0.25))
    assert torch.equal(out["blocks.1.conv1.weight"], state["blocks.1.conv1.weight"])

    bad = dict(state)
    bad["blocks.0.conv1.weigth"] = bad.pop("blocks.0.conv1.weight")
    bad["head.weight"] = torch.zeros(7, 8)
    save_file(bad, tmp_path / "bad.safetensors")
    result = run("compile", small, "--weights", tmp_path / "bad.safetensors")
    assert result.exit_code == 1
    assert "missing blocks.0.conv1.weight" in result.output
    assert "unexpected blocks.0.conv1.weigth" in result.output
    assert "shape of head.weight: [7, 8], the model has [5, 8]" in result.output
    assert "did you mean 'blocks.0.conv1.weight'?" in result.output
    _no_traceback(result)

    torch.save([1, 2], tmp_path / "list.pt")
    result = run("compile", small, "--weights", tmp_path / "list.pt")
    assert result.exit_code == 1 and "holds no state_dict" in result.output
    assert run("compile", small, "--source", "torchvision").exit_code == 2


def test_compile_weights_in_another_naming_through_the_spec_checkpoint_block(small, tmp_path):
    import torch
    small.write_text(SMALL + 'checkpoint "lib" {\n  "classifier.{p}" -> "head.{p}"\n}\n')
    state = {("classifier." + k[5:] if k.startswith("head.") else k): v
             for k, v in archdsl.load_spec(small).state_dict().items()}
    torch.save(state, tmp_path / "lib.pt")
    assert run("compile", small, "--weights", tmp_path / "lib.pt", "--source", "lib").exit_code == 0
    result = run("compile", small, "--weights", tmp_path / "lib.pt")
    assert result.exit_code == 1 and "unexpected classifier.weight" in result.output
