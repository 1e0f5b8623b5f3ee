"""Apply a graph's declared initialisation to a built module, in declaration order."""
from __future__ import annotations

import fnmatch

import torch
from torch import nn

from archdsl.semantics.inits import InitRule, InitSpec


@torch.no_grad()
def fill(t: torch.Tensor, spec: InitSpec, groups: int = 1) -> None:
    """Fill t as spec says; `groups` is the owning conv's, for kaiming_normal(grouped=true)."""
    k = spec.kind
    if k == "constant":
        t.fill_(spec.get("value"))
    elif k == "normal":
        t.normal_(spec.get("mean"), spec.get("std"))
    elif k == "trunc_normal":
        nn.init.trunc_normal_(t, std=spec.get("std"), a=spec.get("a"), b=spec.get("b"))
    elif k == "uniform":
        t.uniform_(spec.get("a"), spec.get("b"))
    elif k == "kaiming_normal" and spec.get("grouped"):
        fan_out = t.shape[0] // groups * t[0][0].numel()
        t.normal_(0.0, nn.init.calculate_gain(spec.get("nonlinearity")) / fan_out ** 0.5)
    elif k == "kaiming_normal":
        nn.init.kaiming_normal_(t, mode=spec.get("mode"), nonlinearity=spec.get("nonlinearity"))
    elif k == "kaiming_uniform":
        nn.init.kaiming_uniform_(t, a=spec.get("a"), mode=spec.get("mode"), nonlinearity=spec.get("nonlinearity"))
    elif k == "xavier_uniform":
        nn.init.xavier_uniform_(t, gain=spec.get("gain"))
    elif k == "xavier_normal":
        nn.init.xavier_normal_(t, gain=spec.get("gain"))
    elif k == "orthogonal":
        nn.init.orthogonal_(t, gain=spec.get("gain"))
    else:  # pragma: no cover - the semantics only produce the kinds above
        raise ValueError(k)


def matching(module: nn.Module, rule: InitRule, graph) -> list[tuple[str, torch.Tensor]]:
    """`"conv*.weight"` matches keys under the rule's block; `"conv:weight"` matches the `weight`
    of every node of op `conv` under it."""
    prefix = rule.prefix + "." if rule.prefix else ""
    tensors = dict(module.named_parameters())
    tensors.update((k, v) for k, v in module.named_buffers() if v.is_floating_point())
    if ":" in rule.pattern:
        op_name, leaf = rule.pattern.split(":", 1)
        keys = {f"{n.id}.{leaf}" for n in graph.nodes() if _is_op(n.op, op_name) and n.id.startswith(prefix)}
        return [(k, v) for k, v in tensors.items() if k in keys]
    return [(k, v) for k, v in tensors.items()
            if k.startswith(prefix) and fnmatch.fnmatchcase(k[len(prefix):], rule.pattern)]


def _is_op(node_op: str, name: str) -> bool:
    from archdsl.ops import REGISTRY
    op = REGISTRY.get(name)
    return op is not None and node_op == op.name


FAN_BASED = ("kaiming_normal", "kaiming_uniform", "xavier_uniform", "xavier_normal", "orthogonal")


def apply_rules(module: nn.Module, rules: list[InitRule], graph) -> None:
    from archdsl.errors import ArchError
    for rule in rules:
        for key, tensor in matching(module, rule, graph):
            if rule.init.kind in FAN_BASED and tensor.dim() < 2:
                raise ArchError(f"init rule '{rule.pattern}' gives {rule.init.kind} to '{key}' of shape "
                                f"{list(tensor.shape)}, which has no fan-in or fan-out", rule.span,
                                hint="narrow the pattern, e.g. 'conv*.weight'")
            fill(tensor, rule.init, _groups_of(module, key) if rule.init.get("grouped") else 1)
            if key.endswith(_SN_ORIGINAL):
                _refresh_spectral_norm(module, key)


_SN_ORIGINAL = "parametrizations.weight.original"


def _groups_of(module: nn.Module, key: str) -> int:
    """The `groups` of the conv that holds parameter `key` (1 for any other module)."""
    return getattr(module.get_submodule(key.rpartition(".")[0]), "groups", 1)


@torch.no_grad()
def _refresh_spectral_norm(module: nn.Module, key: str) -> None:
    """torch's spectral_norm estimates its u, v by 15 power iterations when it is registered; an
    init rule that rewrites the weight afterwards leaves them stale (eval-mode σ = uᵀWv of the old
    W, possibly ≈ 0). Re-estimate them for the new weight the same way (15 iterations)."""
    from torch.nn.utils.parametrizations import _SpectralNorm
    owner = module.get_submodule(key[: -len(_SN_ORIGINAL)].rstrip("."))
    for p in owner.parametrizations.weight:
        if isinstance(p, _SpectralNorm):
            p._power_method(p._reshape_weight_to_matrix(owner.parametrizations.weight.original), 15)
