"""Pictures of topologies: networks, EMA twins, state, phases, stop-gradients, updates.

The DOT text is parsed back with the parser of tests/test_viz.py (extended to edges that
carry a style) and checked against the TopologyIR; when graphviz's `dot` is installed the
text is also laid out by graphviz and its JSON read back.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from functools import lru_cache

import pytest

import archdsl
from archdsl import ArchError
from archdsl.viz import RenderResult, render, to_dot, topology_to_dot
from test_viz import Dot, needs_dot

NAMES = ["moco_v2", "dino", "gan_mnist", "byol"]
ANY_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[(.*)\];$')
ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,]+)')


def attrs_of(text: str) -> dict[str, str]:
    """`label="a, b", style=dashed` → {"label": "a, b", "style": "dashed"} (quotes dropped)."""
    out = {}
    for key, value in ATTR.findall(text):
        out[key] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\") \
            if value.startswith('"') else value.strip()
    return out


class TDot(Dot):
    """A topology's DOT text: `Dot` plus every edge with its attributes."""

    def __init__(self, text: str):
        super().__init__(text)
        self.styled: list[tuple[str, str, dict[str, str]]] = []
        for line in text.splitlines():
            if m := ANY_EDGE.match(line):
                self.styled.append((m[1], m[2], attrs_of(m[3])))

    def inside(self, node: str, cluster: str) -> bool:
        """Whether `node` is drawn in `cluster` or in a cluster nested in it."""
        c = self.cluster_of.get(node)
        while c is not None:
            if c == cluster:
                return True
            c = self.cluster_parent[c]
        return False

    def plain(self) -> list[tuple[str, str, str]]:
        """Visible edges without a style: data edges, labelled with a shape."""
        return [(u, v, a["label"]) for u, v, a in self.styled
                if "style" not in a and "label" in a]


@lru_cache(maxsize=None)
def topo(name: str, **overrides):
    return archdsl.load_topology(name, **overrides)


@lru_cache(maxsize=None)
def dot_of(name: str, depth: int = 1) -> TDot:
    return TDot(topology_to_dot(topo(name), depth=depth))


def shape_of(g, node_id: str) -> str:
    return "×".join(str(d) for d in g.node(node_id).shape) or "scalar"


def folded(ph) -> set[str]:
    """stop_grad nodes that feed something and are no loss or log: drawn as edges."""
    g = ph.graph
    shown = {ph.loss, *ph.logs.values()}
    return {n.id for n in g.nodes()
            if n.op == "stop_grad" and n.id not in shown and list(g.g.successors(n.id))}


def drawn_as(ph, node_id: str) -> tuple[str, bool]:
    """(DOT id a phase tensor is drawn from, whether a stop-gradient lies on the way)."""
    g, sg = ph.graph, False
    fold = folded(ph)
    while node_id in fold:
        node_id, sg = g.node(node_id).inputs[0], True
    n = g.node(node_id)
    return (f"state:{n.attrs['name']}" if n.kind == "state" else f"{ph.name}/{node_id}"), sg


# ------------------------------------------------------------------ clusters

@pytest.mark.parametrize("name", NAMES)
def test_each_network_and_each_phase_is_a_cluster(name):
    ir, d = topo(name), dot_of(name)
    for net, decl in ir.nets.items():
        c = f"cluster_net_{net}"
        assert c in d.clusters and d.cluster_parent[c] == "cluster_networks"
        assert d.cluster_of[f"net:{net}"] == c           # collapsed: one node
        label = d.nodes[f"net:{net}"]
        assert f"<b>{net}</b>" in label and "params" in label
        for shapes, g in decl.graphs.items():           # every call shape, in → out
            outs = "; ".join(shape_of(g, o) for o in g.outputs.values())
            assert f"{'×'.join(map(str, shapes[0]))} → {outs}" in label
    for ph in ir.phases.values():
        c = f"cluster_phase_{ph.name}"
        assert c in d.clusters and d.cluster_parent[c] is None
        assert f"phase {ph.name}" in d.cluster_label[c]
        assert f"update=[{', '.join(ph.update)}]" in d.cluster_label[c]
        assert "×" not in d.cluster_label[c].split("update=")[1]
    assert len(d.clusters) == 1 + len(ir.nets) + len(ir.phases)
    assert len(set(d.clusters)) == len(d.clusters)


