"""A spec cannot run Python or read files outside its search path (README "Nothing in a spec can
run Python…"). Each hostile form is tried for real: the payloads would create a marker file if
they ran, and the file-reading forms point at a file whose contents must never be shown."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.fx as fx
from torch import nn

import archdsl
from archdsl import ArchError
from archdsl.ir.cost import cost
from archdsl.ir.graph import Graph, Node
from archdsl.ir.names import MODULE_ATTRS, ROOT_ATTRS, name_problem
from archdsl.lower.build import build

SECRET = "TOP_SECRET_TOKEN_4711"


def _network(label: str) -> str:
    return f"network Evil() {{\n  in x: [B, 4]\n  y = x -> {label}: linear(4)\n  out y\n}}\n"


def _payload(marker) -> str:
    """A label template whose text, pasted unescaped into fx's `getattr(self, "<label>")`,
    calls os.system while the forward runs (it did before labels were validated)."""
    call = f'getattr(__import__(\\"os\\"), \\"system\\")(\\"touch {marker.name}\\")'
    return 'fc{"\\", ' + call + ') and getattr(self, \\"fc"}'


HOSTILE_LABELS = {
    "code in a template": None,  # filled per test (needs the marker's name)
    "a keyword": "class",
    "another keyword": "import",
    "a torch method": "float",
    "a module internal": "_modules",
    "a dunder": "__init__",
    "a quote": 'fc{"\\""}',
    "an empty component": 'head{"."}',
    "two dots": 'head{"..x"}',
    "a keyword after a dot": 'head{".class"}',
    "a newline": 'fc{"\\n"}',
    "a megabyte": 'fc{"a" * 1000000}',
}


@pytest.mark.parametrize("case", sorted(HOSTILE_LABELS))
def test_hostile_labels_are_arch_errors_and_nothing_runs(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    label = HOSTILE_LABELS[case] or _payload(marker)
    spec = tmp_path / "evil.arch"
    spec.write_text(_network(label))
    with pytest.raises(ArchError) as err:
        archdsl.load_spec(str(spec))
    assert err.value.span is not None and err.value.span.line == 3
    assert "label" in err.value.message
    assert not marker.exists()


def test_the_payload_is_real_python(tmp_path, monkeypatch):
    """The injection test above is only evidence if its payload runs when pasted into the source
    fx generates: paste it the way fx did and check the marker appears."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    text = _payload(marker)
    label_text = text[len('fc{"'):-len('"}')].encode().decode("unicode_escape")
    source = f'def forward(self, x):\n    y = getattr(self, "fc{label_text}")(x)\n'
    namespace = {}
    exec(compile(source, "<fx-like>", "exec"), namespace)
    namespace["forward"](nn.Module(), None)
    assert marker.exists()


def test_a_block_named_like_a_keyword_gets_a_safe_automatic_name():
    model = archdsl.load_spec(source="""
        block Class() { in x: [B, C]
          out x -> fc: linear(C) }
        network N() { in x: [B, 4]
          out x -> Class() }
    """)
    assert list(model.state_dict()) == ["class_.fc.weight", "class_.fc.bias"]
    assert model(torch.ones(2, 4)).shape == (2, 4)


@pytest.mark.parametrize("decl, what", [
    ("in class: [B, 4]", "input"),
    ("param lambda: [4] = 1.0", "param"),
    ("buffer float: [4] = 0.0", "buffer"),
])
def test_names_of_inputs_params_and_buffers(decl, what):
    text = f"network N() {{\n  in x: [B, 4]\n  {decl}\n  out x\n}}\n"
    if decl.startswith("in "):
        text = f"network N() {{\n  {decl}\n  out class\n}}\n"
    with pytest.raises(ArchError) as err:
        archdsl.check_spec(source=text)
    assert err.value.message.startswith(f"{what} name '")
    assert err.value.span.line == (2 if what == "input" else 3)


def test_top_level_labels_cannot_shadow_the_graph_module():
    with pytest.raises(ArchError, match="label .graph. names an attribute of the built"):
        archdsl.check_spec(source=_network("graph"))


def test_lowering_refuses_unsafe_names_that_reach_it():
    """The last line of defence: a graph built without the elaborator, with a node id that is not
    an identifier, never reaches torch.fx's code generation."""
    g = Graph("n")
    g.add(Node("x", None, {}, [], (1, 4), None, "", "n", kind="input"))
    g.inputs.append("x")
    g.add(Node('w"); import os #', None, {"init": 0.0}, [], (4,), None, "", "n", kind="param"))
    g.outputs["out"] = 'w"); import os #'
    with pytest.raises(ArchError, match="cannot build"):
        build(g)


