"""A network's cost report: rows per node or per path prefix, totals, and what `compile` adds
about the module it built."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Iterable

from archdsl.ir.cost import CostReport, cost
from archdsl.report.tables import Column, markdown_table, rf, shape, size, text_table
from archdsl.report.terminal import terminal_width
from archdsl.viz.dot import human
from archdsl.viz.view import group_type

FORMATS = ("table", "md", "csv", "json")


def _count(n: int) -> str:
    return human(n) if n else "-"


def network_data(graph, dtype: str, depth: int | None, nodes: bool = True) -> tuple[CostReport, dict]:
    """(cost report, its JSON form, with `groups` summed at `depth` when given)."""
    report = cost(graph, dtype)
    data = report.to_dict(nodes)
    if depth:
        data["groups"] = groups(report, graph.blocks, depth)
    return report, data


def groups(report: CostReport, blocks: dict, depth: int) -> list[dict]:
    """Rows of the report summed under each path prefix of `depth` parts."""
    out: dict[str, dict] = {}
    for n in report.nodes:
        key = ".".join(n.path.split(".")[:depth])
        g = out.setdefault(key, {"path": key, "op": n.op, "shape": n.shape, "nodes": 0,
                                 "params": 0, "frozen_params": 0, "buffers": 0, "flops": 0,
                                 "other_flops": 0, "activation_bytes": 0,
                                 "receptive_field": 1, "stride": 1})
        g["nodes"] += 1
        g["shape"] = n.shape   # the last node's output: the group's output in topological order
        for k in ("params", "frozen_params", "buffers", "flops", "other_flops", "activation_bytes"):
            g[k] += getattr(n, k)
        # the group's receptive field: the largest of its nodes' (with that node's stride)
        g["receptive_field"], g["stride"] = max((g["receptive_field"], g["stride"]),
                                                (n.receptive_field, n.stride))
    for key, g in out.items():
        if key in blocks:
            g["op"] = blocks[key].type
        elif g["nodes"] > 1:
            g["op"] = group_type(key, blocks, g["nodes"])
        g["macs"] = g["flops"] // 2
    return list(out.values())


def _rows(report: CostReport, data: dict) -> list[dict]:
    if "groups" in data:
        return data["groups"]
    return [dict(dataclasses.asdict(n), macs=n.macs) for n in report.nodes]


# (header, cell, right-aligned, keep): what a text table shows of each row
_COST_COLUMNS = [
    Column("path", lambda r: r["path"]),
    Column("op / block", lambda r: r["op"], keep=4),
    Column("output shape", lambda r: shape(r["shape"]), keep=5),
    Column("params", lambda r: _count(r["params"]), True, keep=9),
    Column("MACs", lambda r: _count(r["macs"]), True, keep=9),
    Column("FLOPs", lambda r: _count(r["flops"]), True, keep=1),
    Column("activations", lambda r: size(r["activation_bytes"]) if r["activation_bytes"] else "-",
           True, keep=2),
    Column("rf", lambda r: rf(r["receptive_field"], r["stride"]), True, keep=3),
]
_CSV_FIELDS = ["path", "op", "shape", "params", "frozen_params", "buffers", "flops", "macs",
               "other_flops", "activation_bytes", "receptive_field", "stride"]


def network_text(report: CostReport, data: dict, dtype: str, fmt: str = "table",
                 table: bool = True, extra: Iterable[tuple[str, str, str]] = (),
                 width: int | None = None) -> str:
    """The rows (per node, or per group) and the totals, as a text table or Markdown; CSV is
    the rows alone, with exact numbers."""
    rows = _rows(report, data) if table or fmt == "csv" else []
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_CSV_FIELDS)
        for r in rows:
            writer.writerow([shape(r[k]) if k == "shape" else r[k] for k in _CSV_FIELDS])
        return buf.getvalue().rstrip("\n")
    totals = _totals(report, dtype, extra)
    if fmt == "md":
        parts = [f"**{_head(report)}**  ", _io(report), ""]
        if table:
            parts += [markdown_table([c.header for c in _COST_COLUMNS],
                                     [[c.cell(r) for c in _COST_COLUMNS] for r in rows],
                                     [c.right for c in _COST_COLUMNS]), ""]
        parts.append(markdown_table(["total", "exact", "", "what"],
                                    [list(t) for t in totals], [False, True, True, False]))
        return "\n".join(parts)
    parts = [text_table(_COST_COLUMNS, rows, width), ""] if table else []
    return "\n".join(parts + [_head(report), _io(report), "", _aligned(totals)])


def _head(report: CostReport) -> str:
    head = report.variant or report.name
    if report.variant and report.name != report.variant:
        head += f" ({report.name})"
    if report.references:
        head += "  reference " + ", ".join(report.references)
    return head


def _io(report: CostReport) -> str:
    return (", ".join(f"{k} {shape(v)}" for k, v in report.input_shapes.items()) + " → "
            + ", ".join(f"{k} {shape(v)}" for k, v in report.output_shapes.items()))


def _totals(report: CostReport, dtype: str, extra) -> list[tuple[str, str, str, str]]:
    t = report.totals
    trainable = t.params - t.frozen_params
    weights = t.param_bytes + t.buffer_bytes
    rows = [
        ("params", f"{t.params:,}", human(t.params), "parameter elements"),
        ("  trainable", f"{trainable:,}", human(trainable), "updated by the optimiser"),
        ("  frozen", f"{t.frozen_params:,}", human(t.frozen_params), "requires_grad=False"),
        ("buffers", f"{t.buffers:,}", human(t.buffers), "buffer elements (batch-norm statistics …)"),
        ("weights", f"{weights:,}", size(weights), f"bytes of the params and buffers, {dtype}"),
        ("FLOPs", f"{t.flops:,}", human(t.flops), "2 per multiply-add, as FlopCounterMode counts"),
        ("MACs", f"{t.macs:,}", human(t.macs), "FLOPs / 2: what most papers call FLOPs"),
        ("other FLOPs", f"{t.other_flops:,}", human(t.other_flops), "elementwise, norms, softmax …"),
        ("activations", f"{t.activation_bytes:,}", size(t.activation_bytes),
         f"every node's output at batch {report.batch}, {dtype}"),
    ]
    return rows + [(name, value, "", note) for name, value, note in extra]


def _aligned(rows: list[tuple[str, str, str, str]]) -> str:
    numeric = [r for r in rows if r[2]]
    w = [max(len(r[k]) for r in numeric) for k in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d}".rstrip() if c else
                     f"{a:<{w[0]}}  {b}: {d}" for a, b, c, d in rows)


def network_output(graph, dtype: str, fmt: str, depth: int | None, extra=(),
                   module: dict | None = None) -> tuple[CostReport, str]:
    """A network's cost report in `fmt` (with the built module's facts, if any), and the report."""
    rep, data = network_data(graph, dtype, depth)
    if module is not None:
        data["module"] = module
    if fmt == "json":
        return rep, json.dumps(data, indent=2)
    return rep, network_text(rep, data, dtype, fmt, extra=extra, width=terminal_width())
