"""The spec's initialisers as `nn.init` calls, and the written model's `init_weights()`."""
from __future__ import annotations

from typing import Any


from archdsl.errors import ArchError
from archdsl.export.expr import (_REQUIRED, Call, Display, Expr, Lit, _Printer, Raw, _ident,
                                 _lit_src, _str)


def _full(shape, init, prefix: str) -> Expr:
    """The initial value of a param/buffer node: a constant, or an initialiser from the spec
    (`= trunc_normal(0.02)`) written as the matching `nn.init` call on an empty tensor."""
    dims = [Lit(int(d), f"{prefix}_dim{i}" if len(shape) > 1 else f"{prefix}_dim", prefix, 1)
            for i, d in enumerate(shape)]
    if isinstance(init, (int, float)):
        fill = Lit(float(init), f"{prefix}_init", prefix, 1)
        return Call(Raw("torch.full"), [Display("(", dims), fill], [])
    if init.kind == "constant":
        return Call(Raw("torch.full"), [Display("(", dims), Lit(float(init.get("value")))], [])
    return _init_call(init, Call(Raw("torch.empty"), [Display("(", dims)], []))


# the defaults of torch.nn.init's functions, left out of the written calls
_INIT_DEFAULTS = {"mean": 0.0, "std": 1.0, "a": 0.0, "b": 1.0, "gain": 1.0, "mode": "fan_in",
                  "nonlinearity": "leaky_relu"}


def _init_call(spec, tensor: Expr) -> Expr:
    """`nn.init.<kind>_(tensor, ...)` for an initialiser of the spec (archdsl/lower/init.py's
    `fill`, as source). kaiming_normal(grouped=true) is torch's fan-out one for an ungrouped
    tensor; a grouped conv's is written by `_rule_call`."""
    args = dict(spec.args)
    args.pop("grouped", None)
    if spec.kind == "constant":
        value = args["value"]
        if value in (0.0, 1.0):
            return Call(Raw("nn.init.zeros_" if value == 0.0 else "nn.init.ones_"), [tensor], [])
        return Call(Raw("nn.init.constant_"), [tensor, Lit(value)], [])
    defaults = dict(_INIT_DEFAULTS, **({"a": -2.0, "b": 2.0} if spec.kind == "trunc_normal"
                                       else {}))
    kwargs = [(k, Lit(v), defaults.get(k, _REQUIRED)) for k, v in sorted(args.items())]
    return Call(Raw(f"nn.init.{spec.kind}_"), [tensor], kwargs)


def _rule_call(spec, tensor: str, groups: str) -> list[str]:
    """The source lines of one init rule on `tensor` (`groups`: the source of its conv's groups)."""
    if spec.kind == "kaiming_normal" and spec.get("grouped"):
        gain = f"nn.init.calculate_gain({_str(spec.get('nonlinearity'))})"
        return [f"fan_out = {tensor}.shape[0] // {groups} * {tensor}[0][0].numel()  # per group",
                f"nn.init.normal_({tensor}, std={gain} / fan_out ** 0.5)"]
    return [_Printer({}, False).inline(_init_call(spec, Raw(tensor)))]




class _Inits:
    """The writer's part that writes the spec's init rules."""


    def _init_method(self) -> list[str]:
        """The spec's init rules as the root class's `init_weights` method (its __init__ ends
        with it): per run of rules with the same initialiser, a loop over the modules of one type,
        the keys with one suffix, or the keys themselves, whichever selects exactly the keys
        those rules match in the compiled model."""
        from archdsl.lower.init import _SN_ORIGINAL, matching
        runs: list[tuple[Any, dict]] = []
        for rule in self.graph.inits:
            keys = dict.fromkeys(k for k, _ in matching(self.root, rule, self.graph))
            if runs and runs[-1][0] == rule.init:
                runs[-1][1].update(keys)
            elif keys:
                runs.append((rule.init, keys))
        if not runs:
            return []
        tensors = dict(self.root.named_parameters())
        tensors.update((k, b) for k, b in self.root.named_buffers() if b.is_floating_point())
        body = []
        for spec, keys in runs:
            body += self._by_type(spec, list(keys)) or self._by_suffix(spec, list(keys), tensors) \
                or self._by_key(spec, list(keys))
        if any(b.startswith("for name, t in tensors") or "tensors[" in b for b in body):
            floats = "(k, b) for k, b in self.named_buffers() if b.is_floating_point()"
            body = ["tensors = dict(self.named_parameters())", f"tensors.update({floats})", *body]
        spectral = [k[: -len(_SN_ORIGINAL)].rstrip(".") for _, keys in runs for k in keys
                    if k.endswith(_SN_ORIGINAL)]
        if spectral:
            body += [f"for name in {_lit_src(tuple(dict.fromkeys(spectral)))}:"
                     "  # spectral norm: u, v of the new weight",
                     "    weight = self.get_submodule(name).parametrizations.weight",
                     "    for p in weight:",
                     '        if hasattr(p, "_power_method"):',
                     "            matrix = p._reshape_weight_to_matrix(weight.original)",
                     "            p._power_method(matrix, 15)"]
        return ["    @torch.no_grad()", "    def init_weights(self):",
                '        """The spec\'s initialisation: its `init` rules in order (a later rule '
                'wins)."""', *(f"        {b}" for b in body)]

    def _by_type(self, spec, keys: list[str]) -> list[str]:
        owners = {k.rpartition(".")[0] for k in keys}
        leaves = {k.rpartition(".")[2] for k in keys}
        types = {type(self.mods[o]) for o in owners if o in self.mods}
        if len(leaves) != 1 or "" in owners or len(types) != 1 or not _ident(next(iter(leaves))):
            return []
        T, leaf = types.pop(), leaves.pop()
        try:
            name = self.helpers.class_name(T, "")
        except ArchError:
            return []
        held = [(p, m._parameters.get(leaf, m._buffers.get(leaf)))
                for p, m in self.root.named_modules() if isinstance(m, T)]
        if {f"{p}.{leaf}" for p, t in held if t is not None} != set(keys):
            return []
        test = f"isinstance(m, {name})"
        if any(t is None for _, t in held):  # e.g. convs without a bias
            test += f" and m.{leaf} is not None"
        return ["for m in self.modules():", f"    if {test}:",
                *(f"        {line}" for line in _rule_call(spec, f"m.{leaf}", "m.groups"))]

    def _by_suffix(self, spec, keys: list[str], tensors: dict) -> list[str]:
        parts = [k.split(".") for k in keys]
        n = 0
        while all(len(p) > n + 1 for p in parts) and len({p[-n - 1] for p in parts}) == 1:
            n += 1
        if n == 0 or len(keys) == 1:
            return []
        suffix = "." + ".".join(parts[0][-n:])
        if [k for k in tensors if k.endswith(suffix)] != keys:
            return []
        groups = 'getattr(self.get_submodule(name.rpartition(".")[0]), "groups", 1)'
        return ["for name, t in tensors.items():", f"    if name.endswith({_str(suffix)}):",
                *(f"        {line}" for line in _rule_call(spec, "t", groups))]

    def _by_key(self, spec, keys: list[str]) -> list[str]:
        groups = 'getattr(self.get_submodule(name.rpartition(".")[0]), "groups", 1)'
        if len(keys) == 1:
            groups = groups.replace("name", _str(keys[0]))
            return _rule_call(spec, f"tensors[{_str(keys[0])}]", groups)
        listed = _Printer({}, False).block(Display("(", [Raw(_str(k)) for k in keys]), 8, 12)
        return [f"for name in {listed}:",
                *(f"    {line}" for line in _rule_call(spec, "tensors[name]", groups))]
