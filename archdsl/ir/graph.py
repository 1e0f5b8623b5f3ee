"""The IR: a DAG over networkx. Node ids are module paths ("layer1.0.conv1").

Repetition stays explicit until something needs every node: a repeated block instance
(semantics/memo.py) is a `Repeat` — its path, its inputs and the `Body` of the instance that was
elaborated — not a copy of that instance's nodes. Looking a node up, counting nodes and costing
(ir/cost.py) work on that form; anything that walks the nodes (`nodes()`, `edges()`, `g`: lowering,
pictures, per-node tables) first expands every repeat in place, in creation order.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
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


@dataclass(eq=False)
class Body:
    """The nodes of a block instance elaborated once, at `prefix`, that repeats stand for."""
    prefix: str
    inputs: tuple[str, ...]          # its input node ids
    nodes: list[Node]                # its own nodes, in creation order
    repeats: dict[str, "Repeat"]     # repeats inside it (`at` counts its own nodes before each)

    def __post_init__(self):
        self.index = {n.id: n for n in self.nodes}
        self.size = len(self.nodes) + sum(r.body.size for r in self.repeats.values())
        self._names: tuple | None = None

    def find(self, node_id: str) -> Node | None:
        return self.index.get(node_id) or _find(self.repeats, node_id)

    def names(self) -> tuple[list[str], set[str]]:
        """(every node path, every proper path prefix below `prefix`) once expanded, relative to
        `prefix` (each starting with "."): what an elaborator marks as taken for each repeat."""
        if self._names is None:
            cut = len(self.prefix)
            ids = [n.id[cut:] for n in self.nodes]
            for r in self.repeats.values():
                ids += [r.prefix[cut:] + i for i in r.body.names()[0]]
            groups = {i[:k] for i in ids for k in range(1, len(i)) if i[k] == "."}
            self._names = ids, groups
        return self._names


@dataclass(eq=False)
class Repeat:
    """A block instance at `prefix` whose nodes are `body`'s, renamed, on `inputs`."""
    prefix: str
    body: Body
    inputs: tuple[str, ...]
    at: int                          # nodes of the enclosing graph or body created before it

    def renamer(self, outer: "Renamer | None" = None) -> "Renamer":
        new = outer(self.prefix) if outer else self.prefix
        inputs = (outer(i) for i in self.inputs) if outer else self.inputs
        return Renamer(self.body.prefix, new, dict(zip(self.body.inputs, inputs)))

    @cached_property
    def own_renamer(self) -> "Renamer":
        return self.renamer()


class Renamer:
    """Paths of one block instance to another's: under `old` → under `new`, inputs mapped."""

    def __init__(self, old: str, new: str, inputs: dict[str, str]):
        self.old, self.new, self.inputs, self.cut = old, new, inputs, len(old)

    def __call__(self, path: str) -> str:
        if path in self.inputs:
            return self.inputs[path]
        if path == self.old or path.startswith(self.old + "."):
            return self.new + path[self.cut:]
        return path

    def node(self, n: Node) -> Node:
        return replace(n, id=self(n.id), inputs=[self(i) for i in n.inputs], block=self(n.block))


def _find(repeats: dict[str, Repeat], node_id: str) -> Node | None:
    """The node `node_id` inside one of `repeats`, renamed, or None."""
    cut = len(node_id)
    while repeats and (cut := node_id.rfind(".", 0, cut)) > 0:
        r = repeats.get(node_id[:cut])
        if r is not None:
            inner = r.body.find(r.body.prefix + node_id[cut:])
            return None if inner is None else r.own_renamer.node(inner)
    return None


def _unfold(nodes: list[Node], repeats, rename: Renamer | None):
    """`nodes` with every repeat's nodes where it was created, renamed by `rename`."""
    repeats = list(repeats)
    k = 0
    for i, n in enumerate(nodes):
        while k < len(repeats) and repeats[k].at == i:
            yield from _unfold_repeat(repeats[k], rename)
            k += 1
        yield rename.node(n) if rename else n
    for r in repeats[k:]:
        yield from _unfold_repeat(r, rename)


def _unfold_repeat(r: Repeat, outer: Renamer | None):
    yield from _unfold(r.body.nodes, r.body.repeats.values(), r.renamer(outer))


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
    repeats: dict[str, Repeat] = field(default_factory=dict, repr=False)   # not yet expanded
    held: int = field(default=0, repr=False)    # nodes the repeats stand for

    # `g` (below, a property) holds the nodes created one by one; reading it expands the repeats

    def add(self, node: Node) -> Node:
        g = vars(self)["g"]
        g.add_node(node.id, node=node)
        if not self.repeats:   # with repeats, an input may be inside one: expanding adds the edges
            for k, src in enumerate(node.inputs):
                g.add_edge(src, node.id, index=k)
        return node

    def add_repeat(self, prefix: str, body: Body, inputs) -> None:
        self.repeats[prefix] = Repeat(prefix, body, tuple(inputs), len(vars(self)["g"]))
        self.held += body.size

    def node(self, node_id: str) -> Node:
        d = vars(self)["g"]._node.get(node_id)
        if d is not None:
            return d["node"]
        n = _find(self.repeats, node_id)
        if n is None:
            raise KeyError(node_id)
        return n

    def __contains__(self, node_id: str) -> bool:
        return node_id in vars(self)["g"] or _find(self.repeats, node_id) is not None

    def nodes(self) -> Iterator[Node]:
        """Nodes in creation order, which is a topological order."""
        g = self.g
        for n in g.nodes:
            yield g.nodes[n]["node"]

    def own_nodes(self) -> list[Node]:
        """The nodes created one by one (without the repeats'), in creation order."""
        return [d["node"] for d in vars(self)["g"]._node.values()]

    def mark(self) -> tuple[int, int]:
        return len(vars(self)["g"]), len(self.repeats)

    def since(self, mark: tuple[int, int]) -> tuple[list[Node], list[Repeat]]:
        """The nodes and repeats created after `mark` (without walking the others)."""
        g, (n, r) = vars(self)["g"], mark
        nodes = [g._node[i]["node"] for i in islice(reversed(g._node), len(g) - n)][::-1]
        return nodes, list(islice(reversed(self.repeats.values()), len(self.repeats) - r))[::-1]

    def expand(self) -> None:
        """Replace every repeat by its nodes, in creation order (what `g` and `nodes()` do first)."""
        if not self.repeats:
            return
        own, repeats = self.own_nodes(), self.repeats.values()
        vars(self)["g"] = nx.MultiDiGraph()
        self.repeats, self.held = {}, 0
        for n in list(_unfold(own, repeats, None)):
            self.add(n)

    def __len__(self) -> int:
        return len(vars(self)["g"]) + self.held

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

def _expanded_g(graph: Graph) -> nx.MultiDiGraph:
    graph.expand()
    return vars(graph)["g"]


def _set_g(graph: Graph, g: nx.MultiDiGraph) -> None:
    vars(graph)["g"] = g


Graph.g = property(_expanded_g, _set_g, doc="The networkx graph of every node (repeats expanded).")
