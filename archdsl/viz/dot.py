"""IR graph → graphviz DOT text. Strings are built directly (no graphviz objects), so a graph
of thousands of nodes becomes DOT in milliseconds; see `archdsl.viz.view` for what is drawn."""
from __future__ import annotations

import math
import re
from typing import Any, Iterable

from archdsl.errors import ArchError
from archdsl.ir.cost import CostReport, NodeCost, cost
from archdsl.ir.graph import Graph, Node
from archdsl.viz.view import Item, View, build_view

FONT = "Helvetica"
# light → dark ramps (ColorBrewer Oranges / Blues, 9 classes); index 0 = nothing
RAMPS = {
    "flops": ["#fff5eb", "#fee6ce", "#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913", "#d94801",
              "#a63603", "#7f2704"],
    "params": ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5",
               "#08519c", "#08306b"],
}
DARK_FROM = 6              # ramp index from which labels are white
# cluster backgrounds by nesting level (1, 2, 3, …; cycles)
CLUSTER_FILLS = ["#f4f6f9", "#e9eef5", "#dfe7f1", "#d5dfed"]
CLUSTER_PEN = "#8a9bb0"
NODE_FILL = "#ffffff"
INPUT_FILL = "#e4f3e1"
PARAM_FILL = "#fff4cc"
BLOCK_FILL = "#dce6f2"
DETAIL = "#4a4a4a"         # attribute line
COST = "#1d4f91"           # params / FLOPs line
SHORT = {"kernel": "k", "stride": "s", "pad": "p", "dilation": "d", "groups": "g"}
MAX_ATTR_CHARS = 34        # per attribute line
MAX_VALUE_CHARS = 18


# ------------------------------------------------------------------ formatting helpers

def human(n: float, unit: str = "") -> str:
    """1234 → '1.23K', 25_557_032 → '25.6M'; with unit 'FLOPs': '4.09 GFLOPs'."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            text = f"{n / div:.3g}"
            return f"{text} {suffix}{unit}" if unit else f"{text}{suffix}"
    text = f"{n:.3g}" if isinstance(n, float) else str(n)
    return f"{text} {unit}" if unit else text


def shape_text(shape: Any) -> str:
    """(1, 64, 56, 56) → '1×64×56×56'; a multi-output shape → 'a×b, c×d'; () → 'scalar'."""
    if shape and isinstance(shape[0], (tuple, list)):
        return ", ".join(shape_text(s) for s in shape)
    return "×".join(str(d) for d in shape) if shape else "scalar"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        if v and len(set(map(repr, v))) == 1 and len(v) == 2 and isinstance(v[0], int):
            return str(v[0])              # (3, 3) → 3
        text = "[" + ",".join(_value(x) for x in v) + "]"
    else:
        text = str(v)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


_FIELDS: dict[type, list[tuple[str, Any, bool]]] = {}


def _fields(cls) -> list[tuple[str, Any, bool]]:
    """(name, default, required) of a pydantic attrs model, cached per class."""
    got = _FIELDS.get(cls)
    if got is None:
        got = []
        for name, f in getattr(cls, "model_fields", {}).items():
            req = f.is_required()
            got.append((name, None if req else f.get_default(call_default_factory=True), req))
        _FIELDS[cls] = got
    return got


def key_attrs(attrs: Any) -> list[str]:
    """`name=value` for every attribute that is required or differs from its default, in
    declaration order, with short names for conv/pool windows (kernel → k, stride → s …)."""
    if attrs is None or isinstance(attrs, dict):
        return []
    out = []
    for name, default, required in _fields(type(attrs)):
        v = getattr(attrs, name, None)
        if not required and _same(v, default):
            continue
        if name == "out":
            out.append(f"out={_value(v)}")
        else:
            out.append(f"{SHORT.get(name, name)}={_value(v)}")
    return out


def _same(a, b) -> bool:
    try:
        return bool(a == b) or (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list))
                                and list(a) == list(b))
    except Exception:  # pragma: no cover - exotic attribute values
        return False


def _wrap(parts: list[str], width: int = MAX_ATTR_CHARS, lines: int = 2) -> list[str]:
    out: list[str] = []
    cur = ""
    for p in parts:
        if cur and len(cur) + 1 + len(p) > width:
            out.append(cur)
            cur = p
        else:
            cur = f"{cur} {p}" if cur else p
    if cur:
        out.append(cur)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][:width - 1] + "…"
    return out


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _table(rows: list[str]) -> str:
    """An HTML-like label of one cell per line: unlike <br/> lines, cells keep a line's
    underscores and descenders clear of the (smaller) line below."""
    return ('<table border="0" cellborder="0" cellspacing="0" cellpadding="0">'
            + "".join(f"<tr><td>{r}</td></tr>" for r in rows) + "</table>")


def _cost_line(params: int, flops: int) -> str:
    parts = []
    if params:
        parts.append(f"{human(params)} params")
    if flops:
        parts.append(human(flops, "FLOPs"))
    return " · ".join(parts)


# ------------------------------------------------------------------ colouring

class _Colour:
    """Fill colour by a node's share of the total params or FLOPs, binned on a light → dark
    ramp of 9 classes relative to the largest drawn node (a square-root scale, so the many
    small nodes stay distinguishable); the legend states each class's share of the total."""

    def __init__(self, metric: str, values: Iterable[int], total: int):
        self.metric, self.ramp = metric, RAMPS[metric]
        self.total = total
        self.max = max([v for v in values] + [0])

    def index(self, v: int) -> int:
        if v <= 0 or self.max <= 0:
            return -1
        n = len(self.ramp) - 1
        return min(n, max(1, math.ceil(n * math.sqrt(v / self.max))))

    def fill(self, v: int) -> tuple[str, str] | None:
        i = self.index(v)
        if i < 0:
            return None
        return self.ramp[i], ("#ffffff" if i >= DARK_FROM else "#000000")

    def legend(self) -> str:
        if self.max <= 0 or self.total <= 0:
            return f"<font point-size='9'>colour: {self.metric} (none in this graph)</font>"
        n = len(self.ramp) - 1
        cells = []
        for i in range(1, n + 1):
            hi = (i / n) ** 2 * self.max / self.total * 100
            fc = "#ffffff" if i >= DARK_FROM else "#000000"
            cells.append(f'<td bgcolor="{self.ramp[i]}"><font color="{fc}" point-size="8">'
                         f"≤{hi:.2g}%</font></td>")
        name = "FLOPs" if self.metric == "flops" else "params"
        return ('<table border="0" cellborder="1" cellspacing="0" cellpadding="3"><tr>'
                f'<td border="0"><font point-size="9">fill = share of total {name}:</font></td>'
                + "".join(cells) + "</tr></table>")


