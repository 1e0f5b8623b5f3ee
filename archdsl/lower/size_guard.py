"""Refuse to build a module whose parameters and buffers cannot fit in memory: an `ArchError`
naming the largest tensors' node, instead of torch's allocator failing half-way through a build.

The limit is `max_bytes=` (`--max-bytes`), else `$ARCHDSL_MAX_BYTES`, else the memory the
machine has available now (MemAvailable); `0` or `off` disables the guard.
"""
from __future__ import annotations

import os
import re
from typing import Iterable

from archdsl.errors import ArchError
from archdsl.ir.cost import node_cost
from archdsl.ir.graph import Graph

ENV = "ARCHDSL_MAX_BYTES"
_UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}
_FLOAT32 = 4


def parse_bytes(text: str) -> int | None:
    """'64G', '512MiB', '1000000': a size in bytes (binary units); None for '0' / 'off'."""
    t = text.strip().lower()
    if t in ("0", "off", "none"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", t)
    if m is None:
        raise ArchError(f"bad size {text!r}", hint="write bytes as 1000000, 512M, 64G or 2T; 0 turns the "
                                                   "guard off")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def limit(max_bytes: int | str | None) -> tuple[int | None, str]:
    """The limit in force and where it comes from."""
    if max_bytes is not None:
        value = parse_bytes(str(max_bytes))
        return value, "max_bytes"
    if os.environ.get(ENV):
        return parse_bytes(os.environ[ENV]), f"${ENV}"
    return _available(), "the memory available now"


def _available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(graphs: Iterable[Graph], max_bytes: int | str | None = None) -> None:
    """Raise unless the float32 parameters and buffers of `graphs` fit under the limit."""
    cap, source = limit(max_bytes)
    if cap is None:
        return
    total, largest = 0, None
    for graph in graphs:
        for node in graph.nodes():
            c = node_cost(graph, node, _FLOAT32)
            size = (c.params + c.buffers) * _FLOAT32
            total += size
            if largest is None or size > largest[0]:
                largest = (size, node)
    if total <= cap:
        return
    size, node = largest
    raise ArchError(f"building this module needs {human(total)} for its parameters and buffers "
                    f"(float32), more than the limit of {human(cap)} ({source})", node.span,
                    found=f"'{node.id}' ({node.op}) alone needs {human(size)}",
                    hint=f"`archdsl check` costs it without allocating; to build anyway raise the "
                         f"limit: --max-bytes / max_bytes= / ${ENV}")


def human(n: int) -> str:
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