def test_a_phase_run_k_times_says_so():
    ir = topo("gan_mnist", k=3)
    d = TDot(topology_to_dot(ir))
    assert ir.phases["d_step"].repeat == 3
    assert "update=[D]  ×3" in d.cluster_label["cluster_phase_d_step"]
    assert "×" not in d.cluster_label["cluster_phase_g_step"].split("update=")[1]


@pytest.mark.parametrize("name", NAMES)
def test_every_phase_graph_node_and_edge_is_represented(name):
    ir, d = topo(name), dot_of(name)
    for ph in ir.phases.values():
        g, fold = ph.graph, folded(ph)
        for n in g.nodes():
            if n.kind == "state":
                assert f"state:{n.attrs['name']}" in d.nodes
            elif n.id in fold:
                src, _ = drawn_as(ph, n.id)
                assert any(u == src and "stop-grad" in a.get("label", "") for u, _, a in d.styled)
                assert f"{ph.name}/{n.id}" not in d.nodes
            else:
                node = f"{ph.name}/{n.id}"
                assert node in d.nodes and d.inside(node, f"cluster_phase_{ph.name}"), node
        # every IR edge once, from where its tensor is drawn, labelled with its shape
        want: Counter = Counter()
        for u, v, _ in g.edges():
            if v not in fold:
                src, sg = drawn_as(ph, u)
                want[(src, f"{ph.name}/{v}", sg, shape_of(g, u))] += 1
        got: Counter = Counter()
        for u, v, a in d.styled:
            if v.startswith(ph.name + "/") and a.get("style") in (None, "dashed") \
                    and not a.get("label", "").startswith("ema("):
                sg = a.get("style") == "dashed"
                got[(u, v, sg, a["label"].removeprefix("stop-grad · "))] += 1
        assert got == want
        # the loss and the logs are marked
        assert "⇒ loss" in d.nodes[f"{ph.name}/{ph.loss}"]
        for k, nid in ph.logs.items():
            assert f"⇒ log {k}" in d.nodes[f"{ph.name}/{nid}"]


# ------------------------------------------------------------------ twins, calls, stop-grad

@pytest.mark.parametrize("name", NAMES)
def test_one_dashed_ema_edge_per_twin_with_its_momentum(name):
    ir, d = topo(name), dot_of(name)
    ema = [(u, v, a) for u, v, a in d.styled if a.get("label", "").startswith("ema(")]
    twins = {n: decl.twin for n, decl in ir.nets.items() if decl.twin is not None}
    assert len(ema) == len(twins) >= (0 if name == "gan_mnist" else 1)
    for u, v, a in ema:
        spec = twins[v.removeprefix("net:")]
        assert u == f"net:{spec.source}" and a["style"] == "dashed"
        assert a["label"].startswith(f"ema({spec.momentum:g})")
        assert ("cosine" in a["label"]) == (spec.schedule == "cosine")
    if name == "moco_v2":
        assert ema[0][2]["label"] == "ema(0.999)"
    if name == "dino":
        assert ema[0][2]["label"] == "ema(0.996)\\ncosine 0.996→1"


@pytest.mark.parametrize("name", NAMES)
def test_net_calls_are_joined_to_their_network_by_a_dotted_line(name):
    ir, d = topo(name), dot_of(name)
    dotted = Counter((u, v) for u, v, a in d.styled if a.get("style") == "dotted")
    want = Counter((f"net:{n.attrs['name']}", f"{ph.name}/{n.id}")
                   for ph in ir.phases.values() for n in ph.graph.nodes() if n.kind == "net")
    assert dotted == want and want
    for ph in ir.phases.values():
        for n in ph.graph.nodes():
            if n.kind == "net":
                twin = ir.nets[n.attrs["name"]].twin is not None
                assert ("no grad" in d.nodes[f"{ph.name}/{n.id}"]) == twin
    assert "shuffle BN" in dot_of("moco_v2").nodes["train/key"]


