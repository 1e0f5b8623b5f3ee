"""A topology's networks, state and phases."""
from __future__ import annotations

import dataclasses
import json
from typing import Iterable

from archdsl.errors import ArchError
from archdsl.ir.cost import cost
from archdsl.report.tables import Column, shape, text_table
from archdsl.report.terminal import terminal_width
from archdsl.viz.dot import human


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


def topology_output(data: dict, fmt: str, extra: Iterable[str] = ()) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt != "table":
        raise ArchError(f"--format {fmt} is for a network's cost table; a topology prints as "
                        f"text or JSON", hint="use --format table or --json")
    return topology_text(data, extra, width=terminal_width())
