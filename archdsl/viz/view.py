"""What a picture of an IR graph shows: which block instances are open clusters, which are
collapsed into one node, which repeated siblings are summarised, and which edges remain.

Rules (also in `archdsl/viz/__init__.py` and docs/viz.md):

* **Level** of a block instance = number of components of its path (`layer3` → 1,
  `layer3.1` → 2, `stages.0.blocks.4` → 4): count the dots and add one.
* **depth=N** shows paths down to N components, as `archdsl cost --depth N` sums its rows:
  everything under one path prefix of N components is ONE node (path, block type — or, for a
  namespace such as a `repeat`'s `layer1`, its contents: `3× Bottleneck` —, output shapes,
  summed params and FLOPs). Block instances of level < N are open clusters. `depth=None`
  opens everything.
* **expand=[path, …]** forces block instances open whatever the depth (what is inside them
  is then collapsed block by block, not by path prefix): a block-instance
  path opens that block (and the blocks around it); a plain namespace such as `layer3` (a
  `repeat`, not a block) opens the outermost block instances under it; a node path opens the
  blocks around that node. Anything else is an `ArchError` with a suggestion.
* **Repeats**: consecutive collapsed sibling block instances (`prefix.i`, `prefix.i+1`, …
  with the same parent) of the same block type, with the same input shapes, output shapes,
  params and FLOPs, and wired as a chain (everything that leaves one enters the next, and the
  next takes nothing else from outside) are drawn as one node `layer3.1–5  Bottleneck ×5`.
  `layer3.0` (stride 2, another shape) stays on its own. `group_repeats=False` turns it off.
* **Edges**: every IR edge u → v is drawn from rep(u) to rep(v), where rep is the node itself
  or the collapsed node that holds it. Edges inside one collapsed node vanish. An edge that
  touches a collapsed node is drawn once per (rep(u), rep(v), u): the same tensor entering a
  block at two places is one arrow. Edges between two plain nodes are drawn one for one, so a
  fully expanded picture has exactly `len(graph.edges())` edges (`x * x` shows two arrows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from archdsl.errors import ArchError, did_you_mean
from archdsl.ir.graph import Graph, Node


@dataclass
class Item:
    """One drawn node: an IR node, a collapsed block instance, or a run of repeated ones."""
    id: str                          # DOT node id
    kind: str                        # "node" | "block" | "run"
    container: str                   # the open block (cluster) it is drawn in; "" = top level
    node: Node | None = None         # kind == "node"
    blocks: list[str] = field(default_factory=list)   # collapsed block paths (block / run)
    type: str = ""                   # block type (block / run)
    members: list[str] = field(default_factory=list)  # IR node ids inside (block / run)
    out_nodes: list[str] = field(default_factory=list)  # members whose tensor leaves the item

    @property
    def title(self) -> str:
        if self.kind != "run":
            return self.blocks[0] if self.blocks else self.id
        first, last = self.blocks[0], self.blocks[-1]
        return f"{first}–{last.rsplit('.', 1)[1]}"


@dataclass
class Edge:
    src: str          # item ids
    dst: str
    tensor: str       # the IR node whose output the edge carries
    index: int        # input position at the IR consumer (of the first IR edge drawn here)


@dataclass
class View:
    items: dict[str, Item]            # drawn nodes, in topological order of their first member
    rep: dict[str, str]               # IR node id → item id
    clusters: list[str]               # open block instances, parents before children
    cluster_parent: dict[str, str]    # open block → the open block around it ("" = top)
    edges: list[Edge]


def level(path: str) -> int:
    return path.count(".") + 1


def _parent_block(path: str, blocks) -> str:
    """The nearest enclosing block instance of a block path ("" = the network)."""
    while "." in path:
        path = path.rsplit(".", 1)[0]
        if path in blocks:
            return path
    return ""


def group_type(prefix: str, blocks, nodes: int) -> str:
    """What a namespace holds: '3× Bottleneck' (its outermost block instances by type), else
    'N nodes'."""
    inner = [b.type for p, b in blocks.items()
             if p.startswith(prefix + ".") and _parent_block(p, blocks) == _parent_block(prefix, blocks)]
    if not inner:
        return f"{nodes} nodes"
    kinds = sorted(set(inner), key=inner.index)
    return ", ".join(f"{inner.count(t)}× {t}" for t in kinds)


def readable_depth(graph: Graph, most: int = 40) -> int | None:
    """The deepest depth whose picture has at most `most` boxes (at least 1; None when the
    whole graph is that small)."""
    deepest = max((level(n.id) for n in graph.nodes()), default=1)
    for depth in range(1, deepest + 1):
        if len(build_view(graph, depth).items) > most:
            return max(depth - 1, 1)
    return None


def build_view(graph: Graph, depth: int | None = None, expand: Iterable[str] = (),
               group_repeats: bool = True,
               costs: dict[str, tuple[int, int]] | None = None) -> View:
    """Decide what is drawn. `costs` (node id → (params + buffers, flops + other_flops)) is
    only used to tell repeated blocks apart; it is computed from shapes when not given."""
    if depth is not None and depth < 0:
        raise ArchError(f"depth must be 0 or more, got {depth}",
                        hint="depth=1 collapses every top-level block; omit it to expand all")
    blocks = graph.blocks
    # parents before children: sort by level (stable, so creation order within a level)
    order = sorted(blocks, key=level)
    parent = {b: _parent_block(b, blocks) for b in order}

    opened = {b for b in order if depth is None or level(b) < depth}
    for b in _resolve_expand(graph, expand, parent):
        while b:
            opened.add(b)
            b = parent[b]

    # the outermost closed block around each block (None when it and all around it are open)
    root: dict[str, str | None] = {}
    for b in order:
        p = parent[b]
        up = root[p] if p else None
        root[b] = up if up is not None else (None if b in opened else b)

    # which block owns each node: node.block, or its nearest prefix that is a block instance
    # (sequences such as `stem: [conv, ln]` name a namespace, not a block)
    owner_cache: dict[str, str] = {}

    def owner(ns: str) -> str:
        hit = owner_cache.get(ns)
        if hit is None:
            b = ns
            while b and b not in blocks:
                b = b.rsplit(".", 1)[0] if "." in b else ""
            owner_cache[ns] = hit = b
        return hit

    def forced(own: str) -> bool:
        """Inside a block that `expand` opened below the depth."""
        while own:
            if own in opened and depth is not None and level(own) >= depth:
                return True
            own = parent[own]
        return False

    items: dict[str, Item] = {}
    rep: dict[str, str] = {}
    for node in graph.nodes():
        own = owner(node.block)
        closed = root[own] if own else None
        if depth and level(node.id) > depth and not forced(own):
            prefix = ".".join(node.id.split(".")[:depth])
            closed = prefix
            if prefix not in items:
                members = [n.id for n in graph.nodes() if n.id.startswith(prefix + ".")]
                kind = blocks[prefix].type if prefix in blocks else group_type(prefix, blocks, len(members))
                items[prefix] = Item(prefix, "block", _parent_block(prefix, blocks),
                                     blocks=[prefix], type=kind)
            rep[node.id] = prefix
            items[prefix].members.append(node.id)
        elif closed is None:
            rep[node.id] = node.id
            items[node.id] = Item(node.id, "node", own, node=node)
        else:
            rep[node.id] = closed
            it = items.get(closed)
            if it is None:
                it = items[closed] = Item(closed, "block", parent[closed], blocks=[closed],
                                          type=blocks[closed].type)
            it.members.append(node.id)

    g = graph.g
    outputs = set(graph.outputs.values())
    for it in items.values():
        if it.kind == "block":
            it.out_nodes = [m for m in it.members
                            if m in outputs or any(rep[v] != it.id for v in g.successors(m))]

    if group_repeats:
        _group_runs(graph, items, rep, costs)

    clusters = [b for b in order if b in opened and root[b] is None]
    cluster_parent = {b: parent[b] for b in clusters}

    edges: list[Edge] = []
    seen: set[tuple[str, str, str]] = set()
    for u, v, k in g.edges(data="index"):
        ru, rv = rep[u], rep[v]
        if ru == rv:
            continue
        if ru != u or rv != v:
            key = (ru, rv, u)
            if key in seen:
                continue
            seen.add(key)
        edges.append(Edge(ru, rv, u, k))
    return View(items, rep, clusters, cluster_parent, edges)


def _resolve_expand(graph: Graph, expand: Iterable[str], parent: dict[str, str]) -> list[str]:
    if isinstance(expand, str):
        expand = [expand]
    out: list[str] = []
    blocks = graph.blocks
    for raw in expand:
        p = raw.strip().strip(".")
        if p in blocks:
            out.append(p)
            continue
        if p in graph:                       # a node: open the blocks around it
            b = graph.node(p).block
            while b and b not in blocks:
                b = b.rsplit(".", 1)[0] if "." in b else ""
            if b:
                out.append(b)
            continue
        under = [b for b in blocks if b.startswith(p + ".")]
        outermost = [b for b in under if not parent[b].startswith(p + ".")]
        if not outermost:
            hint = did_you_mean(p, list(blocks)) or (
                "block instances: " + ", ".join(list(blocks)[:8]) + (" …" if len(blocks) > 8 else "")
                if blocks else "this graph has no block instances")
            raise ArchError(f"cannot expand '{raw}': no block instance at or under that path",
                            hint=hint)
        out.extend(outermost)
    return out


def _signature(graph: Graph, it: Item, rep: dict[str, str]):
    g = graph.g
    seen: dict[str, None] = {}            # ordered set of the tensors entering from outside
    for m in it.members:
        for u in g.predecessors(m):
            if rep[u] != it.id:
                seen[u] = None
    ins = list(seen)
    in_shapes = tuple(graph.node(u).shape for u in ins)
    out_shapes = tuple(graph.node(m).shape for m in it.out_nodes)
    return (it.type, in_shapes, out_shapes), ins


def _group_runs(graph: Graph, items: dict[str, Item], rep: dict[str, str],
                node_costs: dict[str, tuple[int, int]] | None) -> None:
    """Merge chains of identical collapsed sibling blocks into one "run" item (see module doc)."""
    from archdsl.ir.cost import node_cost   # shape-only costs, to compare members

    def one(m: str) -> tuple[int, int]:
        if node_costs is not None and m in node_costs:
            return node_costs[m]
        c = node_cost(graph, graph.node(m), 4)
        return c.params + c.buffers, c.flops + c.other_flops

    info: dict[str, tuple] = {}
    for it in items.values():
        if it.kind != "block" or "." not in it.id:
            continue
        prefix, last = it.id.rsplit(".", 1)
        if last.isdigit():
            sig, ins = _signature(graph, it, rep)
            info[it.id] = (prefix, int(last), sig, ins)
    if len(info) < 2:
        return

    costs: dict[str, tuple[int, int]] = {}

    def cost_key(iid: str) -> tuple[int, int]:
        if iid not in costs:
            p = f = 0
            for m in items[iid].members:
                dp, df = one(m)
                p += dp
                f += df
            costs[iid] = (p, f)
        return costs[iid]

    head_of: dict[str, str] = {}          # member block → first block of its run
    runs: dict[str, list[str]] = {}
    prev: str | None = None
    for iid in items:
        if iid not in info:
            continue
        if prev is not None and _chained(graph, items, rep, info, prev, iid) \
                and cost_key(prev) == cost_key(iid):
            head = head_of[prev]
            runs[head].append(iid)
        else:
            head = iid
            runs[head] = [iid]
        head_of[iid] = head
        prev = iid
    if all(len(r) < 2 for r in runs.values()):
        return

    rebuilt: dict[str, Item] = {}
    for iid, it in items.items():
        run = runs.get(head_of.get(iid, ""), ())
        if len(run) < 2:
            rebuilt[iid] = it
            continue
        if iid != run[0]:
            continue                      # folded into the run at its head's position
        rid = f"{run[0]}…{run[-1]}"
        merged = Item(rid, "run", it.container, blocks=list(run), type=it.type)
        for b in run:
            merged.members.extend(items[b].members)
        for m in merged.members:
            rep[m] = rid
        merged.out_nodes = list(items[run[-1]].out_nodes)
        rebuilt[rid] = merged
    items.clear()
    items.update(rebuilt)


def _chained(graph: Graph, items, rep, info, a: str, b: str) -> bool:
    pa, ia, sa, _ = info[a]
    pb, ib, sb, ins_b = info[b]
    if pa != pb or ib != ia + 1 or sa != sb or items[a].container != items[b].container:
        return False
    g = graph.g
    # everything b takes from outside comes from a, and everything leaving a goes into b
    if any(rep[u] != a for u in ins_b):
        return False
    for m in items[a].out_nodes:
        if m in graph.outputs.values() or any(rep[v] not in (a, b) for v in g.successors(m)):
            return False
    return True
