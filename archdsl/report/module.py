"""What `archdsl compile` says of the module it built (a GraphModule or a TopologyModule)."""
from __future__ import annotations

from archdsl.ir.cost import CostReport
from archdsl.report.network import network_output
from archdsl.report.topology import topology_data, topology_output


def compiled_output(module, seconds: float, dtype: str, fmt: str, depth: int | None) -> tuple[str, str | None]:
    """The cost report (a topology's summary) in `fmt` with the module's facts, and a warning
    when the module's parameter counts differ from the report's."""
    info = _info(module, seconds)
    if getattr(module, "arch_graph", None) is None:   # a TopologyModule
        data = dict(topology_data(module.ir, dtype), module=info)
        return topology_output(data, fmt, [_topology_line(info, seconds)]), None
    rep, text = network_output(module.arch_graph, dtype, fmt, depth, [_network_row(info, seconds)], info)
    return text, _mismatch(info, rep)


def _info(module, seconds: float) -> dict:
    """The built module's class, build time, parameter and buffer counts, submodules and more."""
    info = {
        "class": type(module).__name__,
        "build_seconds": round(seconds, 4),
        "params": sum(p.numel() for p in module.parameters()),
        "buffers": sum(b.numel() for b in module.buffers()),
        "submodules": sum(1 for _ in module.modules()) - 1,
    }
    if getattr(module, "arch_graph", None) is None:   # a TopologyModule: count its frozen twins too
        info["params"] = sum(p.numel() for _, p in module.named_parameters(remove_duplicate=True))
        info["trainable_params"] = sum(p.numel() for p in module.parameters())
        info["phases"] = list(module.phases)
    else:
        info["fx_nodes"] = len(module.graph.nodes)
        info["trainable_params"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return info


def _network_row(info: dict, seconds: float) -> tuple[str, str, str]:
    return ("module", info["class"], f"torch.fx GraphModule, {info['submodules']} submodules, "
                                     f"{info['fx_nodes']} fx nodes, built in {seconds:.2f} s")


def _mismatch(info: dict, rep: CostReport) -> str | None:
    """A warning when the built module's parameter counts differ from the cost report's."""
    trainable = rep.totals.params - rep.totals.frozen_params
    if (info["params"], info["trainable_params"]) == (rep.totals.params, trainable):
        return None
    return (f"warning: the built module has {info['params']:,} parameters "
            f"({info['trainable_params']:,} trainable) but the cost report counts "
            f"{rep.totals.params:,} ({trainable:,}) (a bug in archdsl)")


def _topology_line(info: dict, seconds: float) -> str:
    return (f"module {info['class']}: {info['params']:,} parameters ({info['trainable_params']:,} "
            f"trained by gradients), {info['submodules']} submodules, built in {seconds:.2f} s")
