"""Repeated block instances are not elaborated again (archdsl/semantics/memo.py) and stay one
`Repeat` each until something walks the nodes (ir/graph.py): the graph, before and after
expanding, must be exactly the one that elaborating every instance gives — node for node (paths,
ops, attributes, inputs, shapes, enclosing blocks), block instances, init rules, outputs and
costs — for the smallest variant of every stdlib family. Equal paths are equal state_dict keys,
and equal nodes lower to the same module, hence the same outputs."""
from __future__ import annotations

from dataclasses import asdict

import pytest

import archdsl
from archdsl.ir.cost import cost
from archdsl.semantics.elaborate import Elaborator

FAMILIES = archdsl.catalog()


def _smallest(entry) -> str:
    if entry.kind == "topology":
        return entry.variants[0].name
    return min((v.name for v in entry.variants), key=lambda n: cost(archdsl.load_graph(n)).totals.params)


def _graphs(variant: str) -> list:
    if archdsl.spec_kind(variant) == "topology":
        ir = archdsl.load_topology(variant)
        return [g for net in ir.nets.values() for g in net.graphs.values()]
    return [archdsl.load_graph(variant)]


def _facts(graph) -> dict:
    return {
        "nodes": [(n.id, n.kind, n.op, n.attrs, n.inputs, n.shape, n.block, n.block_type, n.dtype, n.span)
                  for n in graph.nodes()],
        "edges": sorted(graph.edges()),
        "blocks": [(b.path, b.type, b.span) for b in graph.blocks.values()],
        "inits": [(r.prefix, r.pattern, r.init) for r in graph.inits],
        "outputs": graph.outputs,
        "cost": cost(graph).to_dict(),
    }


def _unexpanded_facts(graph, expanded) -> dict:
    """What the cost path reads of `graph` without expanding it: its totals, its size, every
    node of `expanded` looked up by path (keys, shapes, attributes), its inputs and outputs."""
    report = cost(graph)
    return {
        "totals": asdict(report.totals),
        "size": (len(graph), len(report.nodes)),
        "io": (report.input_shapes, report.output_shapes),
        "nodes": [graph.node(n.id) for n in expanded.nodes()],
        "found": all(n.id in graph for n in expanded.nodes()),
    }


@pytest.mark.parametrize("family", FAMILIES, ids=lambda e: e.file)
def test_reused_instances_give_the_graph_that_elaborating_each_gives(family, monkeypatch):
    variant = _smallest(family)
    reused = _graphs(variant)
    monkeypatch.setattr(Elaborator, "REUSE_INSTANCES", False)
    expanded = _graphs(variant)
    assert all(not g.repeats for g in expanded)
    assert [_unexpanded_facts(g, e) for g, e in zip(reused, expanded)] == \
        [_unexpanded_facts(e, e) for e in expanded]
    assert [_facts(g) for g in reused] == [_facts(g) for g in expanded]
    assert all(not g.repeats for g in reused)   # walking the nodes expanded them


def test_a_deep_net_is_costed_without_expanding_its_repeats():
    g = archdsl.load_graph("resnet50", layers=[3, 4, 70, 3])
    report = cost(g)
    # ResNet-50 plus 64 bottlenecks of width 256 on 1024 channels, each
    # 1024·256 + 9·256·256 + 256·1024 conv weights and 2·(256 + 256 + 1024) batch-norm affines
    assert report.totals.params == 25_557_032 + 64 * (262_144 + 589_824 + 262_144 + 3_072)
    assert len(g.repeats) == 1 + 2 + 68 + 1 and len(g.own_nodes()) < 200 < len(g) == 815
    assert report.output_shapes == {"out": [1, 1000]}


def _hits(monkeypatch) -> list:
    import archdsl.semantics.statements as statements
    from archdsl.semantics.memo import InstanceMemo
    made = []

    class Counting(InstanceMemo):
        def __init__(self):
            super().__init__()
            made.append(self)

    monkeypatch.setattr(statements, "InstanceMemo", Counting)
    return made


def test_identical_block_instances_are_copied(monkeypatch):
    made = _hits(monkeypatch)
    g = archdsl.load_graph("resnet50", layers=[3, 4, 20, 3])
    # per stage the first block (stride, downsample) and the second are elaborated, the others copied
    assert made[-1].hits == 1 + 2 + 18 + 1
    assert len(g.repeats) == made[-1].hits
    assert g.node("layer3.19.conv2").inputs == ["layer3.19.relu"]
    assert g.blocks["layer3.19"].type == "Bottleneck"


def test_a_block_that_reads_a_global_counter_is_elaborated_each_time(monkeypatch):
    made = _hits(monkeypatch)
    src = """block Grow() {
  in x: [B, C]
  out x -> repeat(1) j, k { linear(C + k) }
}
network N() {
  in x: [B, 4]
  out x -> blocks: repeat(3) { Grow() }
}"""
    g = archdsl.load_graph(source=src)
    assert made[-1].hits == 0
    assert [g.node(f"blocks.{i}.repeat.0").shape for i in range(3)] == [(1, 4), (1, 5), (1, 7)]
