"""Pictures of IR graphs: DOT structure, collapsing by depth, repeats, colours, rendering.

The DOT text is parsed back (one statement per line, as `archdsl.viz` writes it) and checked
against the IR independently of the viz code; when graphviz's `dot` is installed the text
is also laid out by graphviz itself and its JSON read back.
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
from archdsl.ir.cost import cost
from archdsl.report import network_data
from archdsl.viz import RenderResult, human, render, to_dot
from archdsl.viz.dot import RAMPS

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz's `dot` is not installed")

NODE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" \[(.*)\];$')
EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[label="((?:[^"\\]|\\.)*)"\];$')
CLUSTER = re.compile(r"^\s*subgraph (cluster_\w+) \{$")


class Dot:
    """What a DOT text declares: nodes (with attributes), edges, clusters and nesting."""

    def __init__(self, text: str):
        self.text = text
        self.nodes: dict[str, str] = {}          # id → attribute text
        self.edges: list[tuple[str, str, str]] = []
        self.clusters: list[str] = []
        self.cluster_of: dict[str, str | None] = {}   # node → innermost cluster
        self.cluster_parent: dict[str, str | None] = {}
        self.cluster_label: dict[str, str] = {}
        stack: list[str] = []
        for line in text.splitlines():
            if m := CLUSTER.match(line):
                self.cluster_parent[m[1]] = stack[-1] if stack else None
                self.clusters.append(m[1])
                stack.append(m[1])
            elif line.strip() == "}":
                if stack:
                    stack.pop()
            elif m := EDGE.match(line):
                self.edges.append((m[1], m[2], m[3]))
            elif m := NODE.match(line):
                assert m[1] not in self.nodes, f"node {m[1]} declared twice"
                self.nodes[m[1]] = m[2]
                self.cluster_of[m[1]] = stack[-1] if stack else None
            elif stack and line.strip().startswith("graph [label="):
                self.cluster_label[stack[-1]] = line
        assert not stack, "unbalanced braces"


@lru_cache(maxsize=None)
def graph(name: str):
    return archdsl.load_graph(name)


def shape_of(g, node_id: str) -> str:
    return "×".join(str(d) for d in g.node(node_id).shape)


def owner_block(g, node_id: str) -> str | None:
    """The innermost block instance whose path is a prefix of the node's path."""
    parts = node_id.split(".")
    for k in range(len(parts) - 1, 0, -1):
        p = ".".join(parts[:k])
        if p in g.blocks:
            return p
    return None


def collapsed_rep(g, node_id: str, depth: int) -> str:
    """Where a node is drawn at `depth` (no repeat grouping): as `archdsl cost --depth` sums
    rows, the path prefix of `depth` components when the node's path is longer, else itself."""
    parts = node_id.split(".")
    return ".".join(parts[:depth])


def expected_edges(g, rep) -> Counter:
    """The stated edge rule: u → v drawn as rep(u) → rep(v); dropped inside one drawn node;
    merged per (rep(u), rep(v), u) when it touches a collapsed node; one for one otherwise."""
    out: Counter = Counter()
    seen = set()
    for u, v, _ in g.edges():
        ru, rv = rep(u), rep(v)
        if ru == rv:
            continue
        if (ru, rv) != (u, v):
            if (ru, rv, u) in seen:
                continue
            seen.add((ru, rv, u))
        out[(ru, rv, shape_of(g, u))] += 1
    return out


# ------------------------------------------------------------------ fully expanded

@pytest.mark.parametrize("name", ["resnet50", "convnext_tiny"])
def test_fully_expanded_dot_has_every_node_edge_and_block(name):
    g = graph(name)
    d = Dot(to_dot(g))
    assert len(d.clusters) == len(g.blocks)
    assert len(set(d.clusters)) == len(d.clusters)
    assert set(d.nodes) == {n.id for n in g.nodes()}
    assert len(d.edges) == len(g.edges())
    assert Counter((u, v) for u, v, _ in d.edges) == Counter((u, v) for u, v, _ in g.edges())
    for u, _, label in d.edges:
        assert label == shape_of(g, u)


