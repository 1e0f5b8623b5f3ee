"""`checkpoint` blocks: how another implementation's state_dict keys map onto a spec's names.

    checkpoint "torchvision" {
      "features.0.{i}.{p}" -> "stem.{i}.{p}"
      "features.{s}.{b}.layer_scale" -> "stages.{(s - 1) // 2}.blocks.{b}.gamma" as [-1] if s % 2 == 1
    }

A source pattern's `{name}` placeholders each match text inside one dotted key component
(a run of digits binds an int); `{name...}` matches one or more whole components, dots included
(`"module.encoder_q.{rest...}" -> "nets.query.backbone.{rest}"`). The first rule whose pattern matches the whole key and whose
condition holds renames it; the target's `{expr}` parts are evaluated with the placeholders and
the file's top-level names in scope; `as [dims]` reshapes the tensor; a target `none` drops the
key (a buffer the spec recomputes). Keys no rule matches keep their name. The result must name exactly the model's keys with the model's shapes.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

from archdsl.errors import ArchError, did_you_mean
from archdsl.semantics.values import Env, ModuleEnv
from archdsl.syntax import ast as A

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@lru_cache(maxsize=4096)
def _source_regex(pattern: str) -> re.Pattern:
    """The regex of a source pattern; ValueError says what is wrong with it."""
    out, names, pos = [], set(), 0
    for m in _PLACEHOLDER.finditer(pattern):
        name, many = m.group(1).removesuffix("..."), m.group(1).endswith("...")
        if not _IDENT.fullmatch(name):
            raise ValueError(f"placeholder {{{name}}} must be a plain name, like {{i}} or {{rest...}}")
        if name in names:
            raise ValueError(f"placeholder {{{name}}} appears twice")
        names.add(name)
        out += [re.escape(pattern[pos:m.start()]), f"(?P<{name}>.+?)" if many else f"(?P<{name}>[^.]+?)"]
        pos = m.end()
    rest = pattern[pos:]
    if "{" in rest or "}" in rest:
        raise ValueError("unbalanced '{' or '}'")
    out.append(re.escape(rest))
    return re.compile("".join(out))


def check_rules(decl: A.Checkpoint) -> None:
    """Reject malformed source patterns when the spec is loaded, at the rule's place."""
    for rule in decl.rules:
        try:
            _source_regex(rule.source)
        except ValueError as e:
            raise ArchError(f"bad key pattern {rule.source!r}: {e}", rule.span,
                            hint='placeholders match one key component ("layers.{i}.{p}"), or several: '
                                 '"module.{rest...}"') from None


class KeyMap:
    """The renames of one `checkpoint` block, evaluated in its spec file's scope."""

    def __init__(self, decl: A.Checkpoint, module: ModuleEnv):
        from archdsl.semantics.elaborate import Elaborator
        self.decl, self.module = decl, module
        self._eval = Elaborator(module.name).eval

    def rename(self, key: str) -> tuple[str | None, list[int] | None]:
        """The key's name (and shape, when the rule reshapes) in the spec's naming; None: dropped."""
        for rule in self.decl.rules:
            m = _source_regex(rule.source).fullmatch(key)
            if m is None:
                continue
            scope = Env(self.module, None, self.module.prelude)
            scope.vars.update({k: int(v) if v.isdigit() else v for k, v in m.groupdict().items()})
            if rule.cond is not None and not self._value(rule.cond, scope, (bool,)):
                continue
            if rule.target is None:
                return None, None
            target = "".join(p if isinstance(p, str) else str(self._value(p, scope, (int, str)))
                             for p in rule.target.parts)
            shape = None if rule.reshape is None else [self._value(e, scope, (int,)) for e in rule.reshape]
            return target, shape
        return key, None

    def _value(self, expr: A.Expr, scope: Env, kinds: tuple[type, ...]) -> Any:
        value = self._eval(expr, scope)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise ArchError(f"this expression gives {value!r}; a key rule needs "
                            + " or ".join(k.__name__ for k in kinds), expr.span)
        return value


def remap(state_dict: Mapping[str, Any], keymap: KeyMap, expected: Mapping[str, tuple[int, ...]]) -> dict:
    """`state_dict` renamed (and reshaped) into the model's naming; an ArchError lists every key
    that is missing, left over, or of the wrong shape."""
    out, origin = {}, {}
    for key, tensor in state_dict.items():
        target, shape = keymap.rename(key)
        if target is None:
            continue
        if target in out:
            raise ArchError(f"checkpoint keys '{origin[target]}' and '{key}' both map to '{target}'",
                            keymap.decl.span, hint="make the rules' patterns or conditions exclusive")
        out[target] = tensor.reshape(shape) if shape is not None else tensor
        origin[target] = key
    check_fit(out, origin, expected, f"the '{keymap.decl.source}' checkpoint", keymap.decl.span,
              "add or fix a rule of this checkpoint block")
    return out


def check_fit(out: Mapping[str, Any], origin: Mapping[str, str], expected: Mapping[str, tuple[int, ...]],
              what: str, span=None, fix: str = "") -> None:
    """An ArchError listing every key of `out` that is missing from, left over in, or of another
    shape than the model's (`origin`: the checkpoint's own name of each key)."""
    missing = [k for k in expected if k not in out]
    unexpected = [k for k in out if k not in expected]
    wrong = [k for k in expected if k in out and tuple(out[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or wrong):
        return

    def named(k: str) -> str:
        return k if origin.get(k, k) == k else f"{k} (from '{origin[k]}')"
    lines = ([f"missing {k}" for k in missing[:8]]
             + [f"unexpected {named(k)}" for k in unexpected[:8]]
             + [f"shape of {named(k)}: {list(out[k].shape)}, the model has {list(expected[k])}"
                for k in wrong[:8]])
    hint = None
    if unexpected and missing:
        hint = did_you_mean(unexpected[0], missing)
        hint = hint and f"'{unexpected[0]}': {hint}"
    raise ArchError(f"{what} does not fit the model: {len(missing)} missing, {len(unexpected)} "
                    f"unexpected, {len(wrong)} of another shape\n  " + "\n  ".join(lines), span,
                    hint=hint or fix or None)