def test_reserved_names_cover_torch():
    """MODULE_ATTRS and ROOT_ATTRS are written out (costing needs no torch); they must cover what
    the installed torch's modules really have."""
    def public(names):
        return {n for n in names if not n.startswith("_")}
    module_names = public(dir(nn.Module)) | public(vars(nn.Module()))
    assert module_names <= MODULE_ATTRS, sorted(module_names - MODULE_ATTRS)
    gm = fx.GraphModule(nn.Module(), fx.Graph())
    root_names = public(dir(gm)) | public(vars(gm))
    assert root_names <= MODULE_ATTRS | ROOT_ATTRS, sorted(root_names - MODULE_ATTRS - ROOT_ATTRS)
    assert name_problem("layer1") is None and name_problem("0") is None
    assert name_problem("0", index_ok=False) is not None
    assert name_problem("_parameters") is not None and name_problem("_anything") is not None


# ---- files ---------------------------------------------------------------------------------------

def _topology(target: str, form: str) -> str:
    value = f'frozen("{target}")' if form == "frozen" else f'"{target}"'
    return (f"topology T() {{\n  in x: [B, 3, H = 32, W = 32]\n  net g = {value}\n"
            f"  phase train {{\n    loss = x -> g -> mean(dims=[0, 1])\n  }}\n}}\n")


@pytest.fixture
def outside(tmp_path):
    """A spec folder, and beside it files it must not reach: a valid spec, a secret, a link."""
    secret_dir = tmp_path / "outside"
    secret_dir.mkdir()
    (secret_dir / "x.arch").write_text(f"# {SECRET}\nnetwork X() {{ in x: [B, 4]\n out x }}\n"
                                       f"variant x = X()\n")
    (secret_dir / "secret.txt").write_text(f"{SECRET} = 1\n")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "link.arch").symlink_to(secret_dir / "x.arch")
    (specs / "local.arch").write_text("network L() { in x: [B, 4]\n out x }\nvariant local = L()\n")
    return specs


@pytest.mark.parametrize("form", ["net", "frozen"])
@pytest.mark.parametrize("target", ["../outside/x.arch", "{outside}/x.arch", "../outside/secret.txt",
                                    "{outside}/secret.txt", "link.arch", "local.arch", "local",
                                    "/proc/self/environ", "/etc/passwd"])
def test_a_string_never_reads_a_file(outside, target, form, monkeypatch):
    monkeypatch.chdir(outside)
    target = target.format(outside=outside.parent / "outside")
    spec = outside / "t.arch"
    spec.write_text(_topology(target, form))
    with pytest.raises(ArchError) as err:
        archdsl.load_topology(str(spec))
    message = str(err.value)
    assert err.value.span.line == 3 and "no stdlib variant named" in message
    assert SECRET not in message and "root:" not in message


def test_a_string_names_a_stdlib_variant():
    topology = archdsl.load_topology(source=_topology("resnet18", "net"))
    graph = next(iter(topology.nets["g"].graphs.values()))
    assert cost(graph).totals.params == 11_689_512  # resnet18's, at 32x32


def test_an_import_through_a_symlink_out_of_the_search_path_is_refused(outside):
    spec = outside / "imp.arch"
    spec.write_text("import link\nnetwork N() { in x: [B, 4]\n out x }\n")
    with pytest.raises(ArchError, match="leads outside the folders") as err:
        archdsl.check_spec(str(spec))
    assert SECRET not in str(err.value)


def test_nothing_runs_in_another_process(tmp_path):
    """End to end as a user would: `archdsl compile` and `archdsl train --synthetic` on a hostile
    network and a topology that trains it, in a fresh process; both refuse it and the payload's
    marker never appears."""
    marker = tmp_path / "PWNED"
    spec = tmp_path / "evil.arch"
    spec.write_text(_network(_payload(marker)) + "topology T() {\n  in x: [B, 4]\n  net f = Evil()\n"
                    "  phase train {\n    loss = x -> f -> mean(dims=[0, 1])\n  }\n}\n"
                    "variant t = T()\n")
    for args in (["compile", str(spec)], ["train", str(spec), "--synthetic", "--steps", "1"]):
        run = subprocess.run([sys.executable, "-m", "archdsl", *args], cwd=tmp_path,
                             capture_output=True, text=True, env={**os.environ, "ARCHDSL_CACHE": "off"})
        assert run.returncode == 1, run.stderr
        assert "is not an identifier" in run.stderr
        assert not marker.exists()
