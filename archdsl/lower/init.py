"""Initialise a graph's tensors as its init rules say, each tensor once, while it is built."""
from __future__ import annotations

import contextlib
import fnmatch
import math

import torch
from torch import nn

from archdsl.ir.inits import InitRule, InitSpec


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


FAN_BASED = ("kaiming_normal", "kaiming_uniform", "xavier_uniform", "xavier_normal", "orthogonal")


class Rules:
    """A graph's init rules indexed by the block path that declares them: a tensor is matched
    against the rules of its enclosing blocks only, so initialising a module is linear in its size
    (matching every rule against every tensor of the module was quadratic in depth)."""

    def __init__(self, rules: list[InitRule]):
        from archdsl.ops import REGISTRY
        self.by_prefix: dict[str, list[tuple[int, InitRule, str | None, str]]] = {}
        for order, rule in enumerate(rules):
            op_name, _, leaf = rule.pattern.rpartition(":")
            op = REGISTRY.get(op_name) if op_name else None
            entry = (order, rule, op.name if op else None, leaf)  # "conv:weight": the op's own name
            self.by_prefix.setdefault(rule.prefix, []).append(entry)

    def last(self, key: str, node) -> InitRule | None:
        """The rule that decides tensor `key` of `node` (the last one declared that matches), or None.
        `"conv*.weight"` matches keys relative to the rule's block; `"conv:weight"` matches the
        `weight` of a node of op `conv`."""
        if not self.by_prefix:
            return None
        best = None
        parts = key.split(".")
        for depth in range(len(parts)):
            prefix = ".".join(parts[:depth])
            for order, rule, op, leaf in self.by_prefix.get(prefix, ()):
                if best is not None and order < best[0]:
                    continue
                if op is not None:
                    hit = node.op == op and key == f"{node.id}.{leaf}"
                else:
                    hit = ":" not in rule.pattern and \
                        fnmatch.fnmatchcase(key[len(prefix) + 1:] if prefix else key, rule.pattern)
                if hit:
                    best = (order, rule)
        return best[1] if best else None


def matching(module: nn.Module, rule: InitRule, graph) -> list[tuple[str, torch.Tensor]]:
    """Every tensor of a built module that `rule` selects, whether or not a later rule decides it
    (for the written model's `init_weights`, export/inits.py; building uses `Rules.last`)."""
    prefix = rule.prefix + "." if rule.prefix else ""
    tensors = dict(module.named_parameters())
    tensors.update((k, v) for k, v in module.named_buffers() if v.is_floating_point())
    if ":" in rule.pattern:
        op_name, leaf = rule.pattern.split(":", 1)
        from archdsl.ops import REGISTRY
        op = REGISTRY.get(op_name)
        keys = {f"{n.id}.{leaf}" for n in graph.nodes()
                if op is not None and n.op == op.name and n.id.startswith(prefix)}
        return [(k, v) for k, v in tensors.items() if k in keys]
    return [(k, v) for k, v in tensors.items()
            if k.startswith(prefix) and fnmatch.fnmatchcase(k[len(prefix):], rule.pattern)]


def initial(node, rules: Rules, device: torch.device) -> torch.Tensor:
    """A `param` or `buffer` node's tensor: filled by the last rule that matches it, else by its
    own value."""
    rule, own = rules.last(node.id, node), node.attrs["init"]
    if device.type == "meta":
        return torch.empty(node.shape, device=device)
    if rule is None and isinstance(own, (int, float)):
        return torch.full(node.shape, float(own), device=device)
    data = torch.empty(node.shape, device=device)
    if rule is None:
        fill(data, own)
    else:
        _fill_checked(data, rule, node.id)
    return data


