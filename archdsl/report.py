"""What the command line prints: cost tables (text, Markdown, CSV), totals, topologies and the
catalog. Plain functions of the API's results; `archdsl.cli` only picks which to call.

Text tables fit the terminal without cutting a number: when a table is wider than the terminal,
long paths wrap at dots, then the least needed columns are left out (and the table says which).
Piped output is never narrowed.
"""
from __future__ import annotations

import csv
import dataclasses
import fnmatch
import io
import os
import shutil
import sys
import textwrap
from dataclasses import dataclass
from typing import Callable, Iterable

from archdsl.ir.cost import CostReport, cost
from archdsl.viz.dot import human
from archdsl.viz.view import group_type

FORMATS = ("table", "md", "csv", "json")


# ---- numbers and shapes ----------------------------------------------------------------------

def size(n: int) -> str:
    """Bytes with three significant digits: 784 KiB, 3.06 MiB."""
    for factor, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {name}"
    return f"{n} B"


def shape(s) -> str:
    """[1, 64, 56, 56]; several outputs: ([1, 1, 768], [1, 196, 768]), or 3× [1, 12, 197, 64]
    when they are alike."""
    if s and isinstance(s[0], (list, tuple)):
        if len(s) > 1 and all(list(x) == list(s[0]) for x in s):
            return f"{len(s)}× {shape(s[0])}"
        return "(" + ", ".join(shape(x) for x in s) + ")"
    return "[" + ", ".join(str(d) for d in s) + "]"


def rf(field: int, stride: int) -> str:
    """Receptive field and cumulative stride, '35 /8'; '-' where neither grew past 1."""
    return "-" if field <= 1 and stride <= 1 else f"{field} /{stride}"


def _count(n: int) -> str:
    return human(n) if n else "-"


# ---- plain-text tables that fit ---------------------------------------------------------------

FOLD = 28    # a too wide table first wraps its first column (paths) down to this width


@dataclass
class Column:
    header: str
    cell: Callable[[dict], str]
    right: bool = False
    keep: int = 9          # columns with the lowest `keep` are left out first when too wide


