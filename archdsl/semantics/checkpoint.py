"""`checkpoint` blocks: how another implementation's state_dict keys map onto a spec's names.

    checkpoint "torchvision" {
      "features.0.{i}.{p}" -> "stem.{i}.{p}"
      "features.{s}.{b}.layer_scale" -> "stages.{(s - 1) // 2}.blocks.{b}.gamma" as [-1] if s % 2 == 1
    }

A source pattern's `{name}` placeholders each match text inside one dotted key component, up
to the first character of the literal after it (a run of digits binds an int); one `{name...}`
per pattern matches one or more whole components, dots included
(`"module.encoder_q.{rest...}" -> "nets.query.backbone.{rest}"`). The first rule whose pattern
matches the whole key and whose
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
    """The regex of a source pattern; ValueError says what is wrong with it. A placeholder's text
    stops at the first character of the literal after it (or a '.'), so a key is matched in
    linear time whatever the pattern: no backtracking over a run of placeholders."""
    literals, names, pos, many = [], [], 0, None
    for m in _PLACEHOLDER.finditer(pattern):
        name = m.group(1).removesuffix("...")
        if not _IDENT.fullmatch(name):
            raise ValueError(f"placeholder {{{name}}} must be a plain name, like {{i}} or {{rest...}}")
        if m.group(1).endswith("..."):
            if many is not None:
                raise ValueError(f"placeholders {{{many}...}} and {{{name}...}}: one per pattern")
            many = name
        if name in names:
            raise ValueError(f"placeholder {{{name}}} appears twice")
        if names and m.start() == pos:
            raise ValueError(f"placeholders {{{names[-1]}}}{{{name}}} are adjacent: nothing says "
                             f"where one ends")
        literals.append(_literal(pattern[pos:m.start()]))
        names.append(name)
        pos = m.end()
    literals.append(_literal(pattern[pos:]))
    out = [re.escape(literals[0])]
    for name, after in zip(names, literals[1:]):
        stop = re.escape(after[:1]) if after[:1] not in ("", ".") else ""
        out += [f"(?P<{name}>.+)" if name == many else f"(?P<{name}>[^.{stop}]+)", re.escape(after)]
    return re.compile("".join(out))


def _literal(text: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError("unbalanced '{' or '}'")
    return text


def placeholders(pattern: str) -> list[str]:
    return [m.group(1).removesuffix("...") for m in _PLACEHOLDER.finditer(pattern)]


def check_rules(decl: A.Checkpoint, module: ModuleEnv) -> None:
    """Reject a malformed rule when the spec is loaded, at its place: a bad source pattern, a
    target or condition naming what is neither a placeholder nor a name of the file, and every
    part that does not depend on the key (a divisor, a reshape dim) evaluated now."""
    from archdsl.semantics.elaborate import Elaborator
    evaluate = Elaborator(module.name).eval
    scope = Env(module, None, module.prelude)
    for rule in decl.rules:
        try:
            _source_regex(rule.source)
        except ValueError as e:
            raise ArchError(f"bad key pattern {rule.source!r}: {e}", rule.span,
                            hint='placeholders match one key component ("layers.{i}.{p}"), or several: '
                                 '"module.{rest...}"') from None
        keyed = set(placeholders(rule.source))
        exprs = [p for p in (rule.target.parts if rule.target else []) if not isinstance(p, str)]
        for expr in [*exprs, *(rule.reshape or []), *([rule.cond] if rule.cond else [])]:
            _check_names(expr, keyed, scope)
            _check_divisors(expr, keyed, scope, evaluate)
        for expr in exprs:
            if not _names(expr) & keyed:
                KeyMap.check_kind(evaluate(expr, scope), expr, (int, str))
        for dim in rule.reshape or []:
            if not _names(dim) & keyed:
                value = evaluate(dim, scope)
                if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or value > 0):
                    raise ArchError(f"a reshape dim must be a positive integer or -1, got {value!r}",
                                    dim.span)
            elif isinstance(dim, A.BinOp) and dim.op == "/":
                raise ArchError("'/' gives a float: a reshape dim must be an integer", dim.span,
                                hint="divide with '//'")


def _names(expr: A.Node) -> set[str]:
    return {n.id for n in _walk(expr) if isinstance(n, A.Name)}


def _check_names(expr: A.Expr, keyed: set[str], scope: Env) -> None:
    local = {n.var for n in _walk(expr) if isinstance(n, A.ListComp)}
    for node in _walk(expr):
        if isinstance(node, A.Name) and node.id not in keyed | local:
            try:
                scope.lookup(node.id)
            except KeyError:
                raise ArchError(f"'{node.id}' is not a placeholder of this rule's pattern", node.span,
                                hint=did_you_mean(node.id, keyed) or
                                f"its placeholders: {', '.join(sorted(keyed)) or '(none)'}") from None


def _check_divisors(expr: A.Expr, keyed: set[str], scope: Env, evaluate) -> None:
    for node in _walk(expr):
        if isinstance(node, A.BinOp) and node.op in ("/", "//", "%") and not _names(node.right) & keyed:
            if evaluate(node.right, scope) == 0:
                raise ArchError("division by zero", node.span)


def _walk(expr: A.Node):
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, A.Node):
            yield node
            stack.extend(getattr(node, f) for f in type(node).model_fields if f != "span")
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


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
        return self.check_kind(self._eval(expr, scope), expr, kinds)

    @staticmethod
    def check_kind(value, expr: A.Expr, kinds: tuple[type, ...]) -> Any:
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
