"""An interactive picture of an IR graph: one self-contained HTML file (no network access, no
graphviz) that lays the graph out in the browser.

    from archdsl.viz.html import to_html
    Path("resnet50.html").write_text(to_html(load_graph("resnet50"), depth=2))

What the page does:

* every path prefix that holds several nodes (a block instance such as `layer1.0`, or a
  namespace such as `layer1`) is a group; a collapsed group is one box (its path, its block
  type or what it holds, its output shape); the page opens at `depth` as `archdsl cost --depth`
  sums rows (groups of fewer than `depth` path components open);
* click a collapsed group to open it; an open group is a frame around its contents, and a click
  on the frame's title closes it; "open all" / "close all" / "fit" / "left to right" buttons;
* hover a box for its path, op or block, output shape, params, MACs and FLOPs (the numbers of
  `archdsl cost`), an edge for the shape it carries;
* the mouse wheel zooms around the pointer, dragging pans.

The layout is layered (each box one rank below the lowest of its inputs), boxes ordered in their
rank by the mean position of their inputs, recomputed on every open and close.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from archdsl.ir.cost import CostReport, cost
from archdsl.ir.graph import Graph
from archdsl.viz.dot import (BLOCK_FILL, CLUSTER_FILLS, CLUSTER_PEN, INPUT_FILL, PARAM_FILL,
                             human, key_attrs, shape_text)
from archdsl.viz.view import group_type

_SCRIPT = (Path(__file__).with_name("html_view.js")).read_text(encoding="utf-8")

_STYLE = f"""
html, body {{ margin: 0; height: 100%; font: 12px Helvetica, Arial, sans-serif; background: #fff; }}
#bar {{ position: fixed; top: 0; left: 0; right: 0; height: 34px; display: flex; gap: 6px;
        align-items: center; padding: 0 10px; background: #f4f6f9; border-bottom: 1px solid #ccd;
        z-index: 2; }}
#bar b {{ font-size: 14px; margin-right: 8px; }}
#bar span {{ color: #555; margin-right: auto; }}
button {{ font: inherit; padding: 3px 8px; }}
svg {{ position: absolute; top: 35px; left: 0; width: 100%; height: calc(100% - 35px);
       cursor: grab; }}
.item rect {{ stroke: #445; stroke-width: 1; }}
.item.node rect {{ fill: #fff; }}
.item.input rect {{ fill: {INPUT_FILL}; }}
.item.param rect {{ fill: {PARAM_FILL}; }}
.item.group rect {{ fill: {BLOCK_FILL}; stroke-width: 1.5; }}
.item.group {{ cursor: pointer; }}
.item.output rect {{ stroke-width: 2.5; }}
.item text {{ font-size: 11px; fill: #222; }}
.item text.name {{ font-weight: bold; }}
.item text.cost {{ fill: #1d4f91; font-size: 10px; }}
.frame rect {{ stroke: {CLUSTER_PEN}; stroke-dasharray: 4 2; }}
.frame text {{ font-size: 11px; fill: #334; cursor: pointer; }}
.edge {{ fill: none; stroke: #667; stroke-width: 1.2; }}
.edge:hover {{ stroke: #d94801; stroke-width: 2.5; }}
#tip {{ position: fixed; display: none; background: #fffef2; border: 1px solid #998;
        padding: 5px 8px; pointer-events: none; z-index: 3; white-space: pre; font-size: 12px; }}
"""


def _groups(graph: Graph, report: CostReport) -> list[dict]:
    """Every path prefix that holds more than one node, with its summed costs."""
    rows = {n.path: n for n in report.nodes}
    members: dict[str, list[str]] = {}
    for node in graph.nodes():
        parts = node.id.split(".")
        for k in range(1, len(parts)):
            members.setdefault(".".join(parts[:k]), []).append(node.id)
    out = []
    blocks = graph.blocks
    for prefix, ids in members.items():
        if prefix in graph:            # a node named like the prefix belongs to the group
            ids = [prefix] + ids
        params = sum(rows[i].params for i in ids)
        flops = sum(rows[i].flops for i in ids)
        out.append({"id": prefix, "members": len(ids),
                    "type": blocks[prefix].type if prefix in blocks else group_type(prefix, blocks, len(ids)),
                    "shape": shape_text(graph.node(ids[-1]).shape),
                    "params": human(params) if params else "", "flops": human(flops) if flops else "",
                    "macs": human(flops // 2) if flops else ""})
    return out


def page_data(graph: Graph, depth: int | None = None, report: CostReport | None = None,
              rankdir: str = "TB") -> dict:
    """What the page draws, as JSON: nodes (in topological order), groups, edges."""
    report = report or cost(graph)
    rows = {n.path: n for n in report.nodes}
    index = {n.id: k for k, n in enumerate(graph.nodes())}
    outputs = set(graph.outputs.values())
    nodes = [{"id": n.id, "op": n.title, "shape": shape_text(n.shape),
              "attrs": " ".join(key_attrs(n.attrs)),
              "params": human(rows[n.id].params) if rows[n.id].params else "",
              "flops": human(rows[n.id].flops) if rows[n.id].flops else "",
              "macs": human(rows[n.id].macs) if rows[n.id].flops else "",
              "output": n.id in outputs}
             for n in graph.nodes()]
    edges = [[index[u], index[v]] for u, v, _ in graph.edges()]
    t = report.totals
    return {"name": graph.variant or graph.name, "depth": depth, "rankdir": rankdir,
            "summary": f"{human(t.params)} params · {human(t.macs)} MACs · {human(t.flops)} FLOPs · "
                       f"input {', '.join(shape_text(graph.node(i).shape) for i in graph.inputs)}",
            "nodes": nodes, "groups": _groups(graph, report), "edges": edges,
            "frames": CLUSTER_FILLS}


def to_html(graph: Graph, *, depth: int | None = None, report: CostReport | None = None,
            rankdir: str = "TB") -> str:
    """The interactive page of `graph`, opened at `depth` (None: everything open)."""
    data = page_data(graph, depth, report, rankdir)
    # `</` cannot end the JSON's script element early once its slash is escaped
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(data["name"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{_STYLE}</style></head>
<body>
<div id="bar"><b>{title}</b><span>{html.escape(data["summary"])}</span>
<button id="open-all">open all</button><button id="close-all">close all</button>
<button id="fit">fit</button><button id="flip">left to right</button></div>
<svg id="view" xmlns="http://www.w3.org/2000/svg"><defs><marker id="arrow" viewBox="0 0 10 10"
refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
<path d="M 0 0 L 10 5 L 0 10 z" fill="#667"/></marker></defs><g id="scene"></g></svg>
<div id="tip"></div>
<script type="application/json" id="data">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