def terminal_width() -> int | None:
    """The width to fit: the terminal's (or $COLUMNS); None for piped output."""
    if "COLUMNS" in os.environ:
        return shutil.get_terminal_size().columns
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def text_table(columns: list[Column], rows: list[dict], width: int | None = None,
               hint: str = "widen the terminal, or use --format md or csv") -> str:
    """Columns two spaces apart under a rule; fitted to `width` by wrapping the first column
    at dots (down to FOLD columns), then by leaving columns out (noted below the table)."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    widths = [max([len(c.header)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]
    shown = list(range(len(columns)))
    if width and _total(widths, shown) > width:
        widths[0] = min(widths[0], max(FOLD, width - _total(widths, shown[1:]) - 2))
    while width and _total(widths, shown) > width and any(columns[k].keep < 9 for k in shown):
        shown.remove(min((k for k in shown if columns[k].keep < 9), key=lambda k: columns[k].keep))
    lines = [_line([columns[k].header for k in shown], [widths[k] for k in shown],
                   [columns[k].right for k in shown]),
             "  ".join("─" * widths[k] for k in shown)]
    for row in cells:
        parts = _fold(row[0], widths[0])
        for i, part in enumerate(parts):
            values = [part] + [row[k] if i == 0 else "" for k in shown[1:]]
            lines.append(_line(values, [widths[k] for k in shown], [columns[k].right for k in shown]))
    left_out = [columns[k].header for k in range(len(columns)) if k not in shown]
    if left_out:
        lines.append(textwrap.fill(f"({', '.join(left_out)} left out at {width} columns: {hint})",
                                   width))
    return "\n".join(lines)


def _total(widths: list[int], shown: list[int]) -> int:
    return sum(widths[k] for k in shown) + 2 * (len(shown) - 1)


def _line(values: list[str], widths: list[int], right: list[bool]) -> str:
    return "  ".join(v.rjust(w) if r else v.ljust(w)
                     for v, w, r in zip(values, widths, right)).rstrip()


def _fold(text: str, width: int) -> list[str]:
    """Split a path into lines of at most `width` characters, after dots where possible."""
    out: list[str] = []
    while len(text) > width:
        cut = text.rfind(".", 0, width) + 1 or width
        out.append(text[:cut])
        text = "  " + text[cut:]
    return out + [text]


def markdown_table(headers: list[str], rows: list[list[str]], right: Iterable[bool]) -> str:
    align = ["---:" if r else "---" for r in right]
    esc = [[v.replace("|", "\\|") for v in row] for row in rows]
    return "\n".join("| " + " | ".join(r) + " |" for r in [headers, align, *esc])


# ---- a network's cost report --------------------------------------------------------------------

def network_data(graph, dtype: str, depth: int | None, nodes: bool = True) -> tuple[CostReport, dict]:
    """(cost report, its JSON form, with `groups` summed at `depth` when given)."""
    report = cost(graph, dtype)
    data = report.to_dict()
    if not nodes:
        del data["nodes"]
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
    rows = _rows(report, data)
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


# ---- topologies -------------------------------------------------------------------------------------

def topology_data(ir, dtype: str) -> dict:
    """A topology's networks (with the cost of each call shape), state and phases."""
    from archdsl.ir.recipe import describe as describe_optimizer
    from archdsl.ir.schedule import LRSchedule
    nets = {}
    for name, decl in ir.nets.items():
        calls = []
        for graph in decl.graphs.values():
            report = cost(graph, dtype)
            calls.append({"inputs": report.input_shapes, "outputs": report.output_shapes,
                          "totals": dataclasses.asdict(report.totals)})
        nets[name] = {"network": decl.network,
                      "twin": dataclasses.asdict(decl.twin) if decl.twin else None,
                      "calls": calls}
    phases = {}
    for name, ph in ir.phases.items():
        g = ph.graph
        phases[name] = {"inputs": {i: list(g.node(i).shape) for i in g.inputs},
                        "update": list(ph.update), "loss": ph.loss, "logs": list(ph.logs),
                        "after": [a.kind for a in ph.actions], "times": ph.repeat,
                        "optimizer": dataclasses.asdict(ph.optimizer) if ph.optimizer else None,
                        "optimizer_text": describe_optimizer(ph.optimizer) if ph.optimizer else None}
    return {"kind": "topology", "name": ir.name, "variant": ir.variant,
            "references": list(ir.references), "nets": nets,
            "states": {n: {"shape": list(st.shape), "dtype": st.dtype,
                           "init": st.init.describe() if isinstance(st.init, LRSchedule) else st.init}
                       for n, st in ir.states.items()},
            "phases": phases}


