"""The constructor call that writes each module an op builds: torch.nn layers from their
settings, other modules from their op's constructor recipe."""
from __future__ import annotations

import inspect

from torch import nn

from archdsl.errors import ArchError
from archdsl.export.expr import _REQUIRED, Call, Expr, Lit, Raw, _squash
from archdsl.export.helpers import _Helpers
from archdsl.ir.graph import Node
from archdsl.ops.base import REGISTRY


# ---------------------------------------------------------------------------------------------
# constructors of the modules ops build

def _ctor(m: nn.Module, node: Node | None, prefix: str, helpers: "_Helpers") -> Expr:
    from torch.nn.utils import parametrize
    if parametrize.is_parametrized(m):
        return _parametrized(m, node, prefix, helpers)
    return _plain_ctor(m, type(m), node, prefix, helpers)


def _parametrized(m: nn.Module, node: Node | None, prefix: str, helpers: "_Helpers") -> Expr:
    """`spectral_norm(nn.Conv2d(...), ...)` / `weight_norm(...)` around the original module."""
    expr = _plain_ctor(m, type(m).__bases__[0], node, prefix, helpers)
    for tensor, plist in m.parametrizations.items():
        for p in plist:
            kind = type(p).__name__
            if kind == "_SpectralNorm":
                expr = Call(Raw("torch.nn.utils.parametrizations.spectral_norm"), [expr],
                            [("name", Lit(tensor, "name", prefix, 2), "weight"),
                             ("n_power_iterations", Lit(p.n_power_iterations, "n_power_iterations",
                                                        prefix, 2), 1),
                             ("eps", Lit(p.eps, "eps", prefix, 2), 1e-12),
                             ("dim", Lit(p.dim, "dim", prefix, 2), _REQUIRED)])
            elif kind == "_WeightNorm":
                expr = Call(Raw("torch.nn.utils.parametrizations.weight_norm"), [expr],
                            [("name", Lit(tensor, "name", prefix, 2), "weight"),
                             ("dim", Lit(p.dim, "dim", prefix, 2), 0)])
            else:
                raise ArchError(f"cannot write the parametrization {kind} of "
                                f"'{node.id if node else prefix}' as source",
                                hint="the source writer knows spectral_norm and weight_norm")
    return expr


def _plain_ctor(m: nn.Module, T: type, node: Node | None, prefix: str,
                helpers: "_Helpers") -> Expr:

    def lit(v, hint):
        return Lit(v, hint, prefix, 2)

    def call(name, args, kwargs):
        return Call(Raw(name), args, kwargs)

    if T in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        pad = m.padding if isinstance(m.padding, str) else _squash(tuple(m.padding))
        return call(f"nn.{T.__name__}", [lit(m.in_channels, "in_channels"),
                                         lit(m.out_channels, "out_channels")],
                    [("kernel_size", lit(_squash(tuple(m.kernel_size)), "kernel_size"), _REQUIRED),
                     ("stride", lit(_squash(tuple(m.stride)), "stride"), 1),
                     ("padding", lit(pad, "padding"), 0),
                     ("dilation", lit(_squash(tuple(m.dilation)), "dilation"), 1),
                     ("groups", lit(m.groups, "groups"), 1),
                     ("bias", lit(m.bias is not None, "bias"), True),
                     ("padding_mode", lit(m.padding_mode, "padding_mode"), "zeros")])
    if T in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        return call(f"nn.{T.__name__}", [lit(m.num_features, "num_features")],
                    [("eps", lit(m.eps, "eps"), 1e-5),
                     ("momentum", lit(m.momentum, "momentum"), 0.1),
                     ("affine", lit(m.affine, "affine"), True),
                     ("track_running_stats",
                      lit(m.track_running_stats, "track_running_stats"), True)])
    if T is nn.LayerNorm:
        shape = tuple(m.normalized_shape)
        bias = m.bias is not None if m.elementwise_affine else True
        return call("nn.LayerNorm",
                    [lit(shape[0] if len(shape) == 1 else shape, "normalized_shape")],
                    [("eps", lit(m.eps, "eps"), 1e-5),
                     ("elementwise_affine", lit(m.elementwise_affine, "elementwise_affine"), True),
                     ("bias", lit(bias, "bias"), True)])
    if T is nn.GroupNorm:
        return call("nn.GroupNorm",
                    [lit(m.num_groups, "num_groups"), lit(m.num_channels, "num_channels")],
                    [("eps", lit(m.eps, "eps"), 1e-5), ("affine", lit(m.affine, "affine"), True)])
    if T is nn.Linear:
        return call("nn.Linear",
                    [lit(m.in_features, "in_features"), lit(m.out_features, "out_features")],
                    [("bias", lit(m.bias is not None, "bias"), True)])
    if T in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout):
        return call(f"nn.{T.__name__}", [lit(m.p, "drop_rate")],
                    [("inplace", lit(m.inplace, "inplace"), False)])
    return _recorded_ctor(T, node, prefix, helpers)


_HINTS = {"DropPath.p": "drop_path_rate"}


def _recorded_ctor(T: type, node: Node | None, prefix: str, helpers: "_Helpers") -> Expr:
    """`Class(args)` with the arguments of the op's constructor recipe for this module."""
    where = node.id if node else prefix
    if node is None or node.op not in REGISTRY:
        raise ArchError(f"internal: no op node for the module at '{where}'")
    recipe = REGISTRY[node.op].build(node.attrs, [tuple(s) for s in helpers.shapes(node)])
    call = next((r for r in (recipe.calls() if recipe else ()) if r.factory is T), None)
    if call is None:
        raise ArchError(f"cannot write the module {T.__qualname__} at '{where}' as source: its op's "
                        f"recipe does not make it")
    args, kwargs, init = call.args, dict(call.kwargs), T.__init__
    try:
        sig = inspect.signature(init)
        bound = sig.bind(None, *args, **kwargs)
        names = list(bound.arguments)[1:]
        params = sig.parameters
    except (TypeError, ValueError):
        names, params = [f"arg{i}" for i in range(len(args))], {}
    pos_names = names[:len(args)]

    def lit(v, hint):
        return Lit(v, _HINTS.get(f"{T.__name__}.{hint}", hint), prefix, 2)

    def default(k):
        p = params.get(k)
        return _REQUIRED if p is None or p.default is inspect.Parameter.empty else p.default

    # arguments with a default are written by name (and left out when they equal it)
    pos, kws = [], []
    for v, n in zip(args, pos_names):
        p = params.get(n)
        if kws or (p is not None and p.default is not inspect.Parameter.empty
                   and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD):
            kws.append((n, lit(v, n), default(n)))
        else:
            pos.append(lit(v, n))
    if len(pos) + len(kws) > len(args):  # more than one value for a *args parameter
        pos, kws = [lit(v, n) for v, n in zip(args, pos_names)], []
    kws += [(k, lit(v, k), default(k)) for k, v in kwargs.items()]
    return Call(Raw(helpers.class_name(T, where)), pos, kws)
