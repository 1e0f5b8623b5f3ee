"""IR → nn.Module tree + torch.fx forward (a GraphModule): straight-line code, no interpretation."""
from __future__ import annotations

import re

import torch
import torch.fx as fx
from torch import nn

from archdsl.errors import ArchError
from archdsl.ir.graph import Graph
from archdsl.ops.base import REGISTRY, Emitter
from archdsl.ir.names import name_problem, path_problem, shown


class _FxEmitter(Emitter):
    def __init__(self, graph: fx.Graph, path: str):
        self.g, self.path = graph, path

    def module(self, *args, **kwargs):
        return self.g.call_module(self.path, args, kwargs)

    def call(self, fn, *args, **kwargs):
        return self.g.call_function(fn, args, kwargs)

    def method(self, name, *args, **kwargs):
        return self.g.call_method(name, args, kwargs)


def _install(root: nn.Module, path: str, value) -> None:
    """Place a module, parameter or buffer at a dotted path, creating containers on the way."""
    *parents, leaf = path.split(".")
    mod = root
    for p in parents:
        child = mod._modules.get(p)
        if child is None:
            child = nn.Module()
            mod.add_module(p, child)
        mod = child
    if isinstance(value, nn.Parameter):
        mod.register_parameter(leaf, value)
    elif isinstance(value, torch.Tensor):
        mod.register_buffer(leaf, value)
    else:
        mod.add_module(leaf, value)


def build(graph: Graph, seed: int | None = None, device=None) -> fx.GraphModule:
    """Instantiate every parametric node at its path on `device` (default: torch's default
    device; "meta" allocates nothing) and trace-free build the forward graph."""
    if seed is not None:
        torch.manual_seed(seed)
    device = torch.device(device) if device is not None else torch.get_default_device()
    return _lower(graph, nn.Module(), install=True, device=device)


def build_phase(graph: Graph, topology: nn.Module) -> fx.GraphModule:
    """A topology phase's forward over the topology's own networks (`nets.<name>`) and state
    (`state.<name>`); it owns no modules of its own."""
    return _lower(graph, topology, install=False)


def _lower(graph: Graph, root: nn.Module, install: bool, device: torch.device | None = None) -> fx.GraphModule:
    from archdsl.lower.init import Rules, initial, make_module
    rules = Rules(graph.inits)
    g = fx.Graph()
    values: dict[str, fx.Node] = {}
    for node in graph.nodes():
        if node.kind == "input":
            values[node.id] = g.placeholder(node.id)
        elif node.kind in ("param", "buffer"):
            data = initial(node, rules, device)
            _install(root, node.id, nn.Parameter(data) if node.kind == "param" else data)
            values[node.id] = g.get_attr(node.id)
        elif node.kind == "state":
            values[node.id] = g.get_attr(f"state.{node.attrs['name']}")
        elif node.kind == "net":
            args = [values[i] for i in node.inputs]
            target = f"nets.{node.attrs['name']}"
            if node.attrs["shuffle"]:
                from archdsl.nn.runtime import shuffled_call
                values[node.id] = g.call_function(shuffled_call, (g.get_attr(target), *args))
            elif node.attrs.get("penalty"):
                from archdsl.nn.runtime import penalty_call
                values[node.id] = g.call_function(penalty_call, (g.get_attr(target), node.attrs["penalty"], *args))
            else:
                values[node.id] = g.call_module(target, tuple(args))
            if node.attrs.get("outputs"):  # named outputs come back as a dict; the phase indexes by position
                values[node.id] = g.call_function(_by_position, (values[node.id], tuple(node.attrs["outputs"])))
        else:
            op = REGISTRY[node.op]
            ins = graph.input_shapes(node)
            recipe = op.build(node.attrs, ins)
            if recipe is not None:
                if not install:
                    raise ValueError(f"{node.id}: a phase cannot hold parametric layers")
                _install(root, node.id, make_module(recipe.make, node, rules, device))
            values[node.id] = op.emit(node.attrs, ins, _FxEmitter(g, node.id),
                                      [values[i] for i in node.inputs])
            if isinstance(values[node.id], fx.Node):
                values[node.id].meta.setdefault("arch_shape", node.shape)
    if graph.single_output:
        g.output(values[next(iter(graph.outputs.values()))])
    else:
        g.output({name: values[i] for name, i in graph.outputs.items()})
    if install:
        _inplace_activations(g, root)
    _check_generated_names(g)
    g.lint()
    return fx.GraphModule(root, g, class_name=_class_name(graph))


def _check_generated_names(g: fx.Graph) -> None:
    """torch.fx writes placeholder names and module/attribute targets into the Python source of
    the forward unescaped. The elaborator admits only identifiers there; this is the last line of
    defence, so that no spec text can ever become code."""
    for node in g.nodes:
        if node.op == "placeholder":
            problem = name_problem(node.target, index_ok=False)
        elif node.op in ("call_module", "get_attr"):
            problem = path_problem(node.target)
        elif node.op == "call_method":
            problem = None if str(node.target).isidentifier() else "is not an identifier"
        else:
            continue
        if problem:
            raise ArchError(f"cannot build '{shown(str(node.target))}': {problem}",
                            hint="labels and names must be identifiers")


def _by_position(outputs: dict, names: tuple) -> tuple:
    """A multi-output network's dict of named outputs as a tuple in declaration order."""
    return tuple(outputs[n] for n in names)


def _class_name(graph: Graph) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", graph.variant or graph.name)
    name = "".join(p[:1].upper() + p[1:] for p in name.split("_"))
    return name if name.isidentifier() else f"Model{name}"


def _inplace_activations(g: fx.Graph, root: nn.Module) -> None:
    """ReLU-family activations overwrite their input when nothing else reads it and the
    producer's backward does not need its own output (conv, norm, linear, add) — as
    hand-written PyTorch does with `ReLU(inplace=True)`; a residual `x + y` whose left side
    is such a producer's output, read nowhere else and of the result's shape, becomes `x += y`."""
    import operator

    import torch.nn.functional as F
    inplace_fns = {F.relu, F.relu6, F.silu, F.hardswish, F.leaky_relu}
    safe_modules = (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Linear, nn.LayerNorm, nn.GroupNorm)
    for node in g.nodes:
        if node.op != "call_function" or node.target not in inplace_fns or not node.args:
            continue
        src = node.args[0]
        if not isinstance(src, fx.Node) or len(src.users) != 1:
            continue
        producer_ok = (src.op == "call_function" and src.target in (operator.add, torch.add)) or \
            (src.op == "call_module" and isinstance(root.get_submodule(src.target), safe_modules))
        if producer_ok:
            node.kwargs = {**node.kwargs, "inplace": True}
    for node in g.nodes:
        if node.op != "call_function" or node.target is not operator.add or len(node.args) != 2:
            continue
        left, right = node.args
        if not (isinstance(left, fx.Node) and isinstance(right, fx.Node)) or len(left.users) != 1:
            continue
        same_shape = left.meta.get("arch_shape") is not None and \
            left.meta.get("arch_shape") == node.meta.get("arch_shape")
        if same_shape and left.op == "call_module" and \
                isinstance(root.get_submodule(left.target), safe_modules):
            node.target = operator.iadd
