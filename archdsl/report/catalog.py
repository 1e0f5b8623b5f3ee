"""The catalog listing (`archdsl list`): rows, JSON, and the costed facts of listed variants."""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Callable, Iterable

from archdsl.report.tables import Column, text_table
from archdsl.viz.dot import human


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


def catalog_data(entries, facts: dict) -> dict:
    """`archdsl list --json`: the families, each variant with its status and costed facts."""
    return {"families": [
        {"name": e.name, "kind": e.kind, "file": e.file, "paper": e.paper,
         "variants": [dict({"name": v.name, "network": v.network, "references": v.references,
                            "status": status(e, v)}, **facts.get((e.file, v.name), {}))
                      for v in e.variants]}
        for e in entries]}


def catalog_facts(entries, check: Callable[[str], list]) -> tuple[dict[tuple[str, str], dict], list[str]]:
    """Params, FLOPs and MACs of the listed network variants, from `check(file)`'s results for
    each of their files, and the errors met."""
    facts, errors = {}, []
    wanted = {(e.file, v.name) for e in entries for v in e.variants}
    for file in sorted({e.file for e in entries}):
        for r in check(file):
            key = (file, r.variant)
            if key not in wanted and r.variant:
                continue
            if r.error:
                facts[key] = {"error": r.error}
                errors.append(r.error)
            elif r.kind == "network":
                facts[key] = {"params": r.params, "flops": r.flops, "macs": r.macs}
    return facts, errors
