"""Cost passes over a typed IR graph: params, buffers, FLOPs, other FLOPs, activation bytes,
receptive field and stride. Computed from shapes alone: no weights are allocated.

Convention: `flops` = 2 per multiply-add, for exactly the ops FlopCounterMode counts (conv,
matmul, linear, bmm, attention); `macs = flops / 2`; `other_flops` holds everything else
(elementwise, norms, pooling, softmax …) with each op's formula documented on the op.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from archdsl.ir.graph import Body, Graph, Node
from archdsl.ops.base import REGISTRY, Field, numel_out

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


@dataclass
class NodeCost:
    path: str
    op: str
    shape: list
    params: int = 0
    frozen_params: int = 0     # of `params`, those never trained (requires_grad=False)
    buffers: int = 0
    flops: int = 0
    other_flops: int = 0
    activation_bytes: int = 0
    receptive_field: int = 1
    stride: int = 1
    block: str = ""

    @property
    def macs(self) -> int:
        return self.flops // 2


@dataclass
class Totals:
    params: int = 0
    frozen_params: int = 0
    buffers: int = 0
    flops: int = 0
    macs: int = 0
    other_flops: int = 0
    activation_bytes: int = 0
    param_bytes: int = 0     # what building the module allocates, at the report's dtype
    buffer_bytes: int = 0


_SUMMED = ("params", "frozen_params", "buffers", "flops", "other_flops", "activation_bytes")


def _add(totals: Totals, c) -> None:
    for k in _SUMMED:
        setattr(totals, k, getattr(totals, k) + getattr(c, k))


@dataclass
class CostReport:
    name: str
    variant: str | None
    input_shapes: dict[str, list]
    output_shapes: dict[str, list]
    nodes: list[NodeCost]
    totals: Totals
    references: list[str] = field(default_factory=list)
    batch: int = 1

    def to_dict(self, nodes: bool = True) -> dict:
        data = {
            "name": self.name, "variant": self.variant, "references": self.references,
            "batch": self.batch, "inputs": self.input_shapes, "outputs": self.output_shapes,
            "totals": asdict(self.totals),
        }
        if nodes:
            data["nodes"] = [dict(asdict(n), macs=n.macs) for n in self.nodes]
        return data


class _Rows(Sequence):
    """A graph's per-node rows, made when first read (`check` and `check stdlib` read only the
    totals): counted without expanding the graph's repeats, listed by expanding them."""

    def __init__(self, graph: Graph, dtype: str):
        self.graph, self.dtype, self.rows = graph, dtype, None

    def _list(self) -> list[NodeCost]:
        if self.rows is None:
            self.rows = node_rows(self.graph, self.dtype)
        return self.rows

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.graph)

    def __getitem__(self, k):
        return self._list()[k]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)


def node_cost(graph: Graph, node: Node, dtype_bytes: int, seen: dict | None = None) -> NodeCost:
    """One node's costs. `seen` remembers an op's costs by its attributes and input shapes:
    the copies of a repeated block instance (semantics/memo.py) share their attribute objects."""
    c = NodeCost(node.id, node.title, _shape_list(node.shape), block=node.block)
    c.activation_bytes = numel_out(node.shape) * dtype_bytes if node.kind != "input" else 0
    if node.kind == "param":
        c.params = math.prod(node.shape)
        c.activation_bytes = 0
    elif node.kind == "buffer":
        c.buffers = math.prod(node.shape)
        c.activation_bytes = 0
    elif node.kind != "input":
        ins = graph.input_shapes(node)
        key = (node.op, id(node.attrs), tuple(ins))
        known = seen.get(key) if seen is not None else None
        if known is None:
            op = REGISTRY[node.op]
            params = op.params(node.attrs, ins)
            known = (sum(math.prod(s) for s in params.values()),
                     sum(math.prod(s) for k, s in params.items() if k in op.frozen),
                     sum(math.prod(s) for s in op.buffers(node.attrs, ins).values()),
                     op.flops(node.attrs, ins, node.shape), op.other_flops(node.attrs, ins, node.shape))
            if seen is not None:
                seen[key] = known
        c.params, c.frozen_params, c.buffers, c.flops, c.other_flops = known
    return c


def cost(graph: Graph, dtype: str = "float32") -> CostReport:
    """Totals, and per-node rows made when first read. A graph with repeats (ir/graph.py) is
    totalled without expanding it: a repeat costs what its body costs (same ops, attributes and
    input shapes); reading its rows expands it."""
    nb = DTYPE_BYTES[dtype]
    totals = Totals()
    seen: dict = {}
    bodies: dict[int, Totals] = {}
    for node in graph.own_nodes():
        _add(totals, node_cost(graph, node, nb, seen))
    for r in graph.repeats.values():
        _add(totals, _body_totals(graph, r.body, nb, seen, bodies))
    totals.macs = totals.flops // 2
    totals.param_bytes, totals.buffer_bytes = totals.params * nb, totals.buffers * nb
    first = graph.node(graph.inputs[0]).shape if graph.inputs else ()
    return CostReport(
        name=graph.name, variant=graph.variant,
        input_shapes={i: list(graph.node(i).shape) for i in graph.inputs},
        output_shapes={k: _shape_list(graph.node(v).shape) for k, v in graph.outputs.items()},
        nodes=_Rows(graph, dtype), totals=totals, references=list(graph.references),
        batch=first[0] if first else 1)


def node_rows(graph: Graph, dtype: str = "float32") -> list[NodeCost]:
    """Every node's costs with its receptive field (which depends on every node before it)."""
    nb = DTYPE_BYTES[dtype]
    rows: list[NodeCost] = []
    fields: dict[str, Field] = {}
    seen: dict = {}
    extent = max((d for i in graph.inputs for d in graph.node(i).shape[2:]), default=1)
    for node in graph.nodes():
        c = node_cost(graph, node, nb, seen)
        f = fields[node.id] = _receptive(graph, node, fields, extent)
        c.receptive_field, c.stride = f.size, f.jump
        rows.append(c)
    return rows


def _body_totals(graph: Graph, body: Body, nb: int, seen: dict, bodies: dict) -> Totals:
    """What one repeat of `body` adds. Its nodes are those of the instance first elaborated,
    which `graph` can look up (their input shapes are the repeat's, by the memo's key)."""
    known = bodies.get(id(body))
    if known is None:
        known = bodies[id(body)] = Totals()
        for node in body.nodes:
            _add(known, node_cost(graph, node, nb, seen))
        for r in body.repeats.values():
            _add(known, _body_totals(graph, r.body, nb, seen, bodies))
    return known


def _receptive(graph: Graph, node: Node, fields: dict[str, Field], extent: int) -> Field:
    """Receptive field and cumulative stride along a spatial dim, from the largest of the
    inputs' (the smallest window a token set was cut into)."""
    if not node.inputs:
        return Field(extent=extent)
    ins = [fields[i] for i in node.inputs]
    spans = [f.span for f in ins if f.span is not None]
    f = Field(max(f.size for f in ins), max(f.jump for f in ins), extent,
              min(spans) if spans else None)
    op = REGISTRY.get(node.op)
    return op.receptive(node.attrs, graph.input_shapes(node), f) if op is not None else f


def _shape_list(shape) -> list:
    if shape and isinstance(shape[0], tuple):
        return [list(s) for s in shape]
    return list(shape)
