"""What `archdsl check` and `archdsl args` print."""
from __future__ import annotations

import textwrap

from archdsl.report.network import network_data, network_text
from archdsl.report.terminal import terminal_width
from archdsl.report.topology import topology_data, topology_text


def check_result(kind: str, ir, dtype: str) -> tuple[dict, str]:
    """What `archdsl check` prints after OK: the data (its JSON) and the text."""
    if kind == "topology":
        data = topology_data(ir, dtype)
        return data, topology_text(data, width=terminal_width())
    rep, data = network_data(ir, dtype, None, nodes=False)
    return data, network_text(rep, data, dtype, table=False)


def check_data(results, seconds: float) -> dict:
    """`archdsl check stdlib --json`: every file's variants, each with its costs or its error."""
    return {"ok": not any(r.error for r in results), "seconds": round(seconds, 3), "variants": [
        {"file": r.file, "variant": r.variant, "kind": r.kind, "references": r.references,
         **({"error": r.error} if r.error else {"params": r.params, "flops": r.flops, "macs": r.macs})}
        for r in results]}


def check_summary(results, seconds: float) -> str:
    """The last line of `archdsl check stdlib`, in rich markup."""
    failed = sum(bool(r.error) for r in results)
    files = len({r.file for r in results})
    topologies = sum(r.kind == "topology" for r in results if r.variant)
    return (("[bold green]OK[/] " if not failed else f"[bold red]{failed} failed[/] ")
            + f"{files} files, {sum(bool(r.variant) for r in results)} variants "
            + f"({topologies} topologies) checked in {seconds:.1f} s")


def signature_text(sig) -> str:
    """`archdsl args`: the header, the doc, then each argument with its type, value and doc."""
    where = f"{sig.file}:{sig.line}"
    head = f"{sig.kind} {sig.name} ({where})" + (f", as variant {sig.variant}" if sig.variant else "")
    out = [head]
    if sig.doc:
        out += textwrap.wrap(sig.doc, 96, initial_indent="  ", subsequent_indent="  ")
    out.append("")
    for a in sig.arguments:
        line = f"  {a.name}" + (f": {a.type}" if a.type else "")
        shown = a.value if a.value is not None else a.default
        line += f" = {shown}" if shown is not None else ""
        if a.value is not None:
            line += f"    ({sig.variant}; " + (f"default {a.default})" if a.default else "required)")
        elif a.default is None:
            line += "    (required)"
        out.append(line)
        out += textwrap.wrap(a.doc, 96, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(out)