def topology_text(data: dict, extra: Iterable[str] = (), width: int | None = None) -> str:
    head = data["variant"] or data["name"]
    if data["variant"] and data["name"] != data["variant"]:
        head += f" ({data['name']})"
    trained = {n for p in data["phases"].values() for n in p["update"]}
    rows = []
    for name, net in data["nets"].items():
        twin = net["twin"]
        how = (f"ema of {twin['source']} (m={twin['momentum']:g}, {twin['schedule']})" if twin
               else ("by phase " + ", ".join(p for p, ph in data["phases"].items()
                                             if name in ph["update"])
                     if name in trained else "frozen"))
        label = f"{name} ({net['network']})" if net["network"] != name else name
        for k, call in enumerate(net["calls"]):
            io_ = (", ".join(shape(v) for v in call["inputs"].values()) + " → "
                   + ", ".join(shape(v) for v in call["outputs"].values()))
            t = call["totals"]
            rows.append({"net": label if k == 0 else "", "how": how if k == 0 else "", "io": io_,
                         "params": human(t["params"]) if k == 0 else "", "macs": human(t["macs"])})
    columns = [Column("net", lambda r: r["net"]), Column("trained", lambda r: r["how"], keep=2),
               Column("input → output", lambda r: r["io"], keep=3),
               Column("params", lambda r: r["params"], True), Column("MACs / call", lambda r: r["macs"], True)]
    lines = [f"{head}: a topology of {len(data['nets'])} network(s)", text_table(columns, rows, width)]
    for name, st in data["states"].items():
        lines.append(f"state  {name} {shape(st['shape'])} {st['dtype']}, initially {st['init']}")
    for name, ph in data["phases"].items():
        ins = ", ".join(f"{k} {shape(v)}" for k, v in ph["inputs"].items())
        text = f"phase  {name}({ins}): updates {', '.join(ph['update']) or 'nothing'}, loss {ph['loss']}"
        if ph["logs"]:
            text += f", logs {', '.join(ph['logs'])}"
        if ph["after"]:
            text += f", after the step: {', '.join(ph['after'])}"
        if ph["times"] != 1:
            text += f", {ph['times']} times per round"
        lines.append(text)
        if ph["optimizer_text"]:
            lines.append(f"       optimizer {ph['optimizer_text']}")
    lines += list(extra)
    lines.append("MACs = FLOPs / 2 (what most papers call FLOPs), per call of each network")
    return "\n".join(lines)


# ---- the catalog -----------------------------------------------------------------------------------

def _source(reference: str, variant: str) -> str:
    """'timm/resnet50' of variant resnet50 → 'timm': the library, when the names agree."""
    library, _, name = reference.partition("/")
    return library if name == variant else reference


def status(entry, variant) -> str:
    if entry.kind == "topology":
        return "topology"
    return "reference" if variant.references else "paper figure"


def matching(entries, patterns: Iterable[str]) -> list:
    """The catalog entries with only the variants whose name matches one of the glob
    `patterns` (all of them when there is none), like timm.list_models('resnet*')."""
    patterns = list(patterns)
    out = []
    for e in entries:
        kept = [v for v in e.variants if not patterns or any(fnmatch.fnmatchcase(v.name, p) for p in patterns)]
        if kept:
            out.append(dataclasses.replace(e, variants=kept))
    return out


def catalog_text(entries, facts: dict, costs: bool, wide: bool = False,
                 width: int | None = None) -> str:
    """One row per variant: its name, the network it builds, its file, how it is proven, its
    params and MACs when costed, and the file's paper when `wide`."""
    rows = []
    for e in entries:
        for k, v in enumerate(e.variants):
            f = facts.get((e.file, v.name), {})
            rows.append({"variant": v.name, "network": v.network, "file": e.file,
                         "paper": e.paper if k == 0 else "",
                         "proof": ", ".join(_source(r, v.name) for r in v.references) or status(e, v),
                         "params": "error" if "error" in f else human(f["params"]) if f else "-",
                         "macs": "" if "error" in f else human(f["macs"]) if f else "-"})
    columns = [Column("variant", lambda r: r["variant"]),
               Column("network", lambda r: r["network"], keep=3),
               Column("file", lambda r: r["file"], keep=2),
               Column("proven by", lambda r: r["proof"], keep=4)]
    if costs:
        columns += [Column("params", lambda r: r["params"], True),
                    Column("MACs", lambda r: r["macs"], True)]
    if wide:
        columns.append(Column("paper", lambda r: r["paper"], keep=1))
    n = sum(len(e.variants) for e in entries)
    table = text_table(columns, rows, None if wide else width or 100,
                       "widen the terminal, or use --json")
    foot = f"{n} variants of {len(entries)} families"
    if costs:
        foot += "; MACs = FLOPs / 2 (what most papers call FLOPs) at the default input size"
    else:
        foot += "; `archdsl list --costs` adds params and MACs"
    return table + "\n" + foot