# ------------------------------------------------------------------ DOT

def to_dot(graph: Graph, *, depth: int | None = None, expand: Iterable[str] = (),
           color: str | None = None, report: CostReport | None = None,
           group_repeats: bool = True, rankdir: str = "TB") -> str:
    """The graph as graphviz DOT text (see `archdsl.viz` for the collapsing rules)."""
    return network_writer(graph, depth=depth, expand=expand, color=color, report=report,
                          group_repeats=group_repeats, rankdir=rankdir).write()


def network_writer(graph: Graph, *, depth: int | None = None, expand: Iterable[str] = (),
                   color: str | None = None, report: CostReport | None = None,
                   group_repeats: bool = True, rankdir: str = "TB",
                   prefix: str = "") -> "_Writer":
    """What `to_dot` writes, before it is written: `.write()` gives the whole document, and
    `.body()` / `.edge_stmts()` its statements for a picture drawn inside another (the node
    ids prefixed with `prefix`), as `archdsl.viz.topology` draws a topology's networks."""
    if color not in (None, "flops", "params"):
        raise ArchError(f"unknown colour mode '{color}'", hint="use 'flops' or 'params'")
    report = report if report is not None else cost(graph)
    costs: dict[str, NodeCost] = {c.path: c for c in report.nodes}
    view = build_view(graph, depth, expand, group_repeats,
                      {k: (c.params + c.buffers, c.flops + c.other_flops) for k, c in costs.items()})
    return _Writer(graph, view, costs, report, color, rankdir, prefix)


