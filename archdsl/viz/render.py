"""Render an IR graph or a topology to SVG / PNG / JPEG / PDF through graphviz's `dot`, write
the DOT text, or write an interactive HTML page of a network (no graphviz needed).

When `dot` is not installed, the DOT text is written next to the requested file and the
result says how to install graphviz (`dot_available` is False; `archdsl viz` then exits 1).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from archdsl.errors import ArchError
from archdsl.ir.cost import CostReport
from archdsl.ir.graph import Graph
from archdsl.ir.topology import TopologyIR
from archdsl.viz.dot import to_dot
from archdsl.viz.topology import topology_to_dot

FORMATS = {".svg": "svg", ".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".pdf": "pdf",
           ".dot": "dot", ".gv": "dot", ".html": "html"}
PNG_DPI = 144
INSTALL_HINT = ("install graphviz to render it: `apt-get install graphviz` (Debian/Ubuntu), "
                "`brew install graphviz` (macOS) or `conda install graphviz`")


@dataclass
class RenderResult:
    path: Path              # the file written (the .dot fallback when `dot` is missing)
    dot_available: bool     # whether graphviz's `dot` binary was found on PATH
    message: str            # one line for the user


def render(graph: Graph | TopologyIR, path: str | Path, *, fmt: str | None = None,
           depth: int | None = None, expand: Iterable[str] = (), color: str | None = None,
           report: CostReport | None = None, group_repeats: bool = True,
           dpi: int | None = None, rankdir: str = "TB") -> RenderResult:
    """Write a picture of `graph` to `path`; the format comes from the suffix (.svg .png .jpg
    .pdf .dot .html) unless `fmt` is given. `dpi` sets the resolution of PNG and JPEG output
    (default 144: graphviz's own 96 reads blurry on today's screens; graphviz scales down
    bitmaps that would exceed its size limit). `rankdir="LR"` lays a network out left to
    right. `.html` is the interactive page of `archdsl.viz.html`, opened at `depth`.

    A `TopologyIR` is drawn by `topology_to_dot`: `depth=None` (or 1) draws each network as
    one node, `depth=N` opens them to network depth N − 1; `expand` names networks or
    `<net>.<block path>`s; `color` and `report` are for a single network's picture."""
    path = Path(path)
    fmt = (fmt or FORMATS.get(path.suffix.lower(), "")).lower()
    if fmt not in set(FORMATS.values()):
        raise ArchError(f"cannot tell the picture format of '{path}'",
                        hint="use a .svg, .png, .jpg, .pdf, .dot or .html file name (or pass fmt=…)")
    if rankdir not in ("TB", "LR"):
        raise ArchError(f"rankdir is TB (top to bottom) or LR (left to right), not {rankdir!r}")
    if isinstance(graph, TopologyIR):
        if fmt == "html" or rankdir != "TB":
            raise ArchError("the interactive page and the left-to-right layout are for a "
                            "network's picture, not a topology's",
                            hint="draw one of its networks (a variant name), or the topology "
                                 "as .svg, .png, .jpg, .pdf or .dot")
        if color is not None or report is not None:
            raise ArchError("colour modes and cost reports are for a network's picture, "
                            "not a topology's",
                            hint="render one of its networks: render(ir.nets[name].first_graph, "
                                 "path, color=…)")
        text = topology_to_dot(graph, depth=depth, expand=expand, group_repeats=group_repeats)
    elif fmt == "html":
        from archdsl.viz.html import to_html
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_html(graph, depth=depth, report=report, rankdir=rankdir), encoding="utf-8")
        return RenderResult(path, shutil.which("dot") is not None, f"wrote {path}")
    else:
        text = to_dot(graph, depth=depth, expand=expand, color=color, report=report,
                      group_repeats=group_repeats, rankdir=rankdir)
    exe = shutil.which("dot")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(text, encoding="utf-8")
        return RenderResult(path, exe is not None, f"wrote DOT to {path}")
    if exe is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(text, encoding="utf-8")
        return RenderResult(dot_path, False,
                            f"graphviz's `dot` was not found, so the DOT source was written to "
                            f"{dot_path} instead of {path}; {INSTALL_HINT}, then run "
                            f"`dot -T{fmt} {dot_path} -o {path}`")
    if fmt in ("png", "jpg"):
        text = text.replace("  graph [", f"  graph [dpi={int(dpi or PNG_DPI)}, ", 1)
    path.write_bytes(_pipe(text, fmt, exe))
    return RenderResult(path, True, f"wrote {path}")


def _pipe(text: str, fmt: str, exe: str) -> bytes:
    data = text.encode("utf-8")
    try:
        import graphviz
    except ImportError:  # pragma: no cover - graphviz is a dependency; keep working without it
        graphviz = None
    try:
        if graphviz is not None:
            return graphviz.pipe("dot", fmt, data, quiet=True)
        return subprocess.run([exe, f"-T{fmt}"], input=data, capture_output=True,
                              check=True).stdout
    except Exception as e:  # CalledProcessError / graphviz.CalledProcessError / ExecutableNotFound
        detail = getattr(e, "stderr", None)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ArchError(f"graphviz's `dot` failed to render {fmt}: {(detail or str(e)).strip()}",
                        hint="write the DOT text (a .dot file) and inspect it") from None