def test_every_stdlib_variant_draws_whole_and_collapsed():
    for entry in [e for e in archdsl.catalog() if e.kind == "network"]:
        for v in entry.variants:
            g = graph(v.name)
            full = Dot(to_dot(g))
            assert len(full.nodes) == len(g) and len(full.edges) == len(g.edges()), v.name
            assert len(full.clusters) == len(g.blocks), v.name
            top = Dot(to_dot(g, depth=2))
            assert set(x for e in top.edges for x in e[:2]) <= set(top.nodes), v.name
            assert len(top.nodes) <= len(g), v.name


@pytest.mark.parametrize("name", ["resnet50", "convnext_tiny"])
def test_clusters_nest_as_the_block_instances_do(name):
    g = graph(name)
    d = Dot(to_dot(g))
    cluster = {re.sub(r"\W", "_", b): b for b in g.blocks}
    by_name = {f"cluster_{k}": v for k, v in cluster.items()}
    for node_id, c in d.cluster_of.items():
        assert (by_name[c] if c else None) == owner_block(g, node_id), node_id
    for c, parent in d.cluster_parent.items():
        b = by_name[c]
        assert (by_name[parent] if parent else None) == owner_block(g, b)
        assert b.rsplit(".", 1)[-1] in d.cluster_label[c] and g.blocks[b].type in d.cluster_label[c]


def test_cluster_names_stay_distinct_when_paths_sanitise_alike():
    g = archdsl.load_graph(source=SMALL)
    d = Dot(to_dot(g))
    assert sorted(g.blocks) == ["a.0", "a.1", "a_0", "sq"]
    assert len(d.clusters) == len(set(d.clusters)) == 4


SMALL = """
block Blk(c: int) {
  in x: [B, C, H, W]
  out x -> conv(c, 3) -> relu
}
block Sq() {
  in x: [B, C, H, W]
  out x * x
}
network N() {
  in x: [B, 3, H = 16, W = 16]
  y = x -> a: repeat(2) j { Blk(8) }
  y = y -> a_0: Blk(8) -> relu
  out (y * y) -> sq: Sq()
}
"""


def test_a_tensor_used_twice_is_two_arrows_expanded_and_one_into_a_collapsed_block():
    g = archdsl.load_graph(source=SMALL)
    full = Dot(to_dot(g))
    assert Counter((u, v) for u, v, _ in full.edges)[("relu", "mul")] == 2
    assert Counter((u, v) for u, v, _ in full.edges)[("mul", "sq.mul")] == 2
    top = Dot(to_dot(g, depth=1))
    pairs = Counter((u, v) for u, v, _ in top.edges)
    assert pairs[("relu", "mul")] == 2          # both ends drawn as themselves: one for one
    assert pairs[("mul", "sq")] == 1            # into a collapsed block: merged per tensor
    assert "1×8×16×16" in top.nodes["sq"]      # a collapsed output block shows its shape
    assert "penwidth=2" in top.nodes["sq"] and "output out" in top.nodes["sq"]


# ------------------------------------------------------------------ collapsing

@pytest.mark.parametrize("name,depth", [("resnet50", 2), ("resnet50", 3), ("convnext_tiny", 2),
                                        ("convnext_tiny", 4), ("resnet18", 1)])
def test_depth_collapses_blocks_and_reroutes_edges_without_duplicates(name, depth):
    g = graph(name)
    d = Dot(to_dot(g, depth=depth, group_repeats=False))
    reps = {n.id: collapsed_rep(g, n.id, depth) for n in g.nodes()}
    assert set(d.nodes) == set(reps.values())
    assert len(d.nodes) < len(g)
    assert Counter(d.edges) == expected_edges(g, reps.__getitem__)
    # clusters: exactly the block instances shallower than depth
    assert len(d.clusters) == sum(1 for b in g.blocks if b.count(".") + 1 < depth)
    for b in set(reps.values()) & set(g.blocks):
        label = d.nodes[b]
        assert "box3d" in label and g.blocks[b].type in label
    # a namespace (a repeat's `layer1`) is one node naming what it holds, as in `cost --depth`
    rows = {r["path"]: r for r in network_data(g, "float32", depth)[1]["groups"]}
    for p in {r for r in reps.values() if r not in g.blocks and r not in g}:
        assert "box3d" in d.nodes[p] and rows[p]["op"] in d.nodes[p]
    assert set(d.nodes) == set(rows)


