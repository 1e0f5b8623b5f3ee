"""The IR: a DAG over networkx. Node ids are module paths ("layer1.0.conv1")."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterator

import networkx as nx

from archdsl.errors import Span
from archdsl.ops import REGISTRY

Shape = tuple[int, ...]

# what a node is: a graph input, a parameter or buffer of its own, a topology's state, a call of
# a topology's network, or an op of archdsl/ops
KINDS = ("input", "param", "buffer", "state", "net", "op")


@dataclass
class Node:
    id: str                      # unique path; parametric nodes become modules at this path
    op: str | None               # the op's name on an op node; None on the other kinds
    attrs: Any                   # the op's validated attribute model (or a dict for the other kinds)
    inputs: list[str]            # ordered producer ids
    shape: Any                   # Shape, or a tuple of Shapes for multi-output ops
    span: Span | None = None
    block: str = ""              # path of the enclosing block instance ("" = top level)
    block_type: str = ""         # name of that block ("Bottleneck")
    dtype: str = "float32"
    label: str | None = None     # display name for nodes without a module
    kind: str = "op"             # one of KINDS

    def __post_init__(self):
        if self.kind not in KINDS or (self.kind == "op") != (self.op is not None):
            raise ValueError(f"node '{self.id}': kind {self.kind!r} with op {self.op!r}")

    @property
    def is_multi(self) -> bool:
        return bool(self.shape) and isinstance(self.shape[0], tuple)

    @property
    def title(self) -> str:
        """What the node is, as shown: its op, else its kind."""
        return self.op if self.op is not None else self.kind


@dataclass
class BlockInstance:
    path: str
    type: str
    span: Span | None = None


@dataclass
class Graph:
    name: str
    g: nx.MultiDiGraph = field(default_factory=nx.MultiDiGraph)
    inputs: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)   # output name → node id
    blocks: dict[str, BlockInstance] = field(default_factory=dict)
    inits: list = field(default_factory=list)               # InitRules, in declaration order
    variant: str | None = None
    references: list[str] = field(default_factory=list)
    single_output: bool = True

    def add(self, node: Node) -> Node:
        self.g.add_node(node.id, node=node)
        for k, src in enumerate(node.inputs):
            self.g.add_edge(src, node.id, index=k)
        return node

    def node(self, node_id: str) -> Node:
        return self.g.nodes[node_id]["node"]

    def __contains__(self, node_id: str) -> bool:
        return node_id in self.g

    def nodes(self) -> Iterator[Node]:
        """Nodes in creation order, which is a topological order."""
        for n in self.g.nodes:
            yield self.g.nodes[n]["node"]

    def last_nodes(self, k: int) -> list[Node]:
        """The k nodes added last, in creation order (without walking the others)."""
        nodes = self.g.nodes
        return [nodes[n]["node"] for n in islice(reversed(self.g._node), k)][::-1]

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    def edges(self) -> list[tuple[str, str, int]]:
        return [(u, v, d["index"]) for u, v, d in self.g.edges(data=True)]

    def input_shapes(self, node: Node) -> list:
        return [self.node(i).shape for i in node.inputs]

    def weights(self) -> Iterator[Weight]:
        """Every parameter and float buffer, as the built module's state_dict names them, in node
        order: `param`/`buffer` nodes at their path, an op's own tensors under its node's path."""
        for n in self.nodes():
            if n.kind in ("param", "buffer"):
                yield Weight(n.id, tuple(n.shape), n.kind == "param", n)
            elif n.kind == "op":
                op, ins = REGISTRY[n.op], self.input_shapes(n)
                for k, s in op.params(n.attrs, ins).items():
                    yield Weight(f"{n.id}.{k}", tuple(s), True, n)
                for k, s in op.buffers(n.attrs, ins).items():
                    yield Weight(f"{n.id}.{k}", tuple(s), False, n)


@dataclass(frozen=True)
class Weight:
    name: str                    # the state_dict key
    shape: Shape
    is_param: bool               # a parameter (else a buffer)
    node: Node
