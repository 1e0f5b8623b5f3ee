"""A topology (networks trained together: MoCo, DINO, a GAN …) → graphviz DOT text.

    from archdsl import load_topology
    from archdsl.viz import render, topology_to_dot
    ir = load_topology("moco_v2")
    render(ir, "moco.svg")                        # every network one node
    text = topology_to_dot(ir, depth=2)           # each network's top-level blocks drawn

What is drawn (docs/viz.md, "Topologies"):

* **networks** on the right (in `cluster_networks`), each a cluster `cluster_net_<name>`,
  a twin right below its source. With `depth=1` (the default) a network is ONE node: name,
  block type, params, and `input → output` shape with FLOPs for every input shape it is
  called at. `depth=N` > 1 draws the network's own graph inside its cluster with the network
  view at depth N − 1 (`archdsl.viz.view`: the same collapsing and repeat rules). A momentum
  twin has its source's graph, so it stays one node unless `expand` names it.
  `expand=["key", "query.backbone.layer3"]` opens a network (a bare name) or blocks inside
  one (`<net>.<block path>`, as the network view's `expand`) whatever the depth;
* **momentum twins**: a dashed edge from the source to the twin, labelled `ema(m)` and, for a
  scheduled momentum, `cosine m→end`;
* **state** (`queue`, `center` …): cylinders with their shape, initialiser and dtype, drawn
  once and shared by every phase that reads them;
* **phases** on the left, one above the other, each a cluster `cluster_phase_<name>` of its
  loss graph titled `phase <name>  update=[nets]` (and `×k` when it runs k times a round).
  Nodes are drawn as in the network view (inputs ellipses, the loss and logs with a thick
  border: `⇒ loss`, `⇒ log <name>`); every edge carries its tensor's shape. A net call is a
  node filled like the network it calls and joined to it by a dotted line; it says
  `trained here` when the phase updates that network, `no grad` for a twin, and
  `shuffle BN` for a `shuffle_bn` call;
* **stop-gradient**: a `stop_grad` node is folded into its edges: each edge out of it is
  drawn from its input, red and dashed, labelled `stop-grad · <shape>` (one that is the
  loss or a log, or feeds nothing, stays a node);
* **after-step updates** (`after enqueue(queue, ptr, k)`): a bold blue edge from the kept
  tensor to each state it updates, labelled with the update kind (and its options).

DOT node ids: `net:<name>` (a collapsed network), `net:<name>/<item>` (inside an open one),
`state:<name>`, `<phase>/<node id>` (phase nodes).
"""
from __future__ import annotations

from typing import Iterable

from archdsl.errors import ArchError, did_you_mean
from archdsl.ir.cost import cost
from archdsl.ir.graph import Node
from archdsl.ir.topology import EmaSpec, NetDecl, Phase, TopologyIR
from archdsl.viz.dot import (BLOCK_FILL, CLUSTER_PEN, COST, DETAIL, FONT, _Writer, _esc,
                             _is_default_name, _q, _table, cluster_name, human,
                             network_writer, shape_text)
from archdsl.viz.view import build_view

NET_FILL = BLOCK_FILL      # a trained network and its calls
TWIN_FILL = "#e6e1f0"      # a momentum twin and its calls
STATE_FILL = "#fdebd3"
NETS_BG = "#f4f6f9"
PHASE_BG = "#f7f7f2"
EMA_INK = "#6a51a3"
SG_INK = "#c62828"
UPDATE_INK = "#1f6fb4"
CALL_INK = "#9a9a9a"
STATE_INK = "#b0651b"


def topology_to_dot(ir: TopologyIR, *, depth: int | None = 1, expand: Iterable[str] = (),
                    group_repeats: bool = True) -> str:
    """The topology as graphviz DOT text (see the module doc for what is drawn). `depth=1`
    (or None) draws each network as one node; `depth=N` opens them to network depth N − 1."""
    depth = 1 if depth is None else depth
    if depth < 0:
        raise ArchError(f"depth must be 0 or more, got {depth}",
                        hint="depth=1 draws every network as one node; depth=2 opens them")
    return _TopologyWriter(ir, depth, _resolve_expand(ir, expand), group_repeats).write()