def make_module(build, node, rules: Rules, device: torch.device) -> nn.Module:
    """Build a node's module on `device` with each tensor initialised once. torch's plain layers
    (conv, linear, norms) are built without their default initialisation, then each tensor is
    filled by its rule or else as torch would have; a module of another kind is built again, as it
    initialises itself, and then takes the rules that match it."""
    rng = torch.get_rng_state()
    with _without_default_init(), _on(device):
        module = build()
    if device.type == "meta":
        return module
    if all(_plain(m) for m in module.modules()):
        with torch.no_grad():
            for owner_key, owner in module.named_modules():
                for leaf, t in _own_tensors(owner):
                    key = ".".join(p for p in (node.id, owner_key, leaf) if p)
                    rule = rules.last(key, node) if t.is_floating_point() else None
                    if rule is not None:
                        _fill_checked(t, rule, key, getattr(owner, "groups", 1))
                    else:
                        _default(owner, leaf, t)
        return module
    torch.set_rng_state(rng)  # the draws of the discarded build do not count
    with _on(device):
        module = build()
    _apply_rules(module, node, rules)
    return module


def _on(device: torch.device):
    """Create tensors on `device` (no device mode, with its per-call cost, when it is the default)."""
    return contextlib.nullcontext() if device == torch.get_default_device() else torch.device(device)


_RESETS = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@contextlib.contextmanager
def _without_default_init():
    """torch's layers call reset_parameters() from __init__; skip it while building (their tensors
    stay uninitialised until `make_module` fills them). Patches the classes for the duration, so
    builds must not run concurrently in threads."""
    saved = [(cls, cls.__dict__["reset_parameters"]) for cls in _RESETS]
    for cls, _ in saved:
        cls.reset_parameters = _skip
    try:
        yield
    finally:
        for cls, method in saved:
            cls.reset_parameters = method


def _skip(self) -> None:
    pass


_DEFAULTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
              nn.ConvTranspose3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
              nn.LayerNorm, nn.GroupNorm)


def _plain(m: nn.Module) -> bool:
    """A layer whose default initialisation `_default` reproduces, or a torch module without
    tensors of its own (a container, an activation)."""
    if type(m) in _DEFAULTED:
        return True
    return not m._parameters and not m._buffers and type(m).__module__.startswith("torch.nn.modules")


def _own_tensors(m: nn.Module):
    yield from ((k, v) for k, v in m._parameters.items() if v is not None)
    yield from ((k, v) for k, v in m._buffers.items() if v is not None)


def _default(owner: nn.Module, leaf: str, t: torch.Tensor) -> None:
    """torch's own initialisation of `_DEFAULTED` layers (their reset_parameters), one tensor at a
    time, drawing in the same order, so that a seeded module without rules is unchanged."""
    if isinstance(owner, (nn.modules.conv._ConvNd, nn.Linear)):
        if leaf == "weight":
            nn.init.kaiming_uniform_(t, a=math.sqrt(5))
        else:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(owner.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(t, -bound, bound)
    elif leaf in ("weight", "running_var"):
        t.fill_(1)
    else:
        t.zero_()


def _apply_rules(module: nn.Module, node, rules: Rules) -> None:
    """The rules that match a module that has initialised itself, in declaration order."""
    tensors = dict(module.named_parameters())
    tensors.update((k, v) for k, v in module.named_buffers() if v.is_floating_point())
    for local, tensor in tensors.items():
        key = f"{node.id}.{local}"
        rule = rules.last(key, node)
        if rule is None:
            continue
        owner = module.get_submodule(local.rpartition(".")[0])
        _fill_checked(tensor, rule, key, getattr(owner, "groups", 1))
        if local.endswith(_SN_ORIGINAL):
            _refresh_spectral_norm(module, local)


def _fill_checked(t: torch.Tensor, rule: InitRule, key: str, groups: int = 1) -> None:
    """Fill tensor `key` by `rule`, which must fit it."""
    if rule.init.kind in FAN_BASED and t.dim() < 2:
        from archdsl.errors import ArchError
        raise ArchError(f"init rule '{rule.pattern}' gives {rule.init.kind} to '{key}' of shape "
                        f"{list(t.shape)}, which has no fan-in or fan-out", rule.span,
                        hint="narrow the pattern, e.g. 'conv*.weight'")
    fill(t, rule.init, groups if rule.init.get("grouped") else 1)


_SN_ORIGINAL = "parametrizations.weight.original"


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