def test_stop_grad_is_folded_into_a_red_dashed_edge():
    d = dot_of("gan_mnist")
    assert "d_step/stop_grad" not in d.nodes
    [(u, v, a)] = [e for e in d.styled if "stop-grad" in e[2].get("label", "")]
    assert (u, v) == ("d_step/G", "d_step/D_1")
    assert a["style"] == "dashed" and a["color"] == "#c62828"
    assert a["label"] == "stop-grad · 1×1×28×28"
    # a stop_grad nobody reads (or that is logged) stays a node
    ir = archdsl.load_topology(source=SG_LOGGED)
    dd = TDot(topology_to_dot(ir))
    assert "train/stop_grad" in dd.nodes and "⇒ log z" in dd.nodes["train/stop_grad"]


SG_LOGGED = """
network Lin() {
  in x: [B, 4]
  out x -> linear(4)
}
topology T() {
  in x: [B = 2, 4]
  net f = Lin()
  phase train {
    y = x -> f
    log z = stop_grad(y)
    loss = mean(y, dims=[0, 1])
  }
}
"""


# ------------------------------------------------------------------ state and updates

@pytest.mark.parametrize("name,states", [("moco_v2", {"queue": "128×65536", "queue_ptr": "scalar"}),
                                         ("dino", {"center": "1×65536", "temp": "scalar"})])
def test_state_nodes_are_cylinders_with_their_shape(name, states):
    d = dot_of(name)
    assert {n for n in d.nodes if n.startswith("state:")} == {f"state:{s}" for s in states}
    for s, shape in states.items():
        label = d.nodes[f"state:{s}"]
        assert "shape=cylinder" in label and f">{shape}<" in label and f"<b>{s}</b>" in label
        assert d.cluster_of[f"state:{s}"] is None                # shared by every phase
    assert "int64" in dot_of("moco_v2").nodes["state:queue_ptr"]


@pytest.mark.parametrize("name", NAMES)
def test_after_step_updates_are_edges_into_the_state(name):
    ir, d = topo(name), dot_of(name)
    got = Counter((u, v, a["label"]) for u, v, a in d.styled
                  if a.get("label", "").startswith("after: "))
    want: Counter = Counter()
    for ph in ir.phases.values():
        for act in ph.actions:
            for t in act.tensors:
                for st in act.states:
                    want[(drawn_as(ph, t)[0], f"state:{st}", act.kind)] += 1
    assert Counter((u, v, label.split()[1]) for u, v, label in got.elements()) == want
    if name == "moco_v2":
        assert set(got) == {("train/l2_normalize_1", "state:queue", "after: enqueue"),
                            ("train/l2_normalize_1", "state:queue_ptr", "after: enqueue")}
    if name == "dino":
        assert set(got) == {("train/teacher", "state:center",
                             "after: center_update (momentum=0.9)")}


# ------------------------------------------------------------------ depth and expand

def test_depth_2_draws_each_network_with_the_network_view_inside_its_cluster():
    ir = topo("moco_v2")
    d = dot_of("moco_v2", 2)
    g = ir.nets["query"].first_graph
    inner = Dot(to_dot(g, depth=1))                # the network view, reused as it is
    mine = {n[len("net:query/"):] for n in d.nodes if n.startswith("net:query/")}
    assert mine == set(inner.nodes) == {"x", "backbone", "head"}
    for n in mine:
        assert d.inside(f"net:query/{n}", "cluster_net_query")
    assert Counter((u.removeprefix("net:query/"), v.removeprefix("net:query/"), s)
                   for u, v, s in d.plain() if u.startswith("net:query/")) == Counter(inner.edges)
    assert "net:query" not in d.nodes and "net:key" in d.nodes   # a twin stays one node
    label = d.cluster_label["cluster_net_query"]
    assert "query" in label and "Encoder" in label and "params" in label
    # edges meeting an open network are clipped at its cluster
    [(u, v, a)] = [e for e in d.styled if e[2].get("label", "").startswith("ema(")]
    assert (u, v) == ("net:query/head", "net:key") and a["ltail"] == "cluster_net_query"
    [(u, v, a)] = [e for e in d.styled if e[2].get("style") == "dotted" and e[1] == "train/query"]
    assert u == "net:query/x" and a["ltail"] == "cluster_net_query"

    deeper = dot_of("moco_v2", 3)
    assert "cluster_net_query__backbone" in deeper.clusters
    assert deeper.cluster_parent["cluster_net_query__backbone"] == "cluster_net_query"
    assert "6× Bottleneck" in deeper.nodes["net:query/backbone.layer3"]   # as cost --depth 2
    deepest = dot_of("moco_v2", 4)
    assert "net:query/backbone.layer3.1…backbone.layer3.5" in deepest.nodes   # repeats grouped