class _Writer:
    def __init__(self, graph: Graph, view: View, costs: dict[str, NodeCost], report: CostReport | None,
                 color: str | None, rankdir: str, prefix: str = ""):
        self.graph, self.view, self.costs, self.report = graph, view, costs, report
        self.rankdir = rankdir
        self.prefix = prefix          # prepended to every DOT node id (a picture inside another)
        self.output_word = "output "  # `⇒ output out`; a topology's phases say `⇒ loss`
        self.outputs: dict[str, list[str]] = {}
        for name, nid in graph.outputs.items():
            self.outputs.setdefault(nid, []).append(name)
        # per-item (params, flops)
        self.sums: dict[str, tuple[int, int]] = {}
        for iid, it in view.items.items():
            if it.kind == "node":
                c = costs.get(iid)
                self.sums[iid] = (c.params, c.flops) if c else (0, 0)
            else:
                p = f = 0
                for m in it.members:
                    c = costs.get(m)
                    if c is not None:
                        p += c.params
                        f += c.flops
                self.sums[iid] = (p, f)
        self.colour = None
        if color:
            k = 0 if color == "params" else 1
            total = report.totals.params if color == "params" else report.totals.flops
            self.colour = _Colour(color, (s[k] for s in self.sums.values()), total)
            self.colour_k = k

    def nid(self, iid: str) -> str:
        """The quoted DOT id of a drawn item."""
        return _q(self.prefix + iid)

    # -- labels
    def _fill(self, iid: str, default: str) -> tuple[str, str]:
        if self.colour is not None:
            got = self.colour.fill(self.sums[iid][self.colour_k])
            if got is not None:
                return got
            return "#ffffff", "#000000"
        return default, "#000000"

    def _inks(self, fc: str) -> tuple[str, str]:
        """Colours of the attribute and cost lines: grey and blue on plain fills, the label
        colour itself on the colour ramp (grey or blue on orange reads badly)."""
        if self.colour is not None:
            return fc, fc
        return DETAIL, COST

    def node_stmt(self, it: Item) -> str:
        iid = it.id
        if it.kind != "node":
            return self.block_stmt(it)
        n: Node = it.node
        local = _local(n.id, it.container)
        outs = self.outputs.get(n.id)
        extra = ""
        if n.kind == "input":
            label = _table([f"<b>{_esc(local)}</b>", _esc(shape_text(n.shape))])
            return f'{self.nid(iid)} [shape=ellipse, fillcolor="{INPUT_FILL}", label=<{label}>];'

        if n.kind in ("param", "buffer"):
            label = _table([f"<b>{_esc(local)}</b> <i>{n.kind}</i>",
                            f'<font point-size="8">{_esc(shape_text(n.shape))}</font>'])
            fill, fc = self._fill(iid, PARAM_FILL) if n.kind == "param" else (PARAM_FILL, "#000000")
            return (f'{self.nid(iid)} [shape=note, fillcolor="{fill}", fontcolor="{fc}", '
                    f'label=<{label}>];')
        fill, fc = self._fill(iid, NODE_FILL)
        dim, blue = self._inks(fc)
        title = f"<b>{_esc(local)}</b>: {_esc(n.title)}" if not _is_default_name(local, n.title) \
            else f"<b>{_esc(n.title)}</b>"
        rows = [title]
        for line in _wrap(key_attrs(n.attrs)):
            rows.append(f'<font point-size="8" color="{dim}">{_esc(line)}</font>')
        p, f = self.sums[iid]
        cl = _cost_line(p, f)
        if cl:
            rows.append(f'<font point-size="8" color="{blue}">{_esc(cl)}</font>')
        if outs:
            rows.append(f'<font point-size="8"><b>⇒ {self.output_word}'
                        f'{_esc(", ".join(outs))}</b></font>')
            extra = ", penwidth=2"
        return (f'{self.nid(iid)} [fillcolor="{fill}", fontcolor="{fc}"{extra}, '
                f'label=<{_table(rows)}>];')

    def block_stmt(self, it: Item) -> str:
        iid = it.id
        fill, fc = self._fill(iid, BLOCK_FILL)
        dim, blue = self._inks(fc)
        title = it.title
        if it.container and title.startswith(it.container + "."):
            title = title[len(it.container) + 1:]
        kind = f"{it.type} ×{len(it.blocks)}" if it.kind == "run" else it.type
        shapes = "; ".join(shape_text(self.graph.node(m).shape) for m in it.out_nodes[:3])
        if len(it.out_nodes) > 3:
            shapes += "; …"
        rows = [f"<b>{_esc(title)}</b>", f"<i>{_esc(kind)}</i>"]
        if shapes:
            rows.append(f'<font point-size="8" color="{dim}">→ {_esc(shapes)}</font>')
        p, f = self.sums[iid]
        cl = _cost_line(p, f)
        if cl:
            rows.append(f'<font point-size="8" color="{blue}">{_esc(cl)}</font>')
        outs = [o for m in it.members for o in self.outputs.get(m, [])]
        extra = ""
        if outs:
            rows.append(f'<font point-size="8"><b>⇒ {self.output_word}'
                        f'{_esc(", ".join(outs))}</b></font>')
            extra = ", penwidth=2"
        return (f'{self.nid(iid)} [shape=box3d, style=filled, margin="0.14,0.07", fillcolor="{fill}", '
                f'fontcolor="{fc}"{extra}, label=<{_table(rows)}>];')

    def title(self) -> str:
        g, t = self.graph, self.report.totals
        name = g.variant or g.name
        net = ""
        if g.inputs:
            bt = g.node(g.inputs[0]).block_type
            if bt and bt != name:
                net = f" ({bt})"
        ins = ", ".join(shape_text(g.node(i).shape) for i in g.inputs)
        line2 = (f"{human(t.params)} params · {human(t.flops, 'FLOPs')} "
                 f"(2 per multiply-add) · input {ins}")
        rows = [f'<font point-size="16"><b>{_esc(name)}</b>{_esc(net)}</font>',
                f'<font point-size="10">{_esc(line2)}</font>']
        if self.colour is not None:
            rows.append(self.colour.legend())
        # a table, not <br/> lines: its cell spacing keeps the name's underscores clear of
        # the line below
        return ('<<table border="0" cellborder="0" cellspacing="1" cellpadding="1">'
                + "".join(f"<tr><td>{r}</td></tr>" for r in rows) + "</table>>")

    # -- the document
    def write(self) -> str:
        out = [
            f"digraph {_q(self.graph.variant or self.graph.name)} {{",
            f'  graph [rankdir={self.rankdir}, newrank=true, compound=false, fontname="{FONT}", '
            f'labelloc=t, labeljust=l, ranksep=0.22, nodesep=0.25, pad=0.2, '
            f'label={self.title()}];',
            f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=10, '
            f'margin="0.1,0.03", height=0.3, penwidth=0.8, color="#555555"];',
            f'  edge [fontname="{FONT}", fontsize=7, fontcolor="#666666", arrowsize=0.5, '
            f'penwidth=0.8, color="#666666"];',
        ]
        out += self.body()
        out += self.edge_stmts()
        out.append("}")
        return "\n".join(out) + "\n"

    def body(self, indent: str = "  ", level: int = 0, tag: str = "",
             taken: set[str] | None = None) -> list[str]:
        """The node and cluster statements of the view, clusters nested as the open blocks are.
        `level` offsets the cluster fills, `tag` goes into every cluster name and `taken` holds
        the cluster names already used (both for a picture drawn inside another)."""
        view = self.view
        out: list[str] = []
        members: dict[str, list[Item]] = {}
        for it in view.items.values():
            members.setdefault(it.container, []).append(it)
        children: dict[str, list[str]] = {}
        for c in view.clusters:
            children.setdefault(view.cluster_parent[c], []).append(c)
        taken = set() if taken is None else taken

        def emit(container: str, indent: str, lvl: int) -> None:
            for it in members.get(container, ()):
                out.append(indent + self.node_stmt(it))
            for c in children.get(container, ()):
                bt = self.graph.blocks[c].type
                title = c[len(container) + 1:] if container and c.startswith(container + ".") else c
                fill = CLUSTER_FILLS[lvl % len(CLUSTER_FILLS)]
                out.append(f"{indent}subgraph {cluster_name(tag + c, taken)} {{")
                out.append(f'{indent}  graph [label=<<b>{_esc(title)}</b>  <i>{_esc(bt)}</i>>, '
                           f'tooltip={_q(c)}, style="rounded,filled", fillcolor="{fill}", '
                           f'color="{CLUSTER_PEN}", fontsize=10, labeljust=l, margin=8];')
                emit(c, indent + "  ", lvl + 1)
                out.append(indent + "}")

        emit("", indent, level)
        return out

    def edge_stmts(self, indent: str = "  ") -> list[str]:
        """One statement per drawn edge, labelled with the shape of the tensor it carries."""
        return [f'{indent}{self.nid(e.src)} -> {self.nid(e.dst)} '
                f'[label={_q(shape_text(self.graph.node(e.tensor).shape))}];'
                for e in self.view.edges]


def cluster_name(path: str, taken: set[str]) -> str:
    """`cluster_<path>` with unsafe characters as `_`, numbered when `a.b` and `a_b` clash;
    records the name in `taken`."""
    base = "cluster_" + _UNSAFE.sub("_", path)
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _is_default_name(local: str, op: str) -> bool:
    """`relu`, `relu_2`, `add_1`: a name the elaborator made up from the op."""
    return local == op or (local.startswith(op + "_") and local[len(op) + 1:].isdigit())


def _local(node_id: str, container: str) -> str:
    if container and node_id.startswith(container + "."):
        return node_id[len(container) + 1:]
    return node_id