def test_resnet50_at_depth_2_has_one_arrow_into_each_stage_block():
    g = graph("resnet50")
    d = Dot(to_dot(g, depth=2, group_repeats=False))
    pairs = Counter((u, v) for u, v, _ in d.edges)
    # maxpool feeds layer1.0.conv1 and layer1.0.downsample.0: one arrow, labelled once
    assert pairs[("maxpool", "layer1.0")] == 1
    assert all(n == 1 for n in pairs.values())
    assert ("layer1.0", "layer1.1", "1×256×56×56") in d.edges
    assert "→ 1×256×56×56" in d.nodes["layer1.0"]


def test_repeated_sibling_blocks_are_summarised():
    g = graph("resnet50")
    report = cost(g)
    d = Dot(to_dot(g, depth=2, report=report))
    assert "layer3.1…layer3.5" in d.nodes
    label = d.nodes["layer3.1…layer3.5"]
    assert "layer3.1–5" in label and "Bottleneck ×5" in label
    params = sum(r.params for r in report.nodes if r.path.split(".")[:2] in
                 [["layer3", str(i)] for i in range(1, 6)])
    assert f"{human(params)} params" in label
    assert "layer3.0" in d.nodes                      # stride 2: other shapes, on its own
    assert [n for n in d.nodes if n.startswith("layer")] == [
        "layer1.0", "layer1.1…layer1.2", "layer2.0", "layer2.1…layer2.3",
        "layer3.0", "layer3.1…layer3.5", "layer4.0", "layer4.1…layer4.2"]
    assert ("layer3.0", "layer3.1…layer3.5", "1×1024×14×14") in d.edges
    assert ("layer3.1…layer3.5", "layer4.0", "1×1024×14×14") in d.edges
    assert len(d.edges) == len(d.nodes) - 1           # a chain

    c = Dot(to_dot(graph("convnext_tiny"), depth=3))
    assert "9× ConvNeXtBlock" in c.nodes["stages.2.blocks"]   # the namespace, as cost --depth 3
    assert c.cluster_of["stages.2.blocks"] == "cluster_stages_2"
    c = Dot(to_dot(graph("convnext_tiny"), depth=4))
    run = c.nodes["stages.2.blocks.0…stages.2.blocks.8"]
    assert "blocks.0–8" in run and "ConvNeXtBlock ×9" in run
    assert c.cluster_of["stages.2.blocks.0…stages.2.blocks.8"] == "cluster_stages_2"


def test_expand_forces_blocks_open():
    g = graph("resnet50")
    d = Dot(to_dot(g, depth=2, expand=["layer3.2"]))
    assert d.clusters == ["cluster_layer3_2"]
    assert "layer3.2.conv1" in d.nodes and "layer3.2" not in d.nodes
    assert {"layer3.1", "layer3.3…layer3.5"} <= set(d.nodes)
    # a namespace (a repeat, not a block) opens the blocks in it
    d = Dot(to_dot(g, depth=2, expand=["layer3"]))
    assert sorted(d.clusters) == [f"cluster_layer3_{i}" for i in range(6)]
    assert "layer3.0.downsample" in d.nodes           # deeper blocks still follow depth
    # a nested block opens the blocks around it too
    d = Dot(to_dot(g, depth=1, expand=["layer2.0.downsample"]))
    assert d.cluster_parent == {"cluster_layer2_0": None,
                                "cluster_layer2_0_downsample": "cluster_layer2_0"}
    with pytest.raises(ArchError) as err:
        to_dot(g, depth=2, expand=["layer9.1"])
    assert "layer9.1" in str(err.value) and "did you mean" in str(err.value)


# ------------------------------------------------------------------ labels and colours

def test_node_labels_show_op_changed_attributes_and_costs():
    d = Dot(to_dot(graph("resnet50")))
    conv1 = d.nodes["conv1"]
    assert "out=64 k=7 s=2 p=3 bias=false" in conv1 and not re.search(r"\bg=", conv1)
    assert "9.41K params" in conv1 and "236 MFLOPs" in conv1
    assert "k=3 s=2 p=1" in d.nodes["maxpool"]
    assert "shape=ellipse" in d.nodes["x"] and "1×3×224×224" in d.nodes["x"]
    assert "penwidth=2" in d.nodes["fc"] and "output out" in d.nodes["fc"]
    c = Dot(to_dot(graph("convnext_tiny")))
    assert "out=96 k=7 p=3 g=96" in c.nodes["stages.0.blocks.0.conv_dw"]
    gamma = c.nodes["stages.0.blocks.0.gamma"]
    assert "shape=note" in gamma and "param" in gamma and ">96<" in gamma
    assert human(25_557_032) == "25.6M" and human(999) == "999"
    assert human(4.09e9, "FLOPs") == "4.09 GFLOPs" and human(1234) == "1.23K"