def test_expand_opens_networks_and_blocks_by_name():
    ir = topo("moco_v2")
    d = TDot(topology_to_dot(ir, expand=["key"]))
    assert "net:key/backbone" in d.nodes and "net:query" in d.nodes
    assert d.cluster_parent.get("cluster_net_key__backbone") is None     # key at network depth 1
    d = TDot(topology_to_dot(ir, expand=["query.backbone.layer3"]))
    assert "cluster_net_query__backbone_layer3_0" in d.clusters      # a namespace: its blocks
    assert d.cluster_parent["cluster_net_query__backbone"] == "cluster_net_query"
    assert {"net:query/backbone.layer2.0", "net:query/backbone.layer3.0.conv1",
            "net:query/head", "net:key"} <= set(d.nodes)
    with pytest.raises(ArchError) as err:
        topology_to_dot(ir, expand=["quary"])
    assert "did you mean" in str(err.value) and "query" in str(err.value)
    with pytest.raises(ArchError):
        topology_to_dot(ir, expand=["query.nope"])
    with pytest.raises(ArchError):
        topology_to_dot(ir, depth=-1)
    assert topology_to_dot(ir, depth=None) == topology_to_dot(ir)


# ------------------------------------------------------------------ rendering

@needs_dot
def test_render_moco_to_png_and_graphviz_reads_it_back(tmp_path):
    ir = topo("moco_v2")
    out = tmp_path / "moco.png"
    assert render(ir, out) == RenderResult(out, True, f"wrote {out}")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    layout = json.loads(subprocess.run(["dot", "-Tjson"], input=topology_to_dot(ir).encode(),
                                       capture_output=True, check=True).stdout)
    names = {o["name"] for o in layout["objects"]}
    assert {"cluster_net_query", "cluster_net_key", "cluster_phase_train"} <= names
    assert {"net:query", "net:key", "state:queue", "train/info_nce"} <= names


@needs_dot
@pytest.mark.parametrize("name", ["dino", "gan_mnist"])
def test_render_other_topologies_open_and_closed(tmp_path, name):
    for depth in (1, 2):
        out = tmp_path / f"{name}_{depth}.svg"
        assert render(topo(name), out, depth=depth).dot_available
        assert b"<svg" in out.read_bytes()[:400]


def test_without_dot_a_topology_writes_its_dot_source(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    out = tmp_path / "pics" / "moco.svg"
    result = render(topo("moco_v2"), out)
    assert result.dot_available is False and not out.exists()
    assert result.path == tmp_path / "pics" / "moco.dot" and result.path.exists()
    assert "apt-get install graphviz" in result.message
    d = TDot(result.path.read_text())
    assert "cluster_net_query" in d.clusters and "state:queue" in d.nodes


def test_topology_render_dot_suffix_and_refused_options(tmp_path):
    result = render(topo("gan_mnist"), tmp_path / "gan.dot")
    assert result.path.read_text().startswith('digraph "gan_mnist"')
    with pytest.raises(ArchError):
        render(topo("gan_mnist"), tmp_path / "gan.svg", color="flops")


def test_drawing_a_topology_never_imports_torch():
    probe = ("import sys, archdsl; from archdsl.viz import topology_to_dot; "
             "topology_to_dot(archdsl.load_topology('gan_mnist'), depth=2); "
             "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