def _resolve_expand(ir: TopologyIR, expand: Iterable[str]) -> dict[str, list[str]]:
    """`["query", "query.backbone.layer3"]` → {"query": ["backbone.layer3"]}: the networks
    to open and the block paths to open inside each."""
    if isinstance(expand, str):
        expand = [expand]
    out: dict[str, list[str]] = {}
    for raw in expand:
        p = raw.strip().strip(".")
        name, _, rest = p.partition(".")
        if name not in ir.nets:
            raise ArchError(f"cannot expand '{raw}': no network '{name}' in topology "
                            f"'{ir.variant or ir.name}'",
                            hint=did_you_mean(name, list(ir.nets))
                            or "networks: " + ", ".join(ir.nets))
        out.setdefault(name, [])
        if rest:
            out[name].append(rest)
    return out


class _TopologyWriter:
    def __init__(self, ir: TopologyIR, depth: int, opened: dict[str, list[str]],
                 group_repeats: bool):
        self.ir, self.depth, self.opened, self.group_repeats = ir, depth, opened, group_repeats
        self.taken: set[str] = set()
        self.net_writers: dict[str, _Writer] = {}
        self.net_cluster: dict[str, str] = {}
        self.totals = {name: cost(d.first_graph).totals for name, d in ir.nets.items()
                       if d.graphs}

    # -- networks
    def is_open(self, name: str) -> bool:
        d = self.ir.nets[name]
        if not d.graphs:
            return False
        if name in self.opened:
            return True
        return self.depth > 1 and d.twin is None

    def net_fill(self, name: str) -> str:
        return TWIN_FILL if self.ir.nets[name].twin is not None else NET_FILL

    def net_type(self, d: NetDecl) -> str:
        if not d.graphs:
            return ""
        g = d.first_graph
        return (g.node(g.inputs[0]).block_type or "") if g.inputs else ""

    def calls(self, d: NetDecl) -> list[str]:
        """`in → out · FLOPs` for every input shape the network is called at."""
        rows = []
        for shapes, g in d.graphs.items():
            ins = ", ".join(shape_text(s) for s in shapes)
            outs = "; ".join(shape_text(g.node(o).shape) for o in g.outputs.values())
            flops = cost(g).totals.flops if len(d.graphs) > 1 else self.totals[d.name].flops
            rows.append(f"{ins} → {outs} · {human(flops, 'FLOPs')}")
        return rows

    def net_stmt(self, d: NetDecl, indent: str) -> str:
        t = self.totals.get(d.name)
        if t is None and d.twin is not None:      # a twin nobody calls: its source's weights
            t = self.totals.get(d.twin.source)
        kind = self.net_type(d)
        rows = [f'<font point-size="13"><b>{_esc(d.name)}</b></font>']
        sub = [kind] if kind else []
        if d.twin is not None:
            sub.append(f"EMA twin of {d.twin.source}")
        if sub:
            rows.append(f"<i>{_esc(' · '.join(sub))}</i>")
        if t is not None:
            note = " (not trained)" if d.twin is not None else ""
            rows.append(f'<font point-size="9" color="{COST}">{human(t.params)} params{note}</font>')
        for line in self.calls(d):
            rows.append(f'<font point-size="9" color="{DETAIL}">{_esc(line)}</font>')
        if not d.graphs:
            rows.append(f'<font point-size="9" color="{DETAIL}">not called by any phase</font>')
        return (f'{indent}{_q("net:" + d.name)} [shape=box3d, style=filled, '
                f'fillcolor="{self.net_fill(d.name)}", margin="0.16,0.08", '
                f'label=<{_table(rows)}>];')

    def net_cluster_stmts(self, d: NetDecl, indent: str) -> list[str]:
        name = d.name
        cname = cluster_name("net_" + name, self.taken)
        self.net_cluster[name] = cname
        out = [f"{indent}subgraph {cname} {{"]
        if not self.is_open(name):
            out.append(f'{indent}  graph [label="", tooltip={_q(name)}, peripheries=0, margin=4];')
            out.append(self.net_stmt(d, indent + "  "))
            out.append(indent + "}")
            return out
        g = d.first_graph
        w = network_writer(g, depth=max(self.depth - 1, 1),
                           expand=self.opened.get(name, ()), group_repeats=self.group_repeats,
                           prefix=f"net:{name}/")
        self.net_writers[name] = w
        t = self.totals[name]
        kind = self.net_type(d)
        head = f'<font point-size="13"><b>{_esc(name)}</b></font>'
        if kind:
            head += f"  <i>{_esc(kind)}</i>"
        if d.twin is not None:
            head += f"  <i>EMA twin of {_esc(d.twin.source)}</i>"
        note = " (not trained)" if d.twin is not None else ""
        lines = [head, f'<font point-size="9" color="{COST}">{human(t.params)} params{note}</font>']
        for line in self.calls(d):
            lines.append(f'<font point-size="9" color="{DETAIL}">{_esc(line)}</font>')
        label = "<br align='left'/>".join(lines) + "<br align='left'/>"
        out.append(f'{indent}  graph [label=<{label}>, style="rounded,filled", '
                   f'fillcolor="{self.net_fill(name)}", color="{CLUSTER_PEN}", fontsize=10, '
                   f'labeljust=l, margin=10];')
        out += w.body(indent + "  ", level=1, tag=f"net_{name}__", taken=self.taken)
        out.append(indent + "}")
        return out

    def anchor(self, name: str, end: str, at: str) -> tuple[str, str]:
        """(DOT node id, extra edge attributes) for an edge that meets network `name`: its
        collapsed node, or in an open cluster its first input (`at="input"`) or output
        (`at="output"`) with the edge clipped at the cluster's border; `end` says which end
        of the edge ("tail" or "head") that is."""
        w = self.net_writers.get(name)
        if w is None:
            return _q("net:" + name), ""
        g = w.graph
        node = g.inputs[0] if at == "input" and g.inputs else next(iter(g.outputs.values()))
        return w.nid(w.view.rep[node]), f", l{end}={self.net_cluster[name]}"

    # -- phases
    def phase_stmts(self, ph: Phase, indent: str) -> tuple[list[str], list[str]]:
        """(the phase cluster, the edges drawn from and to its nodes)."""
        g = ph.graph
        pre = ph.name + "/"
        folded = self.folded_stop_grads(ph)
        w = _Writer(g, build_view(g), {}, None, None, "TB", pre)
        w.output_word = ""
        w.outputs = {}
        w.outputs.setdefault(ph.loss, []).append("loss")
        for k, nid in ph.logs.items():
            w.outputs.setdefault(nid, []).append(f"log {k}")

        upd = ", ".join(ph.update)
        title = f'<font point-size="13"><b>phase {_esc(ph.name)}</b></font>  update=[{_esc(upd)}]'
        if ph.repeat > 1:
            title += f"  ×{ph.repeat}"
        cname = cluster_name("phase_" + ph.name, self.taken)
        body = [f"{indent}subgraph {cname} {{",
                f'{indent}  graph [label=<{title}>, style="rounded,filled", fillcolor="{PHASE_BG}", '
                f'color="{CLUSTER_PEN}", fontsize=10, labeljust=l, margin=10];']
        edges: list[str] = []
        for n in g.nodes():
            if n.kind == "state" or n.id in folded:
                continue
            if n.kind == "net":
                body.append(indent + "  " + self.call_stmt(ph, n, w))
                tail, extra = self.anchor(n.attrs["name"], "tail", "input")
                edges.append(f"  {tail} -> {w.nid(n.id)} [style=dotted, arrowhead=none, "
                             f'color="{CALL_INK}", constraint=false{extra}];')
            else:
                body.append(indent + "  " + w.node_stmt(w.view.items[n.id]))
        body.append(indent + "}")

        def source(u: str) -> tuple[str, bool]:
            """(DOT id the tensor of u is drawn from, whether a stop-gradient lies between)."""
            sg = False
            while u in folded:
                u, sg = g.node(u).inputs[0], True
            node = g.node(u)
            if node.kind == "state":
                return _q("state:" + node.attrs["name"]), sg
            return w.nid(u), sg

        for u, v, _ in g.edges():
            if v in folded:
                continue
            src, sg = source(u)
            shape = shape_text(g.node(u).shape)
            if sg:
                edges.append(f"  {src} -> {w.nid(v)} [label={_q('stop-grad · ' + shape)}, "
                             f'style=dashed, color="{SG_INK}", fontcolor="{SG_INK}", penwidth=1.4];')
            elif g.node(u).kind == "state":
                edges.append(f"  {src} -> {w.nid(v)} [label={_q(shape)}, color=\"{STATE_INK}\"];")
            else:
                edges.append(f"  {src} -> {w.nid(v)} [label={_q(shape)}];")
        for a in ph.actions:
            opts = " ".join(f"{k}={_opt(v)}" for k, v in a.options.items())
            label = f"after: {a.kind}" + (f" ({opts})" if opts else "")
            for t in a.tensors:
                src, _ = source(t)
                for st in a.states:
                    edges.append(f"  {src} -> {_q('state:' + st)} [label={_q(label)}, "
                                 f'color="{UPDATE_INK}", fontcolor="{UPDATE_INK}", penwidth=1.6, '
                                 f'style=bold];')
        return body, edges

    def folded_stop_grads(self, ph: Phase) -> set[str]:
        """stop_grad nodes drawn as edges: those that feed something and are no loss or log."""
        g = ph.graph
        shown = {ph.loss, *ph.logs.values()}
        return {n.id for n in g.nodes() if n.op == "stop_grad" and n.id not in shown
                and len(n.inputs) == 1 and any(True for _ in g.g.successors(n.id))}

    def call_stmt(self, ph: Phase, n: Node, w: _Writer) -> str:
        name = n.attrs["name"]
        d = self.ir.nets[name]
        title = f"<b>{_esc(name)}</b>" if _is_default_name(n.id, name) \
            else f"<b>{_esc(n.id)}</b>: {_esc(name)}"
        rows = [title]
        notes = []
        if n.attrs.get("shuffle"):
            notes.append("shuffle BN")
        if d.twin is not None:
            notes.append("no grad")
        elif name in ph.update:
            notes.append("trained here")
        if notes:
            rows.append(f'<font point-size="8" color="{DETAIL}">{_esc(" · ".join(notes))}</font>')
        flops = n.attrs.get("flops")
        if flops:
            rows.append(f'<font point-size="8" color="{COST}">{human(flops, "FLOPs")}</font>')
        outs = w.outputs.get(n.id)
        extra = ""
        if outs:
            rows.append(f'<font point-size="8"><b>⇒ {_esc(", ".join(outs))}</b></font>')
            extra = ", penwidth=2"
        return (f'{w.nid(n.id)} [shape=box, style="filled", fillcolor="{self.net_fill(name)}"'
                f'{extra}, label=<{_table(rows)}>];')

    # -- state
    def state_stmt(self, name: str, indent: str) -> str:
        st = self.ir.states[name]
        rows = [f"<b>{_esc(name)}</b>", f'<font point-size="9">{_esc(shape_text(st.shape))}</font>']
        detail = [f"init {_opt(st.init)}"]
        if st.dtype != "float32":
            detail.append(st.dtype)
        rows.append(f'<font point-size="8" color="{DETAIL}">{_esc(" · ".join(detail))}</font>')
        return (f'{indent}{_q("state:" + name)} [shape=cylinder, fillcolor="{STATE_FILL}", '
                f'color="{STATE_INK}", margin="0.12,0.06", label=<{_table(rows)}>];')

    # -- the document
    def title(self) -> str:
        ir = self.ir
        name = ir.variant or ir.name
        kind = f" ({ir.name})" if ir.variant and ir.variant != ir.name else ""
        trained = sum(self.totals[n].params for n, d in ir.nets.items()
                      if d.twin is None and n in self.totals)
        twins = sum(1 for d in ir.nets.values() if d.twin is not None)
        parts = [f"{len(ir.nets)} networks" + (f" ({twins} EMA twin{'s' * (twins > 1)})"
                                               if twins else ""),
                 f"{human(trained)} trained params",
                 f"{len(ir.phases)} phase{'s' * (len(ir.phases) != 1)}"]
        if ir.states:
            parts.append(f"state: {', '.join(ir.states)}")
        key = [f'<font color="{EMA_INK}">- - ema: momentum twin</font>',
               f'<font color="{SG_INK}">- - stop-grad</font>',
               f'<font color="{UPDATE_INK}">━ after-step update of a state</font>',
               f'<font color="{CALL_INK}">··· calls the network</font>']
        rows = [f'<font point-size="16"><b>{_esc(name)}</b>{_esc(kind)}  topology</font>',
                f'<font point-size="10">{_esc(" · ".join(parts))}</font>',
                '<font point-size="8">' + "   ".join(key) + "</font>"]
        return ('<<table border="0" cellborder="0" cellspacing="1" cellpadding="1">'
                + "".join(f"<tr><td>{r}</td></tr>" for r in rows) + "</table>>")

    def write(self) -> str:
        ir = self.ir
        out = [
            f"digraph {_q(ir.variant or ir.name)} {{",
            f'  graph [rankdir=TB, newrank=true, compound=true, fontname="{FONT}", '
            f'labelloc=t, labeljust=l, ranksep=0.3, nodesep=0.3, pad=0.2, '
            f'label={self.title()}];',
            f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=10, '
            f'margin="0.1,0.03", height=0.3, penwidth=0.8, color="#555555"];',
            f'  edge [fontname="{FONT}", fontsize=7, fontcolor="#666666", arrowsize=0.5, '
            f'penwidth=0.8, color="#666666"];',
        ]
        # the networks first (phases need their anchors), but written last: graphviz then
        # keeps the lines from the networks to the calls between the two columns instead of
        # routing them around the phases
        nets = ["  subgraph cluster_networks {",
                f'    graph [label=<<b>networks</b>>, style="rounded,filled", '
                f'fillcolor="{NETS_BG}", color="#c0c8d4", fontsize=11, labeljust=l, margin=10];']
        self.taken.add("cluster_networks")
        order = _column_order(ir)
        for name in order:
            nets += self.net_cluster_stmts(ir.nets[name], "    ")
        nets.append("  }")
        edges: list[str] = []
        prev = None
        for ph in ir.phases.values():
            body, pe = self.phase_stmts(ph, "  ")
            out += body
            edges += pe
            # phases one above the other, beside the networks
            first = next(n.id for n in ph.graph.nodes() if n.kind != "state")
            if prev is not None:
                edges.append(f"  {prev} -> {_q(ph.name + '/' + first)} [style=invis];")
            prev = _q(ph.name + "/" + ph.loss)
        for name in ir.states:
            out.append(self.state_stmt(name, "  "))
        if len(ir.states) > 1:            # side by side, not scattered over the picture
            out.append("  { rank=same; " + " ".join(_q("state:" + n) for n in ir.states) + " }")
        out += nets
        for w in self.net_writers.values():
            edges += w.edge_stmts()
        for d in ir.nets.values():
            if d.twin is not None and d.twin.source in ir.nets:
                tail, te = self.anchor(d.twin.source, "tail", "output")
                head, he = self.anchor(d.name, "head", "input")
                edges.append(f"  {tail} -> {head} [label={_ema_label(d.twin)}, style=dashed, "
                             f'color="{EMA_INK}", fontcolor="{EMA_INK}", fontsize=9, '
                             f'penwidth=1.4{te}{he}];')
        # networks one above the other (a twin already sits below its source)
        for a, b in zip(order, order[1:]):
            if ir.nets[b].twin is None or ir.nets[b].twin.source != a:
                edges.append(f"  {self.anchor(a, 'tail', 'output')[0]} -> "
                             f"{self.anchor(b, 'head', 'input')[0]} "
                             f"[style=invis];")
        out += edges
        out.append("}")
        return "\n".join(out) + "\n"


def _column_order(ir: TopologyIR) -> list[str]:
    """The networks top to bottom: in declaration order, each twin right below its source."""
    twins: dict[str, list[str]] = {}
    for name, d in ir.nets.items():
        if d.twin is not None and d.twin.source in ir.nets:
            twins.setdefault(d.twin.source, []).append(name)
    out: list[str] = []

    def put(name: str) -> None:
        out.append(name)
        for t in twins.get(name, ()):
            put(t)

    for name, d in ir.nets.items():
        if d.twin is None or d.twin.source not in ir.nets:
            put(name)
    return out


def _ema_label(spec: EmaSpec) -> str:
    """The quoted label of a twin's edge: `"ema(0.999)"`, `"ema(0.996)\\ncosine 0.996→1"`."""
    label = _q(f"ema({spec.momentum:g})")
    if spec.schedule == "cosine":
        label = label[:-1] + f"\\ncosine {spec.momentum:g}→{spec.end:g}\""
    return label


def _opt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