@pytest.mark.parametrize("metric", ["flops", "params"])
def test_colour_mode_fills_by_share_with_a_legend(metric):
    g = graph("resnet50")
    report = cost(g)
    d = Dot(to_dot(g, color=metric, report=report))
    fills = {n: re.search(r'fillcolor="(#\w+)"', a)[1] for n, a in d.nodes.items()}
    ramp = RAMPS[metric]
    key = "flops" if metric == "flops" else "params"
    values = {r.path: getattr(r, key) for r in report.nodes}
    heaviest = max(values, key=values.get)
    assert fills[heaviest] == ramp[-1]
    used = {f for n, f in fills.items() if values.get(n)}
    assert used <= set(ramp) and len(used) >= 4
    assert all(fills[n] == "#ffffff" for n in fills if values[n] == 0 and n != "x")
    assert f"share of total {'FLOPs' if metric == 'flops' else 'params'}" in d.text
    plain = to_dot(g, report=report)
    assert not set(ramp[1:]) & set(re.findall(r'fillcolor="(#\w+)"', plain))
    with pytest.raises(ArchError):
        to_dot(g, color="latency")


# ------------------------------------------------------------------ rendering

@needs_dot
@pytest.mark.parametrize("suffix,magic", [(".svg", b"<svg"), (".png", b"\x89PNG"),
                                          (".pdf", b"%PDF")])
def test_render_through_dot(tmp_path, suffix, magic):
    out = tmp_path / f"resnet18{suffix}"
    result = render(graph("resnet18"), out, depth=2, color="flops")
    assert result == RenderResult(out, True, f"wrote {out}")
    assert magic in out.read_bytes()[:400]


@needs_dot
def test_graphviz_reads_the_fully_expanded_graph_back():
    g = graph("resnet50")
    layout = json.loads(subprocess.run(["dot", "-Tjson"], input=to_dot(g).encode(),
                                       capture_output=True, check=True).stdout)
    clusters = [o for o in layout["objects"] if o["name"].startswith("cluster_")]
    nodes = [o for o in layout["objects"] if not o["name"].startswith("cluster_")]
    assert len(clusters) == len(g.blocks)
    assert {o["name"] for o in nodes} == {n.id for n in g.nodes()}
    assert len(layout["edges"]) == len(g.edges())


def test_without_dot_the_dot_source_is_written_and_install_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    out = tmp_path / "pics" / "resnet18.svg"
    result = render(graph("resnet18"), out, depth=2)
    assert result.dot_available is False
    assert result.path == tmp_path / "pics" / "resnet18.dot" and result.path.exists()
    assert not out.exists()
    assert "apt-get install graphviz" in result.message
    assert "brew install graphviz" in result.message
    assert Dot(result.path.read_text()).nodes


def test_render_dot_suffix_and_unknown_suffix(tmp_path):
    result = render(graph("resnet18"), tmp_path / "r.dot", depth=1)
    assert result.path.read_text().startswith('digraph "resnet18"')
    with pytest.raises(ArchError):
        render(graph("resnet18"), tmp_path / "r.jpeg2000")


# ------------------------------------------------------------------ speed, no torch

def test_dot_for_thousands_of_nodes_draws_every_node_and_edge():
    """Big graphs (timings live in bench/RESULTS.md, never in the suite)."""
    g = archdsl.load_graph("resnet50", layers=[3, 30, 300, 3])   # ≈ 3,400 nodes, 340 blocks
    assert len(g) > 3000
    dot = Dot(to_dot(g, color="flops"))
    assert len(dot.nodes) >= len(g) and len(dot.edges) == len(g.edges())


def test_drawing_never_imports_torch():
    probe = ("import sys, archdsl; from archdsl.viz import to_dot; "
             "to_dot(archdsl.load_graph('resnet18'), depth=2, color='flops'); "
             "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
